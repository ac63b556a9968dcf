//! `intercom run --events PATH`: what the box does, as JSON lines, for scripts and the
//! network benchmark.
//!
//! Each line has `t_ns` (CLOCK_MONOTONIC, shared by every process on the machine, network
//! namespaces included) and `event`. Nothing secret goes out: a room's PIN and the words
//! of a text never appear, only that a room opened and a text's id and length.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use nix::time::{clock_gettime, ClockId};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::Report;

/// Nanoseconds on CLOCK_MONOTONIC now.
pub fn monotonic_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// CLOCK_MONOTONIC nanoseconds of an `Instant` in the past (std's Instant reads the same
/// clock, but does not expose it).
fn instant_ns(t: Instant) -> u64 {
    monotonic_ns().saturating_sub(t.elapsed().as_nanos() as u64)
}

/// One report as a JSON line, stamped `t_ns`.
pub fn to_json(report: &Report, t_ns: u64) -> Value {
    let mut v = match report {
        Report::Ready(s) => json!({"event": "ready", "state": s}),
        Report::State(s) => json!({"event": "state", "state": s}),
        Report::CallEnded(reason) => json!({"event": "call_ended", "reason": reason.name()}),
        Report::RoomOpened(_) => json!({"event": "room_opened"}),
        Report::Online(Some(nameplate)) => json!({"event": "online", "nameplate": nameplate}),
        Report::Online(None) => json!({"event": "online", "unavailable": true}),
        Report::MediaConnected(Some(path)) => {
            json!({"event": "media_connected", "path": path.name(), "ipv6": path.ipv6})
        }
        Report::MediaConnected(None) => json!({"event": "media_connected"}),
        Report::Nfc(holds_link) => json!({"event": "nfc", "holds_link": holds_link}),
        Report::AudioFlowing => json!({"event": "audio_flowing"}),
        Report::TextShown { id, text } => {
            json!({"event": "text_shown", "id": id, "chars": text.chars().count()})
        }
        Report::TextsDelivered(n) => json!({"event": "texts_delivered", "total": n}),
        Report::CallFinished(s) => {
            let j = &s.playback.jitter;
            json!({
                "event": "call_finished",
                "capture_started_ns": s.capture.started.map(instant_ns),
                "processing_cpu_pct": s.capture.processing.map(|c| c.cpu_pct()),
                "playback_started_ns": s.playback.started.map(instant_ns),
                "media_connected_ns": s.media_connected.map(instant_ns),
                "frames_out": s.playback.frames_out,
                "target_delay_ms": s.playback.target_delay_ms,
                "received": j.received,
                "played": j.played,
                "recovered": j.recovered,
                "redundant": j.redundant,
                "concealed": j.concealed,
                "late": j.late,
                "duplicates": j.duplicates,
                "dropped": j.dropped,
                "underruns": j.underruns,
                "stretched": j.stretched,
                "shortened": j.shortened,
                "tsm_refused": j.refused,
                "nacked": j.nacked,
                "unsettled_ticks": s.playback.unsettled_ticks,
                "texts_sent": s.texts_sent,
                "texts_delivered": s.texts_delivered,
                "texts_received": s.texts_received,
            })
        }
    };
    v["t_ns"] = json!(t_ns);
    v
}

/// Opens `path` (a file, a FIFO, or `/dev/stdout`) and writes one line per report until
/// the sender side closes. A reader that goes away stops the writing, not the box.
pub fn spawn_writer(path: &Path) -> std::io::Result<mpsc::UnboundedSender<Report>> {
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Report>();
    tokio::spawn(async move {
        while let Some(report) = rx.recv().await {
            // One write per line: a reader sees whole lines, and the box makes one
            // system call per report instead of one per JSON token.
            let mut line = to_json(&report, monotonic_ns()).to_string();
            line.push('\n');
            if let Err(e) = out.write_all(line.as_bytes()) {
                tracing::warn!("events output closed: {e}");
                break;
            }
        }
    });
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairing::Pin;

    #[test]
    fn no_pin_and_no_words_leave_the_box() {
        let pin = Pin::parse("4821").unwrap();
        let line = to_json(&Report::RoomOpened(pin), 1).to_string();
        assert_eq!(line, r#"{"event":"room_opened","t_ns":1}"#);
        let text = Report::TextShown {
            id: 3,
            text: "the door code is 1234".into(),
        };
        let line = to_json(&text, 2).to_string();
        assert!(!line.contains("door") && !line.contains("1234"), "{line}");
        assert!(line.contains(r#""id":3"#) && line.contains(r#""chars":21"#));
    }

    #[tokio::test]
    async fn a_fifo_reader_gets_whole_lines() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("events");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let path = fifo.clone();
        // Each read() returns all the writer put in the pipe so far (the buffer is larger
        // than a pipe holds): if a report went out in pieces, some read would end inside
        // a line.
        let reader = std::thread::spawn(move || {
            let mut f = std::fs::File::open(path).unwrap();
            let (mut all, mut buf) = (Vec::new(), vec![0u8; 1 << 17]);
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    return all;
                }
                assert_eq!(buf[n - 1], b'\n', "a read ended mid-line");
                all.extend_from_slice(&buf[..n]);
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        });
        let tx = spawn_writer(&fifo).unwrap();
        for id in 0..200 {
            tx.send(Report::TextShown {
                id,
                text: "hello".into(),
            })
            .unwrap();
            tokio::task::yield_now().await;
        }
        drop(tx);
        let all = tokio::task::spawn_blocking(move || reader.join().unwrap())
            .await
            .unwrap();
        let lines: Vec<Value> = String::from_utf8(all)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 200);
        assert!(lines.iter().enumerate().all(|(i, v)| v["id"] == i));
    }

    #[test]
    fn past_instants_map_onto_the_monotonic_clock() {
        let before = monotonic_ns();
        let t = Instant::now();
        let after = monotonic_ns();
        let ns = instant_ns(t);
        assert!(ns + 1_000_000 >= before && ns <= after + 1_000_000);
    }
}
