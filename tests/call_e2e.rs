//! The whole user journey: `intercom demo` runs two boxes that pair with a typed PIN and
//! talk, both speakerphones. Checks the texts, the voice that arrived, that the talker's
//! voice did not come back, that both boxes end idle, and that the program wrote no file
//! outside the output folder it was given.

mod common;

use std::process::Command;

use common::audio::{compare, read_wav};

#[test]
fn demo_pairs_talks_texts_hangs_up_and_writes_only_its_output() {
    if !common::in_private_network("demo_pairs_talks_texts_hangs_up_and_writes_only_its_output") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let trace = work.path().join("trace.txt");
    let status = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "--seccomp-bpf",
            "-e",
            "trace=open,openat,creat,rename,renameat,renameat2,mkdir,mkdirat",
        ])
        .arg("-o")
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_intercom"))
        .arg("demo")
        .arg("--out")
        .arg(&out)
        .env("INTERCOM_LOG", "warn")
        .current_dir(work.path())
        .status()
        .expect("strace is needed (apt-get install strace)");
    assert!(status.success());

    // Nothing written anywhere but the output folder.
    let trace = std::fs::read_to_string(&trace).unwrap();
    let out_str = out.to_str().unwrap();
    let writes = common::file_writes(&trace, |_| false);
    assert!(
        !writes.is_empty(),
        "the trace saw no writes at all: {trace}"
    );
    for line in &writes {
        let path = line.split('"').nth(1).unwrap_or("");
        assert!(
            path.starts_with(out_str),
            "wrote outside the output folder: {line}"
        );
    }

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["texts_b_to_a"], 1, "{summary}");
    assert_eq!(summary["texts_a_to_b"], 1, "{summary}");
    assert_eq!(summary["texts_shown_on_a"][0], intercom::demo::VISITOR_TEXT);
    assert_eq!(summary["texts_shown_on_b"][0], "Coming!");
    assert_eq!(summary["both_idle_after_call"], true);
    // Both boxes are speakerphones in a room: B's voice reached A's microphone about as
    // loud as B spoke it, and A's canceller kept it from coming back (without one the
    // two boxes feed back, above 0 dB).
    let back = summary["echo_back_db"].as_f64().unwrap();
    assert!(
        back < -40.0,
        "B heard itself back at {back:.0} dB: {summary}"
    );

    // The clip B spoke arrived at A: same waveform, same length.
    let clip = hound::WavReader::new(std::io::Cursor::new(intercom::demo::SPEECH_CLIP))
        .unwrap()
        .into_samples::<i16>()
        .map(|s| f64::from(s.unwrap()))
        .collect::<Vec<_>>();
    let heard = read_wav(&out.join("box-a-heard.wav"));
    let m = compare(&clip, &heard);
    println!("voice at A: {m:?}");
    assert!(
        m.windowed > 0.6,
        "voice at A does not match the clip: {m:?}"
    );
    assert!(
        (0.95..=1.05).contains(&m.duration_ratio),
        "speech lasted {:.3} of the clip",
        m.duration_ratio
    );
    for png in [
        "box-a-room-open.png",
        "box-a-in-call.png",
        "box-b-in-call.png",
    ] {
        assert!(out.join(png).exists(), "{png} missing");
    }
}
