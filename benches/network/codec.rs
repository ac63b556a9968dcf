//! The codec alone, no network: the speech clip through the box's Opus encoder at each
//! complexity, scored with PESQ-WB clean (no FEC, as on a clean link) and at 15 % random
//! loss (FEC, then concealment), with the CPU time one 20 ms frame costs to encode (with
//! and without FEC), to encode a frame of room noise once the encoder has eased off
//! (`intercom::audio::effort`), and to decode. This is where the encoder's complexity is
//! chosen: it is most of a call's CPU. Then the decoder's concealment: classic PLC
//! (complexity 0) against libopus's neural deep PLC (5), on a stream with FEC (a box's)
//! and one without (a browser's), at 5 % and 15 % random loss. Last, the wire rate of
//! the loss-driven packet copies, speech alone and in a conversation.

use std::path::Path;

use intercom::audio::codec::{packet_samples, VoiceDecoder, VoiceEncoder};
use intercom::audio::VoiceSender;
use intercom::hw::FRAME_SAMPLES;
use nix::time::{clock_gettime, ClockId};
use rand::{Rng, SeedableRng};

use intercom_test_support::audio::{align, pesq_wb, read_wav, retime};

/// One encoder setting, measured.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct CodecResult {
    pub complexity: i32,
    pub pesq_clean: f64,
    pub pesq_loss15: f64,
    /// CPU µs to encode one 20 ms frame without FEC, as on a clean link (best of the
    /// passes).
    pub encode_us: f64,
    /// The same with FEC on (tuned for 15 % loss).
    pub encode_fec_us: f64,
    /// CPU µs to encode one 20 ms frame of faint room noise, after the first second of it.
    pub encode_quiet_us: f64,
    /// CPU µs to decode one 20 ms frame (best of the passes).
    pub decode_us: f64,
    /// Mean packet size, bytes.
    pub packet_bytes: f64,
}

const PASSES: usize = 3;
const LOSS: f64 = 0.15;

/// This thread's CPU time so far, seconds.
pub(crate) fn thread_cpu_secs() -> f64 {
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock");
    t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9
}

fn frames(clip: &[i16]) -> Vec<[i16; FRAME_SAMPLES]> {
    clip.chunks(FRAME_SAMPLES)
        .map(|c| {
            let mut f = [0i16; FRAME_SAMPLES];
            f[..c.len()].copy_from_slice(c);
            f
        })
        .collect()
}

/// Encodes `frames` `passes` times; returns the packets and the best CPU µs per frame.
fn encode(
    frames: &[[i16; FRAME_SAMPLES]],
    complexity: i32,
    loss: f32,
    passes: usize,
) -> (Vec<Vec<u8>>, f64) {
    let mut best = f64::MAX;
    let mut packets = Vec::new();
    for _ in 0..passes {
        let mut enc = VoiceEncoder::with_complexity(loss, complexity).unwrap();
        let t0 = thread_cpu_secs();
        packets = frames.iter().map(|f| enc.encode(f).unwrap()).collect();
        best = best.min(thread_cpu_secs() - t0);
    }
    (packets, best * 1e6 / frames.len() as f64)
}

/// CPU µs per frame to encode faint white noise (−50 dBFS), timed after a second of it.
fn encode_quiet(complexity: i32) -> f64 {
    const SETTLE: usize = 50;
    const TIMED: usize = 250;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let noise: Vec<[i16; FRAME_SAMPLES]> = (0..SETTLE + TIMED)
        .map(|_| std::array::from_fn(|_| rng.gen_range(-180..=180)))
        .collect();
    let mut best = f64::MAX;
    for _ in 0..PASSES {
        let mut enc = VoiceEncoder::with_complexity(0.0, complexity).unwrap();
        for f in &noise[..SETTLE] {
            enc.encode(f).unwrap();
        }
        let t0 = thread_cpu_secs();
        for f in &noise[SETTLE..] {
            enc.encode(f).unwrap();
        }
        best = best.min(thread_cpu_secs() - t0);
    }
    best * 1e6 / TIMED as f64
}

/// Decodes `packets`, the ones marked in `lost` rebuilt from the next packet's FEC or
/// concealed; returns the audio and the CPU µs per frame.
fn decode(packets: &[Vec<u8>], lost: &[bool]) -> (Vec<f64>, f64) {
    decode_at(packets, lost, intercom::audio::codec::DECODER_COMPLEXITY)
}

/// As [`decode`], with the decoder at `complexity`.
fn decode_at(packets: &[Vec<u8>], lost: &[bool], complexity: i32) -> (Vec<f64>, f64) {
    let pause = complexity.min(intercom::audio::codec::QUIET_DECODER_COMPLEXITY);
    decode_with(packets, lost, complexity, pause)
}

/// As [`decode`], concealing losses in speech at `complexity` and in pauses at `pause`.
fn decode_with(packets: &[Vec<u8>], lost: &[bool], complexity: i32, pause: i32) -> (Vec<f64>, f64) {
    let mut best = f64::MAX;
    let mut out = Vec::new();
    for _ in 0..PASSES {
        let mut dec = VoiceDecoder::with_complexities(complexity, pause).unwrap();
        out.clear();
        let t0 = thread_cpu_secs();
        for (i, p) in packets.iter().enumerate() {
            let pcm = if !lost[i] {
                dec.decode(p).unwrap()
            } else if i + 1 < packets.len() && !lost[i + 1] {
                dec.recover(&packets[i + 1], packet_samples(p)).unwrap()
            } else {
                dec.conceal(packet_samples(p)).unwrap()
            };
            out.extend(pcm.iter().map(|&s| f64::from(s)));
        }
        best = best.min(thread_cpu_secs() - t0);
    }
    (out, best * 1e6 / packets.len() as f64)
}

/// Measures each of `complexities` (every one from 0 to 10 when empty) on the WAV file
/// `clip` (48 kHz mono).
pub(crate) fn sweep(clip: &Path, dir: &Path, complexities: &[i32]) -> Vec<CodecResult> {
    let reference = read_wav(clip);
    let pcm: Vec<i16> = reference.iter().map(|&s| s as i16).collect();
    let frames = frames(&pcm);
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let lost: Vec<bool> = (0..frames.len()).map(|_| rng.gen_bool(LOSS)).collect();
    let none = vec![false; frames.len()];
    let all: Vec<i32> = (0..=10).collect();
    let chosen = if complexities.is_empty() {
        &all
    } else {
        complexities
    };
    chosen
        .iter()
        .map(|&complexity| {
            let (clean_packets, encode_us) = encode(&frames, complexity, 0.0, PASSES);
            let (clean, decode_us) = decode(&clean_packets, &none);
            // The codec's own delay (its look-ahead), found as the network calls find theirs.
            let (lag, _) = align(&reference, &clean);
            let score = |decoded: &[f64]| {
                let deg = retime(&reference, decoded, lag);
                pesq_wb(&reference, &deg, dir).unwrap_or_else(|e| panic!("{e}"))
            };
            let (lossy_packets, encode_fec_us) = encode(&frames, complexity, LOSS as f32, PASSES);
            let (lossy, _) = decode(&lossy_packets, &lost);
            let bytes = clean_packets.iter().map(Vec::len).sum::<usize>();
            let r = CodecResult {
                complexity,
                pesq_clean: score(&clean),
                pesq_loss15: score(&lossy),
                encode_us,
                encode_fec_us,
                encode_quiet_us: encode_quiet(complexity),
                decode_us,
                packet_bytes: bytes as f64 / clean_packets.len() as f64,
            };
            eprintln!("  {r:?}");
            r
        })
        .collect()
}

/// One concealment setting on one stream, measured.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct PlcResult {
    /// 0: classic PLC; 5: deep PLC.
    pub decoder_complexity: i32,
    /// The same for losses in pauses (the last packet said no voice).
    pub pause_complexity: i32,
    /// The sender put FEC in its packets.
    pub fec: bool,
    pub loss: f64,
    pub pesq: f64,
    /// CPU µs to decode (or conceal) one 20 ms frame, lost ones included.
    pub decode_us: f64,
}

/// Classic against deep PLC: the box's encoder (its complexity, with and without FEC)
/// through 5 % and 15 % random loss, decoded at complexity 0 and 5.
pub(crate) fn plc(clip: &Path, dir: &Path) -> Vec<PlcResult> {
    let reference = read_wav(clip);
    let pcm: Vec<i16> = reference.iter().map(|&s| s as i16).collect();
    let frames = frames(&pcm);
    let complexity = intercom::audio::codec::COMPLEXITY;
    let (clean, _) = encode(&frames, complexity, 0.0, 1);
    let (decoded, _) = decode_at(&clean, &vec![false; frames.len()], 0);
    let (lag, _) = align(&reference, &decoded);
    let mut results = Vec::new();
    for loss in [0.05, 0.15] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(25);
        let lost: Vec<bool> = (0..frames.len()).map(|_| rng.gen_bool(loss)).collect();
        for fec in [true, false] {
            let expected = if fec { loss as f32 } else { 0.0 };
            let (packets, _) = encode(&frames, complexity, expected, 1);
            for (decoder_complexity, pause_complexity) in [(0, 0), (5, 5), (5, 4)] {
                let (out, decode_us) =
                    decode_with(&packets, &lost, decoder_complexity, pause_complexity);
                let deg = retime(&reference, &out, lag);
                let r = PlcResult {
                    decoder_complexity,
                    pause_complexity,
                    fec,
                    loss,
                    pesq: pesq_wb(&reference, &deg, dir).unwrap_or_else(|e| panic!("{e}")),
                    decode_us,
                };
                eprintln!("  {r:?}");
                results.push(r);
            }
        }
    }
    results
}

/// Bytes a packet costs on the wire besides its payload: IPv4 (20), UDP (8), RTP (12)
/// and SRTP's authentication tag (10).
const WIRE_OVERHEAD: usize = 50;

/// The sender's wire rate with copies on (a lossy link), kbit/s: every packet copied,
/// against what it sends (quiet frames once).
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct CopiesResult {
    /// `speech` (the clip alone) or `conversation` (the clip, then as long listening
    /// to the other side, the room's noise at −60 dBFS as noise suppression leaves it,
    /// twice).
    pub talk: String,
    pub all_copied_kbit: f64,
    pub sent_kbit: f64,
}

/// Runs the clip, alone and as one side of a conversation, through a [`VoiceSender`]
/// with copies on, counting what goes on the wire.
pub(crate) fn copies(clip: &Path) -> Vec<CopiesResult> {
    let pcm: Vec<i16> = read_wav(clip).iter().map(|&s| s as i16).collect();
    let speech = frames(&pcm);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut conversation = Vec::new();
    for _ in 0..2 {
        conversation.extend_from_slice(&speech);
        conversation.extend(
            (0..speech.len()).map(|_| -> [i16; FRAME_SAMPLES] {
                std::array::from_fn(|_| rng.gen_range(-57..=57))
            }),
        );
    }
    [("speech", speech), ("conversation", conversation)]
        .into_iter()
        .map(|(talk, frames)| {
            let t = std::time::Instant::now();
            let mut sender = VoiceSender::new(0.05, t).unwrap();
            sender.tune(0.05, t).unwrap();
            let (mut originals, mut sent) = (0, 0);
            for f in &frames {
                for p in sender.frame(f).unwrap() {
                    let bytes = p.payload.len() + WIRE_OVERHEAD;
                    sent += bytes;
                    if !p.copy {
                        originals += bytes;
                    }
                }
            }
            let kbit = |bytes: usize| bytes as f64 * 8.0 / (frames.len() as f64 * 20.0);
            let r = CopiesResult {
                talk: talk.to_string(),
                all_copied_kbit: kbit(2 * originals),
                sent_kbit: kbit(sent),
            };
            eprintln!("  {r:?}");
            r
        })
        .collect()
}

/// The copies' wire rates as a markdown table.
pub(crate) fn copies_markdown(results: &[CopiesResult]) -> String {
    let mut s = String::from(
        "| with copies (5 % loss) | every packet twice, kbit/s | quiet frames once, kbit/s |\n|---|---|---|\n",
    );
    for r in results {
        s.push_str(&format!(
            "| {} | {:.1} | {:.1} |\n",
            r.talk, r.all_copied_kbit, r.sent_kbit
        ));
    }
    s
}

/// The concealment comparison as a markdown table.
pub(crate) fn plc_markdown(results: &[PlcResult]) -> String {
    let mut s = String::from(
        "| loss | sender FEC | PLC in speech | in pauses | PESQ-WB | decode µs/frame |\n|---|---|---|---|---|---|\n",
    );
    let kind = |complexity: i32| if complexity >= 5 { "deep" } else { "classic" };
    for r in results {
        s.push_str(&format!(
            "| {:.0} % | {} | {} | {} | {:.2} | {:.0} |\n",
            r.loss * 100.0,
            if r.fec { "yes" } else { "no" },
            kind(r.decoder_complexity),
            kind(r.pause_complexity),
            r.pesq,
            r.decode_us
        ));
    }
    s
}

/// The sweep as a markdown table.
pub(crate) fn markdown(results: &[CodecResult]) -> String {
    let mut s = String::from(
        "| complexity | PESQ-WB clean | PESQ-WB 15 % loss | encode µs/frame | with FEC | quiet | decode µs/frame | bytes/packet |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        s.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
            r.complexity,
            r.pesq_clean,
            r.pesq_loss15,
            r.encode_us,
            r.encode_fec_us,
            r.encode_quiet_us,
            r.decode_us,
            r.packet_bytes
        ));
    }
    s
}
