//! Opus voice coding: 48 kHz mono, 20 ms frames, in-band FEC, loss-driven tuning.
//!
//! Speech is coded wideband (up to 8 kHz audio, "HD voice") by the SILK-only encoder
//! ([`crate::silk`]): SILK is the mode with in-band FEC, and it spends every bit where
//! speech is. Wideband at 64 kbit/s scored higher than full band, clean and under loss
//! (docs/decisions/silk-only-encoder.md).

use crate::effort::{energy, EncoderEffort};
use crate::format::{AudioFrame, FRAME_SAMPLES, SAMPLE_RATE};
use crate::silk::{OpusDecoder, SilkEncoder};

/// Largest Opus packet we produce or accept.
pub const MAX_PACKET: usize = 1500;
/// Samples of the longest Opus packet (120 ms at 48 kHz).
pub const MAX_DECODED: usize = 5760;

/// Opus could not be set up or failed on a packet.
#[derive(Debug, thiserror::Error)]
#[error("Opus failed")]
pub struct CodecError(#[source] Box<dyn std::error::Error + Send + Sync>);

fn err(e: impl std::error::Error + Send + Sync + 'static) -> CodecError {
    CodecError(Box::new(e))
}

/// The voice bitrate. It does not rise with loss, because loss is also what a full link
/// looks like, and sending more into it makes it worse; loss is answered with
/// a stronger FEC copy and, from 2 %, delayed packet copies at a lower rate
/// ([`crate::sender`]). With RTP/SRTP/UDP/IP overhead the stream takes about
/// 84 kbit/s.
pub const BITRATE: i32 = 64_000;

/// Encoder complexity (0–10) for voice; quiet frames get less ([`crate::effort`]).
/// The encoder is most of a call's CPU; 6 codes as well as 9 for a sixth less of it
/// (SILK keeps three delayed-decision states instead of four, and searches fewer NLSF
/// candidates). `cargo bench --bench network -- --codec` measures each complexity.
pub const COMPLEXITY: i32 = 6;

/// The least expected loss, in percent, the FEC copy is sized for while it is on.
pub const FEC_FLOOR_PERCENT: i32 = 5;

/// The sending side.
pub struct VoiceEncoder {
    enc: SilkEncoder,
    loss_percent: i32,
    effort: EncoderEffort,
    /// The complexity the encoder is set to now.
    complexity: i32,
    /// The last frame came in a run of quiet and its packet says no voice.
    quiet: bool,
    out: Box<[u8; MAX_PACKET]>,
}

impl VoiceEncoder {
    /// SILK only, wideband, in-band FEC tuned for `expected_loss` (0.0–1.0; none: no FEC).
    pub fn new(expected_loss: f32) -> Result<VoiceEncoder, CodecError> {
        Self::with_complexity(expected_loss, COMPLEXITY)
    }

    /// As [`VoiceEncoder::new`] with another encoder complexity (0–10); the codec
    /// benchmark compares them.
    pub fn with_complexity(
        expected_loss: f32,
        complexity: i32,
    ) -> Result<VoiceEncoder, CodecError> {
        let mut enc = SilkEncoder::new(SAMPLE_RATE).map_err(err)?;
        enc.set_inband_fec(true).map_err(err)?;
        enc.set_complexity(complexity).map_err(err)?;
        enc.set_bitrate(BITRATE).map_err(err)?;
        enc.set_max_bandwidth_wideband().map_err(err)?;
        let mut e = VoiceEncoder {
            enc,
            loss_percent: -1,
            effort: EncoderEffort::new(complexity),
            complexity,
            quiet: false,
            out: Box::new([0; MAX_PACKET]),
        };
        e.tune(expected_loss)?;
        Ok(e)
    }

    /// Sets the expected loss (the FEC copy's strength) from the measured loss. No loss
    /// turns the FEC copy off: libopus then codes no LBRR data, which saves the encoder
    /// its second quantiser pass and gives the frame itself all the bits.
    pub fn tune(&mut self, loss: f32) -> Result<(), CodecError> {
        let percent = if loss > 0.0 {
            // Below a few percent libopus sizes the copy too coarse to help; keep a floor.
            ((loss * 100.0).round() as i32).clamp(FEC_FLOOR_PERCENT, 50)
        } else {
            0
        };
        if percent != self.loss_percent {
            self.enc.set_packet_loss_perc(percent).map_err(err)?;
            self.loss_percent = percent;
        }
        Ok(())
    }

    /// Sets the bitrate, bits per second.
    pub fn set_bitrate(&mut self, bits: i32) -> Result<(), CodecError> {
        self.enc.set_bitrate(bits).map_err(err)
    }

    /// The expected loss the encoder is tuned for, in percent.
    pub fn loss_percent(&self) -> i32 {
        self.loss_percent
    }

    /// True while each packet carries an FEC copy of the frame before it.
    pub fn fec(&self) -> bool {
        self.loss_percent > 0
    }

    /// The complexity the last frame was coded at ([`crate::effort`]).
    pub fn complexity(&self) -> i32 {
        self.complexity
    }

    /// True if the last frame was quiet: inside a run of quiet frames (the encoder eased
    /// off for it) and its own packet says no voice. Losing it costs nothing audible.
    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// Encodes one 20 ms frame, voice at full complexity and quiet at less.
    pub fn encode(&mut self, frame: &AudioFrame) -> Result<Vec<u8>, CodecError> {
        let energy = energy(frame);
        let complexity = self.effort.complexity(energy);
        let easing = self.effort.easing();
        if complexity != self.complexity {
            self.enc.set_complexity(complexity).map_err(err)?;
            self.complexity = complexity;
        }
        let n = self.enc.encode(frame, &mut self.out[..]).map_err(err)?;
        let packet = self.out[..n].to_vec();
        let voice = voice_activity(&packet);
        self.quiet = easing && voice == Some(false);
        self.effort.coded(voice, energy);
        Ok(packet)
    }
}

/// The TOC and the first byte after it of a SILK-only Opus packet with one frame, whose
/// header flags are range-coded bits of probability ½ and so the top bits of that byte;
/// `None` for other packets.
fn silk_header(packet: &[u8]) -> Option<(u8, u8)> {
    let (&toc, rest) = packet.split_first()?;
    let silk_only = toc >> 3 <= 11;
    let one_frame = toc & 0b11 == 0;
    let &first = rest.first()?;
    (silk_only && one_frame).then_some((toc, first))
}

/// The voice activity flag of a SILK-only Opus packet with one frame (RFC 6716 §4.2.3:
/// a SILK frame starts with its VAD flag, the top bit of the first byte after the TOC);
/// `None` for other packets.
pub fn voice_activity(packet: &[u8]) -> Option<bool> {
    silk_header(packet).map(|(_, first)| first & 0x80 != 0)
}

/// Whether a SILK-only mono Opus packet with one frame carries a FEC copy (LBRR) of the
/// frame before it (RFC 6716 §4.2.4: the LBRR flag follows the VAD flag, so it is the
/// first byte's second bit); `None` for other packets.
pub fn carries_fec(packet: &[u8]) -> Option<bool> {
    let (toc, first) = silk_header(packet)?;
    let mono = toc & 0b100 == 0;
    mono.then_some(first & 0x40 != 0)
}

/// Decoder complexity: 5 turns on libopus's neural PLC (deep PLC) for lost frames.
pub const DECODER_COMPLEXITY: i32 = 5;
/// Decoder complexity for a loss in a pause (the last packet said no voice): classic
/// PLC. Deep PLC's analysis and synthesis cost about a millisecond per lost frame, and
/// in a pause they would only make room noise; quiet frames carry no FEC and get no copy,
/// so most losses a listening box conceals are these.
pub const QUIET_DECODER_COMPLEXITY: i32 = 4;

/// The receiving side: decodes any Opus stream (mono or stereo) to mono.
pub struct VoiceDecoder {
    dec: OpusDecoder,
    buf: Vec<i16>,
    /// The complexity for losses in speech ([`DECODER_COMPLEXITY`] unless asked
    /// otherwise).
    complexity: i32,
    /// The complexity for losses in pauses.
    pause_complexity: i32,
    /// Whether the last packet decoded may hold voice (SILK's VAD flag; any other packet
    /// counts as voice).
    voiced: bool,
}

impl VoiceDecoder {
    /// A decoder for 48 kHz mono output, concealing speech with deep PLC and pauses with
    /// classic PLC.
    pub fn new() -> Result<VoiceDecoder, CodecError> {
        Self::with_complexity(DECODER_COMPLEXITY)
    }

    /// As [`VoiceDecoder::new`] at another complexity (0–10; below 5, classic PLC): the
    /// codec benchmark compares them. Pauses are concealed at no more than
    /// [`QUIET_DECODER_COMPLEXITY`].
    pub fn with_complexity(complexity: i32) -> Result<VoiceDecoder, CodecError> {
        Self::with_complexities(complexity, complexity.min(QUIET_DECODER_COMPLEXITY))
    }

    /// A decoder concealing losses in speech at complexity `speech` and in pauses at
    /// `pause` (the codec benchmark's comparison).
    pub fn with_complexities(speech: i32, pause: i32) -> Result<VoiceDecoder, CodecError> {
        let mut dec = OpusDecoder::new(SAMPLE_RATE).map_err(err)?;
        dec.set_complexity(speech).map_err(err)?;
        Ok(VoiceDecoder {
            dec,
            buf: vec![0; MAX_DECODED],
            complexity: speech,
            pause_complexity: pause,
            voiced: true,
        })
    }

    /// The complexity the decoder conceals the next loss at.
    pub fn concealing_complexity(&self) -> i32 {
        if self.voiced {
            self.complexity
        } else {
            self.pause_complexity
        }
    }

    /// Sets the decoder for concealing a loss after the last packet decoded (a plain
    /// field store in libopus; good frames decode alike at either complexity).
    fn before_loss(&mut self) -> Result<(), CodecError> {
        self.dec
            .set_complexity(self.concealing_complexity())
            .map_err(err)
    }

    /// Decodes a packet.
    pub fn decode(&mut self, packet: &[u8]) -> Result<&[i16], CodecError> {
        let n = self.dec.decode(packet, &mut self.buf, false).map_err(err)?;
        self.voiced = voice_activity(packet).unwrap_or(true);
        Ok(&self.buf[..n])
    }

    /// Rebuilds the lost packet before `next` from `next`'s in-band FEC (or conceals,
    /// when `next` carries none); `samples` is the lost packet's length.
    pub fn recover(&mut self, next: &[u8], samples: usize) -> Result<&[i16], CodecError> {
        let samples = samples.clamp(120, MAX_DECODED);
        self.before_loss()?;
        let n = self
            .dec
            .decode(next, &mut self.buf[..samples], true)
            .map_err(err)?;
        Ok(&self.buf[..n])
    }

    /// Packet loss concealment for `samples` samples.
    pub fn conceal(&mut self, samples: usize) -> Result<&[i16], CodecError> {
        let samples = samples.clamp(120, MAX_DECODED);
        self.before_loss()?;
        let n = self
            .dec
            .decode(&[], &mut self.buf[..samples], false)
            .map_err(err)?;
        Ok(&self.buf[..n])
    }
}

/// Samples in an Opus packet at 48 kHz, or one frame when the packet is unreadable.
pub fn packet_samples(packet: &[u8]) -> usize {
    opus::packet::get_nb_samples(packet, SAMPLE_RATE).unwrap_or(FRAME_SAMPLES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone_frame;

    fn energy(s: &[i16]) -> f64 {
        s.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / s.len() as f64
    }

    #[test]
    fn encode_decode_round_trip_keeps_the_signal() {
        let mut enc = VoiceEncoder::new(0.0).unwrap();
        let mut dec = VoiceDecoder::new().unwrap();
        let mut out = Vec::new();
        for k in 0..20 {
            let p = enc.encode(&tone_frame(k)).unwrap();
            assert!(p.len() < 200, "{} bytes for 20 ms at 32 kbit/s", p.len());
            assert_eq!(packet_samples(&p), FRAME_SAMPLES);
            out.extend_from_slice(dec.decode(&p).unwrap());
        }
        assert_eq!(out.len(), 20 * FRAME_SAMPLES);
        // Past the codec's start-up, the tone is back at about its energy.
        let e_in = energy(&tone_frame(0));
        let e_out = energy(&out[10 * FRAME_SAMPLES..]);
        assert!((e_out / e_in - 1.0).abs() < 0.3, "{e_out} vs {e_in}");
    }

    #[test]
    fn voice_activity_reads_silk_vad_flag() {
        let mut enc = VoiceEncoder::new(0.0).unwrap();
        let flags: Vec<Option<bool>> = (0..40)
            .map(|k| {
                let frame = if k < 20 {
                    tone_frame(k)
                } else {
                    [0; FRAME_SAMPLES]
                };
                voice_activity(&enc.encode(&frame).unwrap())
            })
            .collect();
        assert!(flags[5..20].iter().all(|f| *f == Some(true)), "{flags:?}");
        // SILK's detector holds on a little after the voice stops.
        assert!(flags[30..].iter().all(|f| *f == Some(false)), "{flags:?}");
        // Not SILK-only, or not one frame: unknown.
        assert_eq!(voice_activity(&[0xFC, 0xFF, 0x00]), None, "CELT");
        assert_eq!(voice_activity(&[0x09, 0xFF]), None, "two frames");
        assert_eq!(voice_activity(&[0x08]), None, "no payload");
        assert_eq!(voice_activity(&[]), None);
        assert_eq!(voice_activity(&[0x08, 0x80]), Some(true));
        assert_eq!(voice_activity(&[0x48, 0x7F]), Some(false));
    }

    #[test]
    fn losses_in_pauses_are_concealed_classically_and_in_speech_with_deep_plc() {
        let mut enc = VoiceEncoder::new(0.1).unwrap();
        let mut dec = VoiceDecoder::new().unwrap();
        let speak = |enc: &mut VoiceEncoder, dec: &mut VoiceDecoder| {
            for k in 0..20 {
                dec.decode(&enc.encode(&tone_frame(k)).unwrap()).unwrap();
            }
        };
        speak(&mut enc, &mut dec);
        assert_eq!(dec.concealing_complexity(), DECODER_COMPLEXITY, "in speech");
        let in_speech = energy(dec.conceal(FRAME_SAMPLES).unwrap()) / energy(&tone_frame(0));
        assert!(in_speech > 0.1, "{in_speech}");
        for _ in 0..20 {
            dec.decode(&enc.encode(&[0; FRAME_SAMPLES]).unwrap())
                .unwrap();
        }
        assert_eq!(
            dec.concealing_complexity(),
            QUIET_DECODER_COMPLEXITY,
            "in a pause"
        );
        // A pause's loss (concealed, or "recovered" from a successor without FEC) stays
        // as quiet as the pause.
        let quiet = enc.encode(&[0; FRAME_SAMPLES]).unwrap();
        for rebuilt in [
            dec.conceal(FRAME_SAMPLES).unwrap().to_vec(),
            dec.recover(&quiet, FRAME_SAMPLES).unwrap().to_vec(),
        ] {
            assert_eq!(rebuilt.len(), FRAME_SAMPLES);
            assert!(energy(&rebuilt) < 100.0, "{}", energy(&rebuilt));
        }
        // Speech again: deep PLC again, and what it makes sounds like the speech.
        speak(&mut enc, &mut dec);
        assert_eq!(dec.concealing_complexity(), DECODER_COMPLEXITY);
        let concealed = dec.conceal(FRAME_SAMPLES).unwrap();
        let ratio = energy(concealed) / energy(&tone_frame(0));
        assert!(ratio > 0.1, "{ratio}");
    }

    #[test]
    fn quiet_is_coded_with_less_effort_and_voice_in_full() {
        use crate::effort::{QUIET_AFTER_FRAMES, QUIET_COMPLEXITY};
        let mut enc = VoiceEncoder::new(0.0).unwrap();
        let mut dec = VoiceDecoder::new().unwrap();
        for k in 0..10 {
            dec.decode(&enc.encode(&tone_frame(k)).unwrap()).unwrap();
            assert_eq!(enc.complexity(), COMPLEXITY);
        }
        // SILK's detector holds on a few frames, then the run of quiet starts.
        let mut quiet_at = None;
        for k in 10..60 {
            dec.decode(&enc.encode(&[0; FRAME_SAMPLES]).unwrap())
                .unwrap();
            if enc.complexity() == QUIET_COMPLEXITY {
                quiet_at.get_or_insert(k);
            }
        }
        let quiet_at = quiet_at.expect("eased off in silence");
        assert!(quiet_at >= 10 + QUIET_AFTER_FRAMES as usize, "{quiet_at}");
        // The tone's first frame back is coded in full, and after the switch the decoder
        // plays the tone at its energy again.
        let mut out = Vec::new();
        for k in 60..80 {
            out.extend_from_slice(dec.decode(&enc.encode(&tone_frame(k)).unwrap()).unwrap());
            assert_eq!(enc.complexity(), COMPLEXITY, "frame {k}");
        }
        let (e_in, e_out) = (energy(&tone_frame(0)), energy(&out[5 * FRAME_SAMPLES..]));
        assert!((e_out / e_in - 1.0).abs() < 0.3, "{e_out} vs {e_in}");
    }

    /// A voice-like signal whose pitch and loudness change at frame 20.
    fn changing(k: usize) -> AudioFrame {
        let (freq, amp) = if k < 20 {
            (220.0, 6000.0)
        } else {
            (330.0, 12000.0)
        };
        let mut f = [0i16; FRAME_SAMPLES];
        for (i, s) in f.iter_mut().enumerate() {
            let t = (k * FRAME_SAMPLES + i) as f32 / SAMPLE_RATE as f32;
            let v = (2.0 * std::f32::consts::PI * freq * t).sin()
                + 0.5 * (2.0 * std::f32::consts::PI * 2.0 * freq * t).sin();
            *s = (amp * v / 1.5) as i16;
        }
        f
    }

    #[test]
    fn fec_recovers_a_lost_frame_better_than_concealment() {
        let mut enc = VoiceEncoder::new(0.2).unwrap();
        let packets: Vec<Vec<u8>> = (0..30).map(|k| enc.encode(&changing(k)).unwrap()).collect();
        let lost = 20;
        let mut clean = VoiceDecoder::new().unwrap();
        let mut via_fec = VoiceDecoder::new().unwrap();
        let mut via_plc = VoiceDecoder::new().unwrap();
        for p in &packets[..lost] {
            clean.decode(p).unwrap();
            via_fec.decode(p).unwrap();
            via_plc.decode(p).unwrap();
        }
        let reference = clean.decode(&packets[lost]).unwrap().to_vec();
        let fec = via_fec
            .recover(&packets[lost + 1], FRAME_SAMPLES)
            .unwrap()
            .to_vec();
        let plc = via_plc.conceal(FRAME_SAMPLES).unwrap().to_vec();
        assert_eq!((fec.len(), plc.len()), (FRAME_SAMPLES, FRAME_SAMPLES));
        let mse = |x: &[i16]| {
            x.iter()
                .zip(reference.iter())
                .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
                .sum::<f64>()
                / x.len() as f64
        };
        let (e_fec, e_plc) = (mse(&fec), mse(&plc));
        assert!(
            e_fec < 0.5 * e_plc,
            "FEC error {e_fec:.0} vs concealment {e_plc:.0}"
        );
    }

    #[test]
    fn tuning_follows_loss() {
        let mut enc = VoiceEncoder::new(0.0).unwrap();
        assert_eq!((enc.loss_percent(), enc.fec()), (0, false));
        enc.tune(0.004).unwrap();
        assert_eq!((enc.loss_percent(), enc.fec()), (FEC_FLOOR_PERCENT, true));
        enc.tune(0.15).unwrap();
        assert_eq!(enc.loss_percent(), 15);
        enc.tune(0.0).unwrap();
        assert!(!enc.fec());
    }

    /// Packets coded without expected loss carry no FEC: recovering a lost frame from
    /// the next packet is then plain concealment.
    #[test]
    fn carries_fec_reads_silk_lbrr_flag() {
        let flags = |loss: f32| -> Vec<Option<bool>> {
            let mut enc = VoiceEncoder::new(loss).unwrap();
            (0..30)
                .map(|k| carries_fec(&enc.encode(&changing(k)).unwrap()))
                .collect()
        };
        // With FEC on, nearly every packet of speech after the first carries its
        // predecessor's (SILK leaves it out where the signal jumps).
        let on = flags(0.1);
        let with = on.iter().filter(|f| **f == Some(true)).count();
        assert!(with >= 26 && on.iter().all(Option::is_some), "{on:?}");
        let off = flags(0.0);
        assert!(off.iter().all(|f| *f == Some(false)), "{off:?}");
        assert_eq!(carries_fec(&[0x08, 0x40]), Some(true));
        assert_eq!(carries_fec(&[0x08, 0x80]), Some(false));
        assert_eq!(carries_fec(&[0x0C, 0xC0]), None, "stereo");
        assert_eq!(carries_fec(&[0xFC, 0xFF, 0x00]), None, "CELT");
        assert_eq!(carries_fec(&[0x08]), None);
    }

    #[test]
    fn no_expected_loss_codes_no_fec() {
        let recovery_is_concealment = |loss: f32| {
            let mut enc = VoiceEncoder::new(loss).unwrap();
            let packets: Vec<Vec<u8>> =
                (0..30).map(|k| enc.encode(&changing(k)).unwrap()).collect();
            let (mut fec, mut plc) = (VoiceDecoder::new().unwrap(), VoiceDecoder::new().unwrap());
            for p in &packets[..20] {
                fec.decode(p).unwrap();
                plc.decode(p).unwrap();
            }
            // Packet 20 is lost; packet 21 would carry its copy.
            let rebuilt = fec.recover(&packets[21], FRAME_SAMPLES).unwrap().to_vec();
            rebuilt == plc.conceal(FRAME_SAMPLES).unwrap()
        };
        assert!(recovery_is_concealment(0.0), "no FEC: recovery conceals");
        assert!(
            !recovery_is_concealment(0.1),
            "FEC on: recovery uses the copy"
        );
    }

    #[test]
    fn garbage_packets_are_errors_not_panics() {
        let mut dec = VoiceDecoder::new().unwrap();
        for junk in [&[0xffu8; 3][..], &[0x0b, 0xff, 0xff, 0xff][..], &[]] {
            let _ = dec.decode(junk);
        }
    }
}
