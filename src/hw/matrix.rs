//! The keypad matrix scanner: rows driven low one at a time, columns read with pull-ups.
//!
//! Generic over embedded-hal digital pins, so it runs on rppal's GPIO on the box and on
//! mock pins in tests. It is driven by [`MatrixScanner::scan`] with the time of the scan,
//! so debouncing and long presses are tested without a clock.
//!
//! - Debounce: a key changes state only after its raw level has been stable for the
//!   debounce time; chatter shorter than that is never seen.
//! - Ghost keys: without diodes, three keys on the corners of a rectangle make the fourth
//!   corner read as pressed. A scan where pressed keys form a rectangle is ambiguous and is
//!   thrown away whole.
//! - One event per press: a press shorter than the long-press time is reported when the
//!   key is released; a key held that long is reported once, `held`, at that moment.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use embedded_hal::digital::{InputPin, OutputPin};
use tokio::sync::mpsc;

use crate::hw::{HwError, Input, Key, KeyEvent, Keypad};

/// Time between two scans of the matrix: four scans per default debounce time.
pub const SCAN_PERIOD: Duration = Duration::from_millis(5);

/// The legends of a 4×3 keypad, row by row.
pub const LAYOUT_4X3: [&str; 4] = ["123", "456", "789", "*0#"];
/// The legends of a 4×4 keypad, row by row.
pub const LAYOUT_4X4: [&str; 4] = ["123A", "456B", "789C", "*0#D"];

/// A pin failed while scanning.
#[derive(Debug, thiserror::Error)]
#[error("keypad {pin}: {reason}")]
pub struct ScanError {
    /// Which pin ("row 2", "column 1").
    pub pin: String,
    /// The HAL's error.
    pub reason: String,
}

/// Timing of the scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanTiming {
    /// How long a raw level must hold before it counts.
    pub debounce: Duration,
    /// How long a key is held for a long press.
    pub long_press: Duration,
    /// Wait after driving a row low before reading the columns, for the lines to settle
    /// through the pull-ups (zero for pins without wires).
    pub settle: Duration,
}

impl Default for ScanTiming {
    fn default() -> Self {
        ScanTiming {
            debounce: Duration::from_millis(20),
            long_press: Duration::from_millis(800),
            settle: Duration::from_micros(10),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct KeyState {
    /// Debounced: down.
    down: bool,
    /// The raw level last seen, and since when.
    raw: bool,
    raw_since: Duration,
    /// When the debounced press began.
    down_since: Duration,
    /// The long press was already reported.
    held_reported: bool,
}

/// Scans a matrix of `rows × columns` keys.
pub struct MatrixScanner<R, C> {
    rows: Vec<R>,
    columns: Vec<C>,
    legends: Vec<Vec<Option<Key>>>,
    timing: ScanTiming,
    keys: Vec<KeyState>,
    /// Scans dropped because they could hold a ghost key.
    pub ghost_scans: u64,
}

impl<R: OutputPin, C: InputPin> MatrixScanner<R, C> {
    /// A scanner over these pins. `layout` gives each row's legends, one character per
    /// column; characters that are not `0`–`9`, `*` or `#` (the A–D keys of a 4×4 pad) are
    /// scanned but report nothing, as the box has no use for them yet.
    pub fn new(
        rows: Vec<R>,
        columns: Vec<C>,
        layout: &[&str],
        timing: ScanTiming,
    ) -> Result<Self, String> {
        if layout.len() != rows.len() || layout.iter().any(|r| r.chars().count() != columns.len()) {
            return Err(format!(
                "the layout {layout:?} does not fit {} rows and {} columns",
                rows.len(),
                columns.len()
            ));
        }
        let legends = layout
            .iter()
            .map(|r| r.chars().map(Key::from_char).collect())
            .collect();
        let mut scanner = MatrixScanner {
            keys: vec![KeyState::default(); rows.len() * columns.len()],
            rows,
            columns,
            legends,
            timing,
            ghost_scans: 0,
        };
        for (i, row) in scanner.rows.iter_mut().enumerate() {
            row.set_high().map_err(|e| format!("row {i}: {e:?}"))?;
        }
        Ok(scanner)
    }

    /// The layout for a pad with this many columns (3 or 4).
    pub fn layout_for(columns: usize) -> &'static [&'static str] {
        if columns == 4 {
            &LAYOUT_4X4
        } else {
            &LAYOUT_4X3
        }
    }

    /// Reads the raw level of every key: which are closed right now.
    fn read_matrix(&mut self) -> Result<Vec<bool>, ScanError> {
        let width = self.columns.len();
        let mut closed = vec![false; self.keys.len()];
        for r in 0..self.rows.len() {
            let err = |what: &str, i: usize, e: &dyn std::fmt::Debug| ScanError {
                pin: format!("{what} {i}"),
                reason: format!("{e:?}"),
            };
            self.rows[r].set_low().map_err(|e| err("row", r, &e))?;
            if !self.timing.settle.is_zero() {
                std::thread::sleep(self.timing.settle);
            }
            for c in 0..width {
                let low = self.columns[c].is_low();
                match low {
                    Ok(low) => closed[r * width + c] = low,
                    Err(e) => {
                        let _ = self.rows[r].set_high();
                        return Err(err("column", c, &e));
                    }
                }
            }
            self.rows[r].set_high().map_err(|e| err("row", r, &e))?;
        }
        Ok(closed)
    }

    /// True when the closed keys include three corners of a rectangle, so a fourth corner
    /// may be a ghost (or a real key that cannot be told from one).
    fn ambiguous(&self, closed: &[bool]) -> bool {
        let width = self.columns.len();
        let rows: Vec<Vec<usize>> = (0..self.rows.len())
            .map(|r| (0..width).filter(|&c| closed[r * width + c]).collect())
            .collect();
        for a in 0..rows.len() {
            for b in a + 1..rows.len() {
                let shared = rows[a].iter().filter(|c| rows[b].contains(c)).count();
                let corners = rows[a].len() >= 2 || rows[b].len() >= 2;
                if shared >= 2 || (shared == 1 && corners) {
                    return true;
                }
            }
        }
        false
    }

    /// Scans once at time `now` (any monotonic clock) and returns the key events it ends.
    pub fn scan(&mut self, now: Duration) -> Result<Vec<KeyEvent>, ScanError> {
        let closed = self.read_matrix()?;
        if self.ambiguous(&closed) {
            self.ghost_scans += 1;
            return Ok(Vec::new());
        }
        let width = self.columns.len();
        let timing = self.timing;
        let mut events = Vec::new();
        for (i, state) in self.keys.iter_mut().enumerate() {
            let legend = self.legends[i / width][i % width];
            if closed[i] != state.raw {
                state.raw = closed[i];
                state.raw_since = now;
            }
            let stable = now.saturating_sub(state.raw_since) >= timing.debounce;
            if stable && state.raw != state.down {
                state.down = state.raw;
                if state.down {
                    state.down_since = state.raw_since;
                    state.held_reported = false;
                } else if !state.held_reported {
                    events.extend(legend.map(KeyEvent::press));
                }
            }
            if state.down
                && !state.held_reported
                && now.saturating_sub(state.down_since) >= timing.long_press
            {
                state.held_reported = true;
                events.extend(legend.map(|key| KeyEvent { key, held: true }));
            }
        }
        Ok(events)
    }
}

/// A matrix keypad scanned on its own thread; implements [`Keypad`].
pub struct MatrixKeypad {
    rx: mpsc::Receiver<Result<KeyEvent, ScanError>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MatrixKeypad {
    /// Starts scanning every [`SCAN_PERIOD`].
    pub fn start<R, C>(mut scanner: MatrixScanner<R, C>) -> Result<MatrixKeypad, HwError>
    where
        R: OutputPin + Send + 'static,
        C: InputPin + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(16);
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        let thread = std::thread::Builder::new()
            .name("keypad-scan".into())
            .spawn(move || {
                let start = Instant::now();
                let mut next = start;
                while !halt.load(Ordering::Relaxed) {
                    let events = scanner.scan(start.elapsed());
                    let failed = events.is_err();
                    for e in
                        events.map_or_else(|e| vec![Err(e)], |v| v.into_iter().map(Ok).collect())
                    {
                        if tx.blocking_send(e).is_err() {
                            return;
                        }
                    }
                    if failed {
                        return;
                    }
                    next += SCAN_PERIOD;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    } else {
                        next = Instant::now();
                    }
                }
            })
            .map_err(|e| HwError::Open {
                what: "keypad",
                path: "scan thread".into(),
                source: e.into(),
            })?;
        Ok(MatrixKeypad {
            rx,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for MatrixKeypad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.rx.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Keypad for MatrixKeypad {
    async fn next_input(&mut self) -> Result<Option<Input>, HwError> {
        match self.rx.recv().await {
            Some(Ok(event)) => Ok(Some(Input::Key(event))),
            Some(Err(e)) => Err(HwError::Io {
                what: "keypad",
                source: e.into(),
            }),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;
    use std::convert::Infallible;
    use std::rc::Rc;

    use embedded_hal::digital::ErrorType;
    use embedded_hal_mock::eh1::digital::{Mock, State, Transaction};

    use super::*;

    /// A keypad without diodes: the closed switches, and which rows are driven low. A
    /// column reads low when a path of closed switches joins it to a low row, which is
    /// exactly how ghost keys appear on real pads.
    #[derive(Default)]
    struct Pad {
        closed: BTreeSet<(usize, usize)>,
        low_rows: BTreeSet<usize>,
    }

    impl Pad {
        fn column_low(&self, column: usize) -> bool {
            let mut rows: BTreeSet<usize> = self.low_rows.clone();
            let mut columns: BTreeSet<usize> = BTreeSet::new();
            loop {
                let before = (rows.len(), columns.len());
                for &(r, c) in &self.closed {
                    if rows.contains(&r) {
                        columns.insert(c);
                    }
                    if columns.contains(&c) {
                        rows.insert(r);
                    }
                }
                if (rows.len(), columns.len()) == before {
                    break;
                }
            }
            columns.contains(&column)
        }
    }

    struct RowPin(Rc<RefCell<Pad>>, usize);
    struct ColumnPin(Rc<RefCell<Pad>>, usize);

    impl ErrorType for RowPin {
        type Error = Infallible;
    }
    impl ErrorType for ColumnPin {
        type Error = Infallible;
    }
    impl OutputPin for RowPin {
        fn set_low(&mut self) -> Result<(), Infallible> {
            self.0.borrow_mut().low_rows.insert(self.1);
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Infallible> {
            self.0.borrow_mut().low_rows.remove(&self.1);
            Ok(())
        }
    }
    impl InputPin for ColumnPin {
        fn is_high(&mut self) -> Result<bool, Infallible> {
            Ok(!self.0.borrow().column_low(self.1))
        }
        fn is_low(&mut self) -> Result<bool, Infallible> {
            Ok(self.0.borrow().column_low(self.1))
        }
    }

    const TIMING: ScanTiming = ScanTiming {
        debounce: Duration::from_millis(20),
        long_press: Duration::from_millis(800),
        settle: Duration::ZERO,
    };

    fn pad(columns: usize) -> (Rc<RefCell<Pad>>, MatrixScanner<RowPin, ColumnPin>) {
        let pad = Rc::new(RefCell::new(Pad::default()));
        let rows = (0..4).map(|r| RowPin(pad.clone(), r)).collect();
        let cols = (0..columns).map(|c| ColumnPin(pad.clone(), c)).collect();
        let layout = MatrixScanner::<RowPin, ColumnPin>::layout_for(columns);
        let scanner = MatrixScanner::new(rows, cols, layout, TIMING).unwrap();
        (pad, scanner)
    }

    /// Runs the scanner every 5 ms from `from` to `to`, collecting events with their time.
    fn run(
        scanner: &mut MatrixScanner<RowPin, ColumnPin>,
        from: u64,
        to: u64,
    ) -> Vec<(u64, KeyEvent)> {
        let mut out = Vec::new();
        for ms in (from..to).step_by(5) {
            for e in scanner.scan(Duration::from_millis(ms)).unwrap() {
                out.push((ms, e));
            }
        }
        out
    }

    fn key(c: char) -> Key {
        Key::from_char(c).unwrap()
    }

    #[test]
    fn a_clean_press_is_one_event_at_release() {
        let (pad, mut s) = pad(3);
        pad.borrow_mut().closed.insert((1, 1)); // 5
        assert!(run(&mut s, 0, 150).is_empty());
        pad.borrow_mut().closed.clear();
        let events = run(&mut s, 150, 300);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].1, KeyEvent::press(key('5')));
        assert!(events[0].0 >= 170, "{events:?}"); // released at 150, stable 20 ms later
    }

    #[test]
    fn every_key_of_both_layouts_has_its_legend() {
        for columns in [3, 4] {
            let (pad, mut s) = pad(columns);
            let layout = MatrixScanner::<RowPin, ColumnPin>::layout_for(columns);
            let mut t = 0;
            for (r, row) in layout.iter().enumerate() {
                for (c, legend) in row.chars().enumerate() {
                    pad.borrow_mut().closed.insert((r, c));
                    let mut events = run(&mut s, t, t + 100);
                    pad.borrow_mut().closed.clear();
                    events.extend(run(&mut s, t + 100, t + 200));
                    t += 200;
                    let keys: Vec<Key> = events.iter().map(|(_, e)| e.key).collect();
                    assert_eq!(keys, Key::from_char(legend).into_iter().collect::<Vec<_>>());
                }
            }
        }
    }

    #[test]
    fn bounce_on_press_and_release_gives_one_press() {
        let (pad, mut s) = pad(3);
        let mut events = Vec::new();
        // Contact bounce: 1 ms resolution scans, closed/open flicker for 8 ms each edge.
        let bounce = [1, 0, 1, 1, 0, 1, 0, 0, 1];
        let mut t = 0u64;
        for &b in &bounce {
            if b == 1 {
                pad.borrow_mut().closed.insert((0, 2));
            } else {
                pad.borrow_mut().closed.clear();
            }
            events.extend(s.scan(Duration::from_millis(t)).unwrap());
            t += 1;
        }
        pad.borrow_mut().closed.insert((0, 2));
        for _ in 0..100 {
            events.extend(s.scan(Duration::from_millis(t)).unwrap());
            t += 1;
        }
        for &b in &bounce {
            if b == 0 {
                pad.borrow_mut().closed.insert((0, 2));
            } else {
                pad.borrow_mut().closed.clear();
            }
            events.extend(s.scan(Duration::from_millis(t)).unwrap());
            t += 1;
        }
        pad.borrow_mut().closed.clear();
        for _ in 0..50 {
            events.extend(s.scan(Duration::from_millis(t)).unwrap());
            t += 1;
        }
        assert_eq!(events, vec![KeyEvent::press(key('3'))]);
    }

    #[test]
    fn chatter_shorter_than_the_debounce_time_is_ignored() {
        let (pad, mut s) = pad(3);
        let mut events = Vec::new();
        // A noisy line: closed for 10 ms out of every 30, never 20 ms in a row.
        for ms in 0..600u64 {
            if ms % 30 < 10 {
                pad.borrow_mut().closed.insert((3, 0));
            } else {
                pad.borrow_mut().closed.clear();
            }
            events.extend(s.scan(Duration::from_millis(ms)).unwrap());
        }
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn a_long_press_is_reported_once_while_held_and_not_again_at_release() {
        let (pad, mut s) = pad(3);
        pad.borrow_mut().closed.insert((3, 2)); // #
        let events = run(&mut s, 0, 2000);
        assert_eq!(
            events,
            vec![(
                800,
                KeyEvent {
                    key: Key::Hash,
                    held: true
                }
            )]
        );
        pad.borrow_mut().closed.clear();
        assert!(run(&mut s, 2000, 2200).is_empty());
    }

    #[test]
    fn the_ghost_of_a_rectangle_is_not_reported() {
        let (pad, mut s) = pad(3);
        // 1, 2 and 4 held together: the pad also closes the path to 5 (row 1, column 1).
        pad.borrow_mut().closed.extend([(0, 0), (0, 1), (1, 0)]);
        pad.borrow_mut().low_rows.insert(1);
        assert!(pad.borrow().column_low(1), "the pad model makes the ghost");
        pad.borrow_mut().low_rows.clear();
        let events = run(&mut s, 0, 300);
        pad.borrow_mut().closed.clear();
        let mut all = events;
        all.extend(run(&mut s, 300, 500));
        assert!(all.is_empty(), "{all:?}");
        assert!(s.ghost_scans > 50);
    }

    #[test]
    fn two_keys_in_different_rows_and_columns_are_both_reported() {
        let (pad, mut s) = pad(4);
        pad.borrow_mut().closed.extend([(0, 0), (2, 3)]); // 1 and C
        run(&mut s, 0, 100);
        pad.borrow_mut().closed.remove(&(0, 0));
        let events = run(&mut s, 100, 200);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].1.key, key('1'));
        assert_eq!(s.ghost_scans, 0);
    }

    #[test]
    fn the_scan_drives_one_row_low_at_a_time() {
        // Strict expectations: each row goes low, its columns are read, it goes high again.
        let mut rows = Vec::new();
        let mut columns: Vec<Vec<Transaction>> = vec![Vec::new(); 3];
        for r in 0..4 {
            rows.push(vec![
                Transaction::set(State::High),
                Transaction::set(State::Low),
                Transaction::set(State::High),
            ]);
            for (c, col) in columns.iter_mut().enumerate() {
                let pressed = r == 2 && c == 1; // 8
                col.push(Transaction::get(if pressed {
                    State::Low
                } else {
                    State::High
                }));
            }
        }
        let rows: Vec<Mock> = rows.iter().map(Mock::new).collect();
        let cols: Vec<Mock> = columns.iter().map(Mock::new).collect();
        let mut s = MatrixScanner::new(
            rows.clone(),
            cols.clone(),
            &LAYOUT_4X3,
            ScanTiming::default(),
        )
        .unwrap();
        assert!(s.scan(Duration::ZERO).unwrap().is_empty());
        assert!(s.keys[7].raw && !s.keys[7].down);
        for mut pin in rows.into_iter().chain(cols) {
            pin.done();
        }
    }

    /// Pins that are Send, for the scan thread: one key (row 0, column 0) pressed while
    /// the flag is set.
    #[derive(Clone)]
    struct SharedPad(Arc<std::sync::Mutex<(bool, Option<usize>)>>);
    struct SharedRow(SharedPad, usize);
    struct SharedColumn(SharedPad, usize);
    impl ErrorType for SharedRow {
        type Error = Infallible;
    }
    impl ErrorType for SharedColumn {
        type Error = Infallible;
    }
    impl OutputPin for SharedRow {
        fn set_low(&mut self) -> Result<(), Infallible> {
            self.0 .0.lock().unwrap().1 = Some(self.1);
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Infallible> {
            self.0 .0.lock().unwrap().1 = None;
            Ok(())
        }
    }
    impl InputPin for SharedColumn {
        fn is_high(&mut self) -> Result<bool, Infallible> {
            self.is_low().map(|low| !low)
        }
        fn is_low(&mut self) -> Result<bool, Infallible> {
            let (pressed, row) = *self.0 .0.lock().unwrap();
            Ok(pressed && row == Some(0) && self.1 == 0)
        }
    }

    #[tokio::test]
    async fn the_scan_thread_delivers_keys_to_the_app() {
        let pad = SharedPad(Arc::new(std::sync::Mutex::new((false, None))));
        let rows = (0..4).map(|r| SharedRow(pad.clone(), r)).collect();
        let cols = (0..3).map(|c| SharedColumn(pad.clone(), c)).collect();
        let scanner = MatrixScanner::new(rows, cols, &LAYOUT_4X3, ScanTiming::default()).unwrap();
        let mut keypad = MatrixKeypad::start(scanner).unwrap();
        pad.0.lock().unwrap().0 = true;
        tokio::time::sleep(Duration::from_millis(100)).await;
        pad.0.lock().unwrap().0 = false;
        let input = tokio::time::timeout(Duration::from_secs(2), keypad.next_input())
            .await
            .expect("no key within 2 s")
            .unwrap();
        assert_eq!(input, Some(Input::Key(KeyEvent::press(key('1')))));
    }

    #[test]
    fn a_layout_that_does_not_fit_is_refused() {
        let pad = Rc::new(RefCell::new(Pad::default()));
        let rows: Vec<RowPin> = (0..4).map(|r| RowPin(pad.clone(), r)).collect();
        let cols: Vec<ColumnPin> = (0..3).map(|c| ColumnPin(pad.clone(), c)).collect();
        assert!(MatrixScanner::new(rows, cols, &LAYOUT_4X4, ScanTiming::default()).is_err());
    }
}
