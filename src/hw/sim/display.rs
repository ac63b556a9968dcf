//! The simulated display: the real frame buffer at the board's size and colour depth,
//! written to a PNG on every flush and drawn in the terminal when stdout is one.
//!
//! The PNG is written on a thread of its own after the first frame, and a flush waits
//! for it only briefly ([`WRITE_WAIT`]): the device loop shares its thread with the
//! call's audio, and a file system can hold an `open` or a `rename` for hundreds of
//! milliseconds (470 ms seen on a CI VM's ext4, while the call around it heard 800 ms of
//! "jitter").

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;

use crate::hw::framebuffer::FrameBuffer;
use crate::hw::{Display, HwError, ScreenColor};

/// Widest terminal rendering, in character cells.
const TERMINAL_MAX_COLUMNS: u32 = 120;

/// A frame buffer that shows itself as a PNG file and in the terminal.
pub struct SimDisplay<C: ScreenColor> {
    frame: FrameBuffer<C>,
    png: Option<PathBuf>,
    terminal: bool,
    view: Option<TerminalView>,
    flushes: u64,
    /// Writes every frame after the first, once the first was written.
    writer: Option<PngWriter>,
}

impl<C: ScreenColor> SimDisplay<C> {
    /// A display of `size` pixels; `png` receives every flushed frame. It draws in the
    /// terminal when `terminal` is true and stdout is a TTY.
    pub fn new(size: Size, png: Option<PathBuf>, terminal: bool) -> Self {
        let terminal = terminal && std::io::stdout().is_terminal();
        SimDisplay {
            frame: FrameBuffer::new(size, C::BG),
            png,
            terminal,
            view: terminal.then(TerminalView::start),
            flushes: 0,
            writer: None,
        }
    }

    /// The frame buffer as drawn so far.
    pub fn frame(&self) -> &FrameBuffer<C> {
        &self.frame
    }

    /// How many frames were flushed.
    pub fn flushes(&self) -> u64 {
        self.flushes
    }

    /// Writes the current frame to `path` as a PNG, `scale` screen pixels per image pixel.
    /// The file is replaced atomically: readers never see half a frame.
    pub fn save_png(&self, path: &Path, scale: u32) -> Result<(), HwError> {
        let (width, height, rgb) = self.rgb_pixels(scale.max(1));
        write_png(path, width, height, &rgb).map_err(|reason| png_error(path, reason))
    }

    /// The frame as 8-bit RGB rows, each pixel `scale` × `scale`. A screen has a handful
    /// of colours, so each run of one colour is converted once.
    fn rgb_pixels(&self, scale: u32) -> (u32, u32, Vec<u8>) {
        let size = self.frame.size();
        let (width, height) = (size.width * scale, size.height * scale);
        let row_bytes = width as usize * 3;
        let mut rgb = vec![0u8; row_bytes * height as usize];
        let mut last: Option<(C, [u8; 3])> = None;
        for (y, rows) in rgb.chunks_exact_mut(row_bytes * scale as usize).enumerate() {
            let (first, copies) = rows.split_at_mut(row_bytes);
            for (&c, out) in self
                .frame
                .row(y as u32)
                .iter()
                .zip(first.chunks_exact_mut(3 * scale as usize))
            {
                let bytes = match last {
                    Some((seen, bytes)) if seen == c => bytes,
                    _ => {
                        let p = c.to_rgb888();
                        let bytes = [p.r(), p.g(), p.b()];
                        last = Some((c, bytes));
                        bytes
                    }
                };
                for px in out.chunks_exact_mut(3) {
                    px.copy_from_slice(&bytes);
                }
            }
            for copy in copies.chunks_exact_mut(row_bytes) {
                copy.copy_from_slice(first);
            }
        }
        (width, height, rgb)
    }

    fn draw_terminal(&self) {
        let size = self.frame.size();
        let mut pixels = Vec::with_capacity((size.width * size.height) as usize);
        for y in 0..size.height as i32 {
            for x in 0..size.width as i32 {
                let c = self.frame.pixel(Point::new(x, y)).unwrap_or(C::BG);
                let c = c.to_rgb888();
                pixels.push([c.r(), c.g(), c.b()]);
            }
        }
        if let Some(view) = &self.view {
            view.show(Snapshot { size, pixels });
        }
    }
}

/// One flushed frame, as RGB, kept so that a resized window can be drawn again.
struct Snapshot {
    size: Size,
    pixels: Vec<[u8; 3]>,
}

/// The frame in the terminal: drawn to fit the window, and drawn again when the window
/// changes size (a watcher thread looks four times a second).
struct TerminalView {
    last: std::sync::Arc<std::sync::Mutex<Option<Drawn>>>,
}

/// The last frame, and the window size it was drawn for.
type Drawn = (Snapshot, Option<(u16, u16)>);

impl TerminalView {
    fn start() -> TerminalView {
        let last = std::sync::Arc::new(std::sync::Mutex::new(
            None::<(Snapshot, Option<(u16, u16)>)>,
        ));
        let watched = std::sync::Arc::downgrade(&last);
        std::thread::spawn(move || {
            while let Some(last) = watched.upgrade() {
                let now = terminal_size();
                if let Some((frame, drawn_for)) =
                    last.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
                {
                    if *drawn_for != now {
                        *drawn_for = now;
                        write_terminal(&format!("\x1b[2J{}", render(frame, now)));
                    }
                }
                drop(last);
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        });
        TerminalView { last }
    }

    fn show(&self, frame: Snapshot) {
        let size = terminal_size();
        write_terminal(&render(&frame, size));
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((frame, size));
    }
}

fn write_terminal(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// The window's size in character cells (columns, rows), if stdout is a terminal.
fn terminal_size() -> Option<(u16, u16)> {
    nix::ioctl_read_bad!(window_size, nix::libc::TIOCGWINSZ, nix::libc::winsize);
    let mut ws = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ on stdout writes one `winsize`, which `ws` is; a descriptor that
    // is not a terminal only makes the call fail.
    let ok = unsafe { window_size(nix::libc::STDOUT_FILENO, &mut ws) }.is_ok();
    (ok && ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col, ws.ws_row))
}

/// The smallest window in which the screen is still legible, in cells.
const TERMINAL_MIN: (u16, u16) = (40, 12);

/// The frame drawn with half-block characters (two pixel rows per cell), scaled down to
/// fit `window` (columns, rows; one row kept for the cursor). Without a size, at most
/// [`TERMINAL_MAX_COLUMNS`] wide. A window too small to read says how large it must be.
fn render(frame: &Snapshot, window: Option<(u16, u16)>) -> String {
    let (cols, rows) = window.unwrap_or((TERMINAL_MAX_COLUMNS as u16, u16::MAX));
    if cols < TERMINAL_MIN.0 || rows < TERMINAL_MIN.1 {
        return format!(
            "\x1b[H\x1b[2JThe screen needs a window of at least {} x {} characters.\r\n",
            TERMINAL_MIN.0, TERMINAL_MIN.1
        );
    }
    let size = frame.size;
    let cols = u32::from(cols).min(TERMINAL_MAX_COLUMNS);
    let rows = u32::from(rows) - 1;
    let step = size
        .width
        .div_ceil(cols)
        .max(size.height.div_ceil(2 * rows))
        .max(1);
    let pixel = |x: u32, y: u32| {
        if x < size.width && y < size.height {
            frame.pixels[(y * size.width + x) as usize]
        } else {
            frame.pixels[0]
        }
    };
    let mut out = String::from("\x1b[H");
    let mut y = 0;
    while y < size.height {
        let mut x = 0;
        while x < size.width {
            let (top, bottom) = (pixel(x, y), pixel(x, y + step));
            out.push_str(&format!(
                "\x1b[38;2;{};{};{}m\x1b[48;2;{};{};{}m\u{2580}",
                top[0], top[1], top[2], bottom[0], bottom[1], bottom[2]
            ));
            x += step;
        }
        out.push_str("\x1b[0m\x1b[K\r\n");
        y += 2 * step;
    }
    out
}

impl<C: ScreenColor> OriginDimensions for SimDisplay<C> {
    fn size(&self) -> Size {
        self.frame.size()
    }
}

impl<C: ScreenColor> DrawTarget for SimDisplay<C> {
    type Color = C;
    type Error = core::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<C>>,
    {
        self.frame.draw_iter(pixels)
    }

    fn fill_solid(&mut self, area: &Rectangle, color: C) -> Result<(), Self::Error> {
        self.frame.fill_solid(area, color)
    }

    fn clear(&mut self, color: C) -> Result<(), Self::Error> {
        self.frame.clear(color)
    }
}

impl<C: ScreenColor> Display for SimDisplay<C> {
    fn flush(&mut self) -> Result<(), HwError> {
        self.flushes += 1;
        if let Some(path) = &self.png {
            if self.writer.is_none() {
                // The first frame is written here, so a path that cannot be written is
                // reported as the box starts.
                self.save_png(path, 1)?;
                self.writer = Some(PngWriter::start(path.clone()));
            } else {
                if let Some(reason) = self.writer.as_ref().and_then(PngWriter::take_failure) {
                    return Err(png_error(path, reason));
                }
                let (width, height, rgb) = self.rgb_pixels(1);
                if let Some(writer) = &mut self.writer {
                    writer.submit(width, height, rgb);
                }
            }
        }
        if self.terminal {
            self.draw_terminal();
        }
        Ok(())
    }
}

fn png_error(path: &Path, reason: String) -> HwError {
    HwError::Io {
        what: "display PNG",
        source: format!("{}: {reason}", path.display()).into(),
    }
}

/// Encodes RGB rows as a PNG and replaces `path` with it atomically: readers never see
/// half a frame.
fn write_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<(), String> {
    let name = path.file_name().ok_or("not a file name")?;
    // Fast compression: a third of the default's CPU; a screen still packs into a few
    // kB, written in one call.
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    encoder.set_filter(png::Filter::Adaptive);
    encoder
        .write_header()
        .and_then(|mut w| {
            w.write_image_data(rgb)?;
            w.finish()
        })
        .map_err(|e| e.to_string())?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::write(&tmp, &png).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

/// How long a flush waits for its frame to be on disk. A healthy file system writes a
/// screen in well under a millisecond, so a reader who saw what the box did next finds
/// the screen that went with it; one that stalls holds the loop (and the call's audio)
/// no longer than this, and the frame lands when the file system is back.
const WRITE_WAIT: std::time::Duration = std::time::Duration::from_millis(10);

/// A frame waiting for the writer, as RGB rows.
struct Pending {
    /// Its number: frames are numbered from 1 as they are handed over.
    seq: u64,
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

/// What the flushing side and the writer thread share.
#[derive(Default)]
struct Shared {
    /// The newest frame not yet written: a newer one replaces it (only the last frame
    /// matters to a reader of the file).
    next: Option<Pending>,
    /// The number of the last frame written (or failed).
    written: u64,
    /// Why the last write failed, until a flush reports it.
    failure: Option<String>,
    /// Set when the display goes: the writer writes what is pending and ends.
    closing: bool,
}

/// The shared state and its two signals.
#[derive(Default)]
struct Channel {
    state: Mutex<Shared>,
    /// A frame is waiting, or the display goes.
    ready: Condvar,
    /// A frame was written.
    done: Condvar,
}

impl Channel {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Writes frames to one PNG file on its own thread.
struct PngWriter {
    channel: Arc<Channel>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The number of the last frame handed over.
    submitted: u64,
}

impl PngWriter {
    fn start(path: PathBuf) -> PngWriter {
        let channel = Arc::new(Channel::default());
        let theirs = Arc::clone(&channel);
        let thread = std::thread::Builder::new()
            .name("display-png".into())
            .spawn(move || loop {
                let frame = {
                    let mut state = theirs.lock();
                    loop {
                        if let Some(frame) = state.next.take() {
                            break frame;
                        }
                        if state.closing {
                            return;
                        }
                        state = theirs.ready.wait(state).unwrap_or_else(|e| e.into_inner());
                    }
                };
                let result = write_png(&path, frame.width, frame.height, &frame.rgb);
                let mut state = theirs.lock();
                state.written = frame.seq;
                state.failure = result.err();
                theirs.done.notify_all();
            })
            .ok();
        PngWriter {
            channel,
            thread,
            submitted: 0,
        }
    }

    /// Hands a frame over, replacing one not yet written, and waits up to
    /// [`WRITE_WAIT`] for it to be written.
    fn submit(&mut self, width: u32, height: u32, rgb: Vec<u8>) {
        self.submitted += 1;
        let seq = self.submitted;
        let mut state = self.channel.lock();
        state.next = Some(Pending {
            seq,
            width,
            height,
            rgb,
        });
        self.channel.ready.notify_one();
        let _ = self
            .channel
            .done
            .wait_timeout_while(state, WRITE_WAIT, |s| s.written < seq);
    }

    /// Why the last write failed, if it did (reported once).
    fn take_failure(&self) -> Option<String> {
        if self.thread.is_none() {
            return Some("no thread to write the PNG".into());
        }
        self.channel.lock().failure.take()
    }
}

impl Drop for PngWriter {
    /// Writes the last frame before the display goes.
    fn drop(&mut self) {
        self.channel.lock().closing = true;
        self.channel.ready.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::pixelcolor::{BinaryColor, Rgb565};
    use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};

    #[test]
    fn flush_writes_png_at_native_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("screen.png");
        let mut display = SimDisplay::<Rgb565>::new(Size::new(240, 240), Some(path.clone()), false);
        Rectangle::new(Point::new(10, 20), Size::new(5, 5))
            .into_styled(PrimitiveStyle::with_fill(Rgb565::RED))
            .draw(&mut display)
            .unwrap();
        display.flush().unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (240, 240));
        assert_eq!(img.get_pixel(12, 22).0, [255, 0, 0]);
        assert_eq!(img.get_pixel(0, 0).0, {
            let c = Rgb565::BG.to_rgb888();
            [c.r(), c.g(), c.b()]
        });
        // No temporary file is left beside the PNG.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn scaled_png_repeats_each_pixel() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.png");
        let mut display = SimDisplay::<Rgb565>::new(Size::new(4, 3), None, false);
        Pixel(Point::new(1, 2), Rgb565::RED)
            .draw(&mut display)
            .unwrap();
        display.save_png(&path, 3).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (12, 9));
        for (x, y, p) in img.enumerate_pixels() {
            let red = (3..6).contains(&x) && (6..9).contains(&y);
            assert_eq!(p.0 == [255, 0, 0], red, "pixel {x},{y}");
        }
    }

    #[test]
    fn monochrome_png_is_black_and_white() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oled.png");
        let mut display =
            SimDisplay::<BinaryColor>::new(Size::new(128, 64), Some(path.clone()), false);
        Pixel(Point::new(3, 4), BinaryColor::On)
            .draw(&mut display)
            .unwrap();
        display.flush().unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (128, 64));
        assert_eq!(img.get_pixel(3, 4).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(4, 4).0, [0, 0, 0]);
    }

    #[test]
    fn later_frames_are_written_off_the_flushing_thread_and_the_last_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("screen.png");
        let mut display = SimDisplay::<Rgb565>::new(Size::new(16, 16), Some(path.clone()), false);
        display.flush().unwrap();
        for x in 0..10 {
            Pixel(Point::new(x, 3), Rgb565::RED)
                .draw(&mut display)
                .unwrap();
            display.flush().unwrap();
        }
        // The display going writes what was still pending.
        drop(display);
        let img = image::open(&path).unwrap().to_rgb8();
        assert!((0..10).all(|x| img.get_pixel(x, 3).0 == [255, 0, 0]));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_later_write_that_fails_is_reported_at_a_following_flush() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("screens");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("screen.png");
        let mut display = SimDisplay::<BinaryColor>::new(Size::new(8, 8), Some(path), false);
        display.flush().unwrap();
        std::fs::remove_dir_all(&sub).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let err = loop {
            match display.flush() {
                Err(e) => break crate::errors::chain(&e),
                Ok(()) => {
                    assert!(std::time::Instant::now() < deadline, "never reported");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        };
        assert!(err.contains("screen.png"), "{err}");
    }

    #[test]
    fn unwritable_png_is_an_error_not_a_panic() {
        let mut display = SimDisplay::<BinaryColor>::new(
            Size::new(128, 64),
            Some("/nonexistent/dir/screen.png".into()),
            false,
        );
        let err = crate::errors::chain(&display.flush().unwrap_err());
        assert!(err.contains("/nonexistent/dir/screen.png"), "{err}");
    }

    /// Cells of each drawn line (one half-block per cell) and the number of lines.
    fn cells(text: &str) -> (usize, usize) {
        let lines: Vec<&str> = text
            .split("\r\n")
            .filter(|l| l.contains('\u{2580}'))
            .collect();
        let widest = lines
            .iter()
            .map(|l| l.matches('\u{2580}').count())
            .max()
            .unwrap_or(0);
        (widest, lines.len())
    }

    #[test]
    fn the_terminal_drawing_fits_the_window() {
        // The ST7789's 240 x 240 and the SSD1306's 128 x 64.
        for (w, h) in [(240, 240), (128, 64)] {
            let frame = Snapshot {
                size: Size::new(w, h),
                pixels: vec![[10, 20, 30]; (w * h) as usize],
            };
            for (cols, rows) in [(80u16, 24u16), (100, 40), (40, 12), (300, 100)] {
                let (width, lines) = cells(&render(&frame, Some((cols, rows))));
                assert!(
                    width <= usize::from(cols).min(120),
                    "{w}x{h} in {cols}x{rows}: {width} wide"
                );
                assert!(
                    lines < usize::from(rows),
                    "{w}x{h} in {cols}x{rows}: {lines} lines"
                );
                assert!(width >= usize::from(cols.min(120)) / 3 || lines >= usize::from(rows) / 3);
            }
            let small = render(&frame, Some((30, 10)));
            assert!(small.contains("at least 40 x 12"), "{small}");
            assert_eq!(cells(&small), (0, 0));
        }
    }
}
