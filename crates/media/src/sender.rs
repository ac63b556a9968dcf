//! The sending side of the voice stream: Opus frames numbered as RTP packets, and, while
//! the link loses packets, a second copy of each packet sent a frame or two later.
//!
//! Opus's in-band FEC rebuilds a lost packet from its successor only, so it cannot help
//! when two packets in a row go (15 % random loss loses a pair every ~45 frames) nor with
//! bursts. The delayed copy can: the same packet (same sequence number, same bytes) goes
//! out again later. Any RTP receiver handles it: the first copy to arrive plays and the
//! other is an ordinary duplicate (SRTP's replay check drops it). The protocol is
//! unchanged; the price is twice the packets, so the voice bitrate is lowered while
//! copies are on, and they are on only while loss is measured (from 2 %, until none has
//! been seen for 30 s).
//!
//! The copy goes beside the next packet ([`COPY_DELAY_FRAMES`]: the receiver waits for it
//! no longer than for that packet's FEC) until losses are seen to come in bursts: in what
//! this box receives ([`LinkReport::burst`]), or in the other side's NACKs
//! ([`VoiceSender::missing_reported`]: it lost two copied packets in a row, both copies
//! of each). Then two frames later ([`BURST_COPY_DELAY_FRAMES`]: a burst of up to four
//! packets never takes both), for [`BURST_MEMORY`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::codec::{CodecError, VoiceEncoder, FEC_FLOOR_PERCENT};
use crate::format::{AudioFrame, FRAME_SAMPLES};

/// Frames between a packet and its copy on a link losing packets at random (20 ms): the
/// copy rides beside the next packet, so the receiver waits no longer for it than for
/// that packet's FEC (see docs/decisions/packet-copies.md).
pub const COPY_DELAY_FRAMES: usize = 1;
/// Frames between a packet and its copy once losses come in bursts (40 ms): bursts of up
/// to 4 packets never take both, at 20 ms more delay.
pub const BURST_COPY_DELAY_FRAMES: usize = 2;
/// How long a reported burst keeps the copies [`BURST_COPY_DELAY_FRAMES`] apart.
pub const BURST_MEMORY: Duration = Duration::from_secs(60);
/// Measured loss at which copies start.
pub const COPIES_ON_LOSS: f32 = 0.02;
/// Measured loss below which copies may stop (none, in practice)…
pub const COPIES_OFF_LOSS: f32 = 0.001;
/// …once it has stayed there this long. While copies are on, the receiver sees only
/// what both copies lost (SRTP's replay check drops a second copy before anyone can
/// count it): 5 % on the wire shows as about 0.25 %, 2 % as 0.04 %. So copies stop only
/// after a long calm: at 5 % that almost never happens, at 2 % it does about once a
/// minute, and the next loss turns them on again within a second or two.
pub const COPIES_OFF_AFTER: Duration = Duration::from_secs(30);
/// The voice bitrate while copies are on: two copies of 48 kbit/s take about 101 kbit/s
/// on the wire (speech with its pauses, headers included) instead of 60 for one at 64;
/// 44 kbit/s (97 on the wire) and 32 kbit/s scored worse under loss.
pub const COPY_BITRATE: i32 = 48_000;
/// How long in-band FEC stays on after the last measured loss. On a link that loses
/// nothing the encoder codes no FEC copy: that saves it its second quantiser pass (about
/// a fifth of its CPU) and gives the frame itself all the bits.
pub const FEC_OFF_AFTER: Duration = Duration::from_secs(10);
/// A call starts with FEC, as nothing is known of the link yet, and keeps it until this
/// long without loss (three of the once-a-second loss measurements): starting without
/// it cost the first losses of lossy calls, holding it longer cost clean calls the bits.
pub const FEC_AT_START: Duration = Duration::from_secs(3);

/// What the other side's feedback says about the link, for the sender.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkReport {
    /// The share of packets lost (0.0–1.0).
    pub loss: f32,
    /// Sequence numbers of ours it asked for a second time (RTCP NACK): packets it lost
    /// ([`VoiceSender::missing_reported`]).
    pub missing: Vec<u16>,
    /// What we receive lost packets in a burst lately (links mostly lose alike both
    /// ways, and this is seen from the call's first packets, before any copy is sent).
    pub burst: bool,
}

/// Packets remembered with whether they were copied (3 s).
const SENT_KEPT: usize = 150;
/// Two neighbouring packets reported missing within this long were lost in one burst.
const BURST_PAIR_WINDOW: Duration = Duration::from_secs(2);
/// Missing packets remembered for finding neighbours.
const MISSING_KEPT: usize = 64;

/// One RTP packet to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutPacket {
    /// RTP sequence number.
    pub seq: u16,
    /// RTP timestamp (48 kHz).
    pub timestamp: u32,
    /// The Opus packet.
    pub payload: bytes::Bytes,
    /// True for the delayed second copy.
    pub copy: bool,
}

/// Encoder, RTP numbering and the loss-driven copies.
pub struct VoiceSender {
    encoder: VoiceEncoder,
    seq: u16,
    timestamp: u32,
    copies: bool,
    /// Packets waiting for their copy to go out, oldest first (`None`: a quiet frame's,
    /// which gets no copy).
    pending: VecDeque<Option<OutPacket>>,
    /// Since when the measured loss has been low, while copies are on.
    calm_since: Option<Instant>,
    /// When loss was last measured.
    last_loss: Option<Instant>,
    /// When the call started.
    started: Instant,
    /// The latest packets sent and whether each was copied, oldest first.
    sent: VecDeque<(u16, bool)>,
    /// Copied packets the other side reported missing lately, and when.
    missing: VecDeque<(Instant, u16)>,
    /// When losses last came in a burst (seen in what we receive, or in the other
    /// side's NACKs).
    burst_at: Option<Instant>,
    /// Frames between a packet and its copy.
    copy_delay: usize,
}

impl VoiceSender {
    /// A sender starting at random RTP numbers (RFC 3550 §5.1), tuned for `loss`.
    pub fn new(loss: f32, now: Instant) -> Result<VoiceSender, CodecError> {
        let mut s = VoiceSender {
            encoder: VoiceEncoder::new(loss)?,
            seq: rand::random(),
            timestamp: rand::random(),
            copies: false,
            pending: VecDeque::new(),
            calm_since: None,
            last_loss: None,
            started: now,
            sent: VecDeque::with_capacity(SENT_KEPT),
            missing: VecDeque::new(),
            burst_at: None,
            copy_delay: COPY_DELAY_FRAMES,
        };
        s.tune(loss, now)?;
        Ok(s)
    }

    /// Re-tunes FEC and the copies from the measured loss (0.0–1.0).
    pub fn tune(&mut self, loss: f32, now: Instant) -> Result<(), CodecError> {
        if loss > 0.0 {
            self.last_loss = Some(now);
        }
        let copies = if loss >= COPIES_ON_LOSS {
            self.calm_since = None;
            true
        } else if self.copies && loss < COPIES_OFF_LOSS {
            let since = *self.calm_since.get_or_insert(now);
            now.saturating_duration_since(since) < COPIES_OFF_AFTER
        } else {
            self.calm_since = None;
            self.copies
        };
        if copies != self.copies {
            if copies {
                tracing::info!(
                    "link loses {:.1} %: sending each voice packet twice",
                    loss * 100.0
                );
            } else {
                tracing::info!("link calm again: one copy of each voice packet");
            }
            self.copies = copies;
            self.encoder.set_bitrate(if copies {
                COPY_BITRATE
            } else {
                super::codec::BITRATE
            })?;
            if !copies {
                self.pending.clear();
            }
        }
        // FEC follows the loss, and stays on while copies are (they hide most of it from
        // the count), a while after the last loss, and while the call is young.
        let recent = self
            .last_loss
            .is_some_and(|t| now.saturating_duration_since(t) < FEC_OFF_AFTER)
            || now.saturating_duration_since(self.started) < FEC_AT_START;
        let fec_loss = if loss > 0.0 {
            loss
        } else if self.copies || recent {
            FEC_FLOOR_PERCENT as f32 / 100.0
        } else {
            0.0
        };
        self.set_copy_delay(now);
        let fec_was = self.encoder.fec();
        self.encoder.tune(fec_loss)?;
        if self.encoder.fec() != fec_was {
            tracing::debug!(fec = self.encoder.fec(), "in-band FEC");
        }
        Ok(())
    }

    /// Re-tunes from what the other side's feedback and our own receiving say.
    pub fn link_report(&mut self, report: &LinkReport, now: Instant) -> Result<(), CodecError> {
        if report.burst {
            self.burst_at = Some(now);
        }
        self.missing_reported(&report.missing, now);
        self.tune(report.loss, now)
    }

    /// The other side lost these packets (it asked for them a second time). Two
    /// neighbours that were both copied mean a burst took both copies of each: the copies
    /// go further apart for [`BURST_MEMORY`]. A packet sent once (a quiet frame, or
    /// before copies were on) says nothing about bursts.
    pub fn missing_reported(&mut self, seqs: &[u16], now: Instant) {
        while self
            .missing
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > BURST_PAIR_WINDOW)
        {
            self.missing.pop_front();
        }
        let mut copied_missing = 0;
        for &seq in seqs {
            let copied = self.sent.iter().any(|(s, c)| *s == seq && *c);
            copied_missing += usize::from(copied);
            if !copied || self.missing.iter().any(|(_, s)| *s == seq) {
                continue;
            }
            let burst = self
                .missing
                .iter()
                .any(|(_, s)| *s == seq.wrapping_add(1) || *s == seq.wrapping_sub(1));
            if self.missing.len() == MISSING_KEPT {
                self.missing.pop_front();
            }
            self.missing.push_back((now, seq));
            if burst {
                self.burst_at = Some(now);
            }
        }
        if !seqs.is_empty() {
            tracing::debug!(
                missing = seqs.len(),
                copied = copied_missing,
                "packets the other side lost"
            );
        }
        self.set_copy_delay(now);
    }

    /// Frames between a packet and its copy now.
    pub fn copy_delay(&self) -> usize {
        self.copy_delay
    }

    fn set_copy_delay(&mut self, now: Instant) {
        let bursts = self
            .burst_at
            .is_some_and(|t| now.saturating_duration_since(t) < BURST_MEMORY);
        let delay = if bursts {
            BURST_COPY_DELAY_FRAMES
        } else {
            COPY_DELAY_FRAMES
        };
        if delay != self.copy_delay {
            tracing::info!(
                ms = delay * 20,
                bursts,
                "copies go {} ms after their packets",
                delay * 20
            );
            self.copy_delay = delay;
        }
    }

    /// True while each packet carries an FEC copy of the frame before it.
    pub fn fec(&self) -> bool {
        self.encoder.fec()
    }

    /// True while each packet is sent twice.
    pub fn copies(&self) -> bool {
        self.copies
    }

    /// Encodes one 20 ms frame; returns what to send now: its packet, and the copy of the
    /// packet [`COPY_DELAY_FRAMES`] back while copies are on. Quiet frames (between
    /// sentences, [`VoiceEncoder::quiet`]) get no copy: concealment and the next
    /// packet's FEC hide their loss (docs/decisions/packet-copies.md).
    pub fn frame(&mut self, frame: &AudioFrame) -> Result<Vec<OutPacket>, CodecError> {
        let payload = bytes::Bytes::from(self.encoder.encode(frame)?);
        let packet = OutPacket {
            seq: self.seq,
            timestamp: self.timestamp,
            payload,
            copy: false,
        };
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME_SAMPLES as u32);
        let mut out = vec![packet.clone()];
        let copied = self.copies && !self.encoder.quiet();
        if self.sent.len() == SENT_KEPT {
            self.sent.pop_front();
        }
        self.sent.push_back((packet.seq, copied));
        if self.copies {
            let quiet = self.encoder.quiet();
            self.pending.push_back((!quiet).then_some(OutPacket {
                copy: true,
                ..packet
            }));
            // When the gap narrows, the older copies all go now.
            while self.pending.len() > self.copy_delay {
                out.extend(self.pending.pop_front().flatten());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 220 Hz voice-like tone rising and falling four times a second, as syllables do
    /// (a steady tone is, to SILK's voice detector, background noise after a second); the
    /// bitrate check below is measured with this signal (a purer or louder one codes in
    /// fewer bits at 48 kbit/s).
    fn speech(k: usize) -> AudioFrame {
        let mut f = [0i16; FRAME_SAMPLES];
        for (i, s) in f.iter_mut().enumerate() {
            let t = (k * FRAME_SAMPLES + i) as f32 / 48_000.0;
            let syllables = 0.6 + 0.4 * (2.0 * std::f32::consts::PI * 4.0 * t).sin();
            *s = (6000.0 * syllables * (2.0 * std::f32::consts::PI * 220.0 * t).sin()) as i16;
        }
        f
    }

    #[test]
    fn numbers_packets_like_rtp() {
        let t = Instant::now();
        let mut s = VoiceSender::new(0.0, t).unwrap();
        let a = s.frame(&speech(0)).unwrap();
        let b = s.frame(&speech(1)).unwrap();
        assert_eq!((a.len(), b.len()), (1, 1));
        assert_eq!(b[0].seq, a[0].seq.wrapping_add(1));
        assert_eq!(b[0].timestamp, a[0].timestamp.wrapping_add(960));
        assert!(!a[0].copy && !s.copies());
    }

    #[test]
    fn loss_turns_copies_on_and_each_packet_goes_twice_a_frame_apart() {
        let t = Instant::now();
        let mut s = VoiceSender::new(0.0, t).unwrap();
        s.tune(0.05, t).unwrap();
        assert!(s.copies());
        let sent: Vec<Vec<OutPacket>> = (0..10).map(|k| s.frame(&speech(k)).unwrap()).collect();
        for (k, tick) in sent.iter().enumerate() {
            if k < COPY_DELAY_FRAMES {
                assert_eq!(tick.len(), 1, "tick {k}");
            } else {
                assert_eq!(tick.len(), 2, "tick {k}");
                let original = &sent[k - COPY_DELAY_FRAMES][0];
                assert!(tick[1].copy);
                assert_eq!(
                    (tick[1].seq, tick[1].timestamp, &tick[1].payload),
                    (original.seq, original.timestamp, &original.payload)
                );
            }
        }
    }

    #[test]
    fn reported_bursts_move_the_copies_two_frames_apart_for_a_while() {
        let t = Instant::now();
        let at = |s: u64| t + Duration::from_secs(s);
        let mut s = VoiceSender::new(0.0, t).unwrap();
        s.tune(0.1, t).unwrap();
        // Which packet each tick's copy repeats, as ticks back.
        let copies_back = |s: &mut VoiceSender, ticks: usize| -> Vec<u16> {
            let mut back = Vec::new();
            let mut newest = 0u16;
            for k in 0..ticks {
                for p in s.frame(&speech(k)).unwrap() {
                    if p.copy {
                        back.push(newest.wrapping_sub(p.seq));
                    } else {
                        newest = p.seq;
                    }
                }
            }
            back
        };
        assert_eq!(s.copy_delay(), COPY_DELAY_FRAMES);
        let first = s.frame(&speech(0)).unwrap()[0].seq;
        assert!(copies_back(&mut s, 10).iter().all(|b| *b == 1));
        // Lost packets, but no two neighbours: random loss, the gap stays.
        s.missing_reported(&[first, first.wrapping_add(2)], at(1));
        s.missing_reported(&[first.wrapping_add(5)], at(2));
        assert_eq!(s.copy_delay(), COPY_DELAY_FRAMES);
        // A neighbour of one reported before (the reports come once a second).
        s.missing_reported(&[first.wrapping_add(6)], at(3));
        assert_eq!(s.copy_delay(), BURST_COPY_DELAY_FRAMES);
        let wider = copies_back(&mut s, 10);
        // One tick waits for the wider gap, then every copy is two back.
        assert_eq!(wider.len(), 9, "{wider:?}");
        assert!(wider.iter().all(|b| *b == 2), "{wider:?}");
        // Loss reports go on; the burst is remembered…
        s.tune(0.1, at(30)).unwrap();
        s.missing_reported(&[], at(31));
        assert_eq!(s.copy_delay(), BURST_COPY_DELAY_FRAMES);
        // …until BURST_MEMORY has passed without another.
        s.tune(0.1, at(64)).unwrap();
        assert_eq!(s.copy_delay(), COPY_DELAY_FRAMES);
        // Narrowing sends the waiting copy at once: none is skipped.
        let narrower = copies_back(&mut s, 3);
        assert_eq!(narrower, vec![2, 1, 1, 1], "{narrower:?}");
    }

    #[test]
    fn neighbours_sent_once_are_not_a_burst() {
        let t = Instant::now();
        let mut s = VoiceSender::new(0.0, t).unwrap();
        // Sent before copies were on: losing two in a row says nothing of bursts.
        let seqs: Vec<u16> = (0..5)
            .map(|k| s.frame(&speech(k)).unwrap()[0].seq)
            .collect();
        s.tune(0.1, t).unwrap();
        s.missing_reported(&seqs[1..3], t);
        assert_eq!(s.copy_delay(), COPY_DELAY_FRAMES);
        // Nor do numbers it never sent (a confused or hostile peer).
        s.missing_reported(&[seqs[4].wrapping_add(1000), seqs[4].wrapping_add(1001)], t);
        assert_eq!(s.copy_delay(), COPY_DELAY_FRAMES);
    }

    #[test]
    fn quiet_between_sentences_goes_once_and_speech_twice() {
        use crate::effort::QUIET_AFTER_FRAMES;
        let t = Instant::now();
        let mut s = VoiceSender::new(0.0, t).unwrap();
        s.tune(0.05, t).unwrap();
        let silence = [0i16; FRAME_SAMPLES];
        let quiet = 3 * QUIET_AFTER_FRAMES as usize;
        let mut copied = Vec::new();
        for k in 0..quiet + 20 {
            let frame = if k < quiet { silence } else { speech(k) };
            for p in s.frame(&frame).unwrap() {
                if p.copy {
                    copied.push(k - COPY_DELAY_FRAMES);
                }
            }
        }
        // The quiet's first frames are copied (the encoder has not eased off yet)…
        assert!(copied.contains(&0));
        // …then none, until the first spoken frame, and every one after it is.
        let first_quiet_skipped = (0..quiet).find(|k| !copied.contains(k)).unwrap();
        assert!(first_quiet_skipped <= QUIET_AFTER_FRAMES as usize + 2);
        assert!((first_quiet_skipped..quiet).all(|k| !copied.contains(&k)));
        assert!((quiet..quiet + 20 - COPY_DELAY_FRAMES).all(|k| copied.contains(&k)));
    }

    #[test]
    fn copies_stop_only_after_a_long_calm() {
        let t = Instant::now();
        let at = |s: u64| t + Duration::from_secs(s);
        let mut s = VoiceSender::new(0.0, t).unwrap();
        s.tune(0.15, t).unwrap();
        // Copies hide most loss, so the measured loss drops; they stay on a while.
        s.tune(0.0, at(1)).unwrap();
        s.tune(0.0, at(20)).unwrap();
        assert!(s.copies());
        // What both copies lost (0.25 % at 5 % on the wire) restarts the wait.
        s.tune(0.0025, at(25)).unwrap();
        s.tune(0.0, at(26)).unwrap();
        s.tune(0.0, at(50)).unwrap();
        assert!(s.copies());
        s.tune(0.0, at(57)).unwrap();
        assert!(!s.copies());
        // Nothing pending goes out after they stop.
        assert_eq!(s.frame(&speech(0)).unwrap().len(), 1);
    }

    #[test]
    fn fec_only_while_the_link_loses() {
        let t = Instant::now();
        let at = |s: u64| t + Duration::from_secs(s);
        let mut s = VoiceSender::new(0.0, t).unwrap();
        assert!(
            s.fec(),
            "a call starts with FEC, knowing nothing of the link"
        );
        s.tune(0.0, at(2)).unwrap();
        assert!(s.fec());
        s.tune(0.0, at(3)).unwrap();
        assert!(!s.fec(), "off after its first 3 s without loss");
        // One lost packet in a second (under the copies' threshold) is enough.
        s.tune(0.01, at(11)).unwrap();
        assert!(s.fec() && !s.copies());
        s.tune(0.0, at(15)).unwrap();
        assert!(s.fec(), "FEC stays on a while after the loss");
        s.tune(0.0, at(21)).unwrap();
        assert!(!s.fec());
        // While copies are on, FEC stays on even when the count shows no loss.
        s.tune(0.05, at(22)).unwrap();
        s.tune(0.0, at(23)).unwrap();
        s.tune(0.0, at(40)).unwrap();
        assert!(s.copies() && s.fec());
        s.tune(0.0, at(53)).unwrap();
        assert!(!s.copies() && !s.fec());
    }

    #[test]
    fn copies_lower_the_voice_bitrate() {
        let t = Instant::now();
        // Both carry FEC: 1 % loss turns it on but not the copies.
        let mut plain = VoiceSender::new(0.01, t).unwrap();
        let mut copied = VoiceSender::new(0.0, t).unwrap();
        copied.tune(0.1, t).unwrap();
        assert!(plain.fec() && !plain.copies());
        let bytes = |s: &mut VoiceSender| -> usize {
            (0..100)
                .flat_map(|k| s.frame(&speech(k)).unwrap())
                .map(|p| p.payload.len())
                .sum()
        };
        let (one, two) = (bytes(&mut plain), bytes(&mut copied));
        // Two copies at 48 kbit/s: 1.5 times one at 64.
        assert!(
            two > one * 13 / 10 && two < one * 17 / 10,
            "{two} bytes with copies vs {one} without"
        );
    }
}
