//! The simulated keypad: scripted keys (`--keys`), lines from a FIFO (`--keys-fifo`) and
//! the terminal (raw mode when stdin is a TTY).

use std::io::{IsTerminal, Read};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::termios::{self, LocalFlags, SetArg, Termios};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::hw::{HwError, Input, Key, KeyEvent, Keypad};

/// Pause between two scripted key presses, about a person's typing speed.
const KEY_PACE: Duration = Duration::from_millis(150);
/// What `.` in a key script waits.
const SCRIPT_PAUSE: Duration = Duration::from_millis(250);

/// One step of a key script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptStep {
    /// Press (or hold) a key.
    Key(KeyEvent),
    /// Wait before the next step.
    Pause(Duration),
}

/// Parses a key script: `0`–`9`, `*`, `#` press a key, `^` before a key holds it (long
/// press), `.` waits 250 ms, spaces are ignored.
pub fn parse_key_script(script: &str) -> Result<Vec<ScriptStep>, String> {
    let mut steps = Vec::new();
    let mut held = false;
    for (i, c) in script.chars().enumerate() {
        match c {
            ' ' => {}
            '^' if !held => held = true,
            '.' if !held => steps.push(ScriptStep::Pause(SCRIPT_PAUSE)),
            _ => match Key::from_char(c) {
                Some(key) => {
                    steps.push(ScriptStep::Key(KeyEvent { key, held }));
                    held = false;
                }
                None => {
                    return Err(format!(
                        "character {c:?} at position {} is not a key (use 0-9 * #, ^ to hold, . to wait)",
                        i + 1
                    ))
                }
            },
        }
    }
    if held {
        return Err("the script ends with ^ but no key to hold".into());
    }
    Ok(steps)
}

/// Where the simulated keypad takes its keys from.
#[derive(Debug, Clone, Default)]
pub struct SimKeypadOptions {
    /// A key script played once at start (see [`parse_key_script`]).
    pub script: Option<String>,
    /// A FIFO whose lines are key scripts, or `text <message>`.
    pub fifo: Option<PathBuf>,
    /// Read stdin too (raw single keys on a TTY, lines otherwise).
    pub stdin: bool,
}

/// Keys typed on the terminal, played from a script or written into a FIFO.
pub struct SimKeypad {
    rx: mpsc::Receiver<Input>,
    tx: mpsc::Sender<Input>,
    _terminal: Option<RawTerminal>,
}

impl SimKeypad {
    /// Starts the configured key sources. Fails on a bad script or an unusable FIFO.
    pub fn start(options: SimKeypadOptions) -> Result<SimKeypad, HwError> {
        let (tx, rx) = mpsc::channel(64);
        if let Some(script) = &options.script {
            let steps = parse_key_script(script).map_err(|reason| HwError::Open {
                what: "key script",
                path: "--keys".into(),
                source: reason.into(),
            })?;
            tokio::spawn(play_script(steps, tx.clone()));
        }
        if let Some(path) = &options.fifo {
            let receiver = open_fifo(path)?;
            tokio::spawn(read_lines(BufReader::new(receiver), tx.clone(), "FIFO"));
        }
        let mut terminal = None;
        if options.stdin {
            if std::io::stdin().is_terminal() {
                terminal = RawTerminal::enter();
                let tx = tx.clone();
                std::thread::spawn(move || read_raw_keys(tx));
            } else {
                tokio::spawn(read_lines(
                    BufReader::new(tokio::io::stdin()),
                    tx.clone(),
                    "stdin",
                ));
            }
        }
        Ok(SimKeypad {
            rx,
            tx,
            _terminal: terminal,
        })
    }

    /// Adds inputs from a channel (another program's hands on the keypad).
    pub fn attach(&mut self, mut source: mpsc::Receiver<Input>) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            while let Some(input) = source.recv().await {
                if tx.send(input).await.is_err() {
                    return;
                }
            }
        });
    }
}

impl Keypad for SimKeypad {
    async fn next_input(&mut self) -> Result<Option<Input>, HwError> {
        Ok(self.rx.recv().await)
    }
}

fn open_fifo(path: &PathBuf) -> Result<tokio::net::unix::pipe::Receiver, HwError> {
    let err = |reason: String| HwError::Open {
        what: "keypad FIFO",
        path: path.display().to_string(),
        source: reason.into(),
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("{e} (create it with mkfifo)")))?;
    if !std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()) {
        return Err(err("not a FIFO (create it with mkfifo)".into()));
    }
    // Opened read-write so the FIFO stays open while writers come and go.
    tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(path)
        .map_err(|e| err(e.to_string()))
}

async fn play_script(steps: Vec<ScriptStep>, tx: mpsc::Sender<Input>) {
    for step in steps {
        match step {
            ScriptStep::Pause(d) => tokio::time::sleep(d).await,
            ScriptStep::Key(ev) => {
                if tx.send(Input::Key(ev)).await.is_err() {
                    return;
                }
                tokio::time::sleep(KEY_PACE).await;
            }
        }
    }
}

/// Parses one control line: `text <message>` or a key script.
fn parse_line(line: &str) -> Result<Vec<Input>, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if let Some(text) = line.strip_prefix("text ") {
        return Ok(vec![Input::Text(text.to_string())]);
    }
    let steps = parse_key_script(line)?;
    Ok(steps
        .into_iter()
        .filter_map(|s| match s {
            ScriptStep::Key(k) => Some(Input::Key(k)),
            ScriptStep::Pause(_) => None,
        })
        .collect())
}

async fn read_lines<R>(mut reader: BufReader<R>, tx: mpsc::Sender<Input>, source: &'static str)
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) => return,
            Ok(_) => match parse_line(&line) {
                Ok(inputs) => {
                    for input in inputs {
                        if tx.send(input).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => tracing::warn!("ignored a line on the {source}: {e}"),
            },
            Err(e) => {
                tracing::warn!("stopped reading keys from the {source}: {e}");
                return;
            }
        }
    }
}

fn read_raw_keys(tx: mpsc::Sender<Input>) {
    let mut stdin = std::io::stdin().lock();
    let mut byte = [0u8; 1];
    while let Ok(1) = stdin.read(&mut byte) {
        if let Some(key) = Key::from_char(char::from(byte[0])) {
            if tx.blocking_send(Input::Key(KeyEvent::press(key))).is_err() {
                return;
            }
        }
    }
}

/// Puts the terminal in non-canonical, no-echo mode and restores it when dropped.
struct RawTerminal {
    saved: Termios,
}

impl RawTerminal {
    fn enter() -> Option<RawTerminal> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        raw.local_flags
            .remove(LocalFlags::ICANON | LocalFlags::ECHO);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_parses_keys_holds_and_pauses() {
        let steps = parse_key_script("*. 12^#").unwrap();
        assert_eq!(
            steps,
            vec![
                ScriptStep::Key(KeyEvent::press(Key::Star)),
                ScriptStep::Pause(SCRIPT_PAUSE),
                ScriptStep::Key(KeyEvent::press(Key::Digit(1))),
                ScriptStep::Key(KeyEvent::press(Key::Digit(2))),
                ScriptStep::Key(KeyEvent {
                    key: Key::Hash,
                    held: true
                }),
            ]
        );
    }

    #[test]
    fn script_rejects_unknown_characters_with_position() {
        let err = parse_key_script("12a").unwrap_err();
        assert!(err.contains("'a'") && err.contains("position 3"), "{err}");
        assert!(parse_key_script("1^").is_err());
    }

    #[test]
    fn control_lines_are_keys_or_text() {
        assert_eq!(
            parse_line("text hello there\n").unwrap(),
            vec![Input::Text("hello there".into())]
        );
        assert_eq!(
            parse_line("4#\n").unwrap(),
            vec![
                Input::Key(KeyEvent::press(Key::Digit(4))),
                Input::Key(KeyEvent::press(Key::Hash))
            ]
        );
        assert!(parse_line("hello").is_err());
    }

    #[tokio::test]
    async fn fifo_lines_become_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let mut keypad = SimKeypad::start(SimKeypadOptions {
            fifo: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.write_all(b"*\ntext hi\n").unwrap();
        });
        assert_eq!(
            keypad.next_input().await.unwrap(),
            Some(Input::Key(KeyEvent::press(Key::Star)))
        );
        assert_eq!(
            keypad.next_input().await.unwrap(),
            Some(Input::Text("hi".into()))
        );
        writer.join().unwrap();
    }

    #[tokio::test]
    async fn missing_fifo_is_a_clear_error() {
        let err = SimKeypad::start(SimKeypadOptions {
            fifo: Some("/nonexistent/keys".into()),
            ..Default::default()
        })
        .err()
        .unwrap();
        let err = crate::errors::chain(&err);
        assert!(
            err.contains("/nonexistent/keys") && err.contains("mkfifo"),
            "{err}"
        );
    }
}
