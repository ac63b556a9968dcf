//! The loss the other box reports for our audio, read from its RTCP reception reports.
//!
//! `rtc` 0.21.1 never feeds received RTCP into its statistics (its
//! `process_read_rtcp_for_stats` has no caller), so `get_stats` always says our stream
//! loses nothing. [`ReportReader`] sits in the interceptor chain next to the wire and reads
//! the reception report blocks about our streams out of every receiver report and sender
//! report on the way in; it passes every packet on unchanged.
//!
//! It also reads the other side's NACKs for our audio. Our sender does not resend, but
//! a packet asked for a second time is one the other side truly lost (one only
//! overtaken by others comes before the second ask): the sender learns from those
//! whether losses come in bursts ([`RemoteLoss::take_missing`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// No report since the last [`RemoteLoss::take`].
const NONE: u32 = u32::MAX;
/// How long an ask is remembered for counting the asks again (a box asks for a packet
/// once two later ones came, then 80 ms apart, three times at most).
const ASK_MEMORY: Duration = Duration::from_secs(1);
/// Asks remembered (a box asks at most 64 at a time); also the most missing packets
/// kept until taken.
const ASKS_KEPT: usize = 64;

/// The worst fraction lost the other side reported since it was last taken, and the
/// packets it asked for a second time.
#[derive(Debug)]
pub(super) struct RemoteLoss {
    /// RTCP's fraction lost (0–255, in 256ths), or [`NONE`].
    worst: AtomicU32,
    /// Sequence numbers asked for twice since the last [`RemoteLoss::take_missing`].
    missing: Mutex<Vec<u16>>,
}

impl Default for RemoteLoss {
    fn default() -> Self {
        RemoteLoss {
            worst: AtomicU32::new(NONE),
            missing: Mutex::new(Vec::new()),
        }
    }
}

impl RemoteLoss {
    /// A shared, empty record.
    pub(super) fn new() -> Arc<RemoteLoss> {
        Arc::new(RemoteLoss::default())
    }

    /// The worst loss (0.0–1.0) reported since the last call; `None` when no report came.
    pub(super) fn take(&self) -> Option<f32> {
        match self.worst.swap(NONE, Ordering::Relaxed) {
            NONE => None,
            fraction => Some(fraction as f32 / 256.0),
        }
    }

    /// The packets of ours the other side asked for a second time since the last call.
    pub(super) fn take_missing(&self) -> Vec<u16> {
        std::mem::take(&mut *self.missing.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn note_missing(&self, seq: u16) {
        let mut missing = self.missing.lock().unwrap_or_else(|e| e.into_inner());
        if missing.len() < ASKS_KEPT {
            missing.push(seq);
        }
    }

    fn record(&self, fraction_lost: u8) {
        let new = u32::from(fraction_lost);
        let _ = self
            .worst
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                (old == NONE || new > old).then_some(new)
            });
    }
}

/// A packet of ours the other side asked for.
#[derive(Debug)]
struct Ask {
    /// When it was first asked for.
    at: Instant,
    seq: u16,
    /// How many times.
    times: u8,
}

/// An interceptor that notes what the other side reports about our streams.
pub(super) struct ReportReader {
    loss: Arc<RemoteLoss>,
    /// The SSRCs we send.
    ours: Vec<u32>,
    /// What the other side asked for lately.
    asks: VecDeque<Ask>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl ReportReader {
    /// A reader that records into `loss`.
    pub(super) fn new(loss: Arc<RemoteLoss>) -> ReportReader {
        ReportReader {
            loss,
            ours: Vec::new(),
            asks: VecDeque::new(),
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }

    fn note(&self, reports: &[ReceptionReport]) {
        for r in reports.iter().filter(|r| self.ours.contains(&r.ssrc)) {
            self.loss.record(r.fraction_lost);
        }
    }

    /// Notes what a NACK about our stream asks for; a packet asked for the second time
    /// is missing.
    fn note_nack(&mut self, nack: &TransportLayerNack, now: Instant) {
        if !self.ours.contains(&nack.media_ssrc) {
            return;
        }
        while self
            .asks
            .front()
            .is_some_and(|a| now.saturating_duration_since(a.at) > ASK_MEMORY)
        {
            self.asks.pop_front();
        }
        for seq in nack.nacks.iter().flat_map(|pair| pair.packet_list()) {
            match self.asks.iter_mut().find(|a| a.seq == seq) {
                Some(a) => {
                    a.times = a.times.saturating_add(1);
                    if a.times == 2 {
                        self.loss.note_missing(seq);
                    }
                }
                None => {
                    if self.asks.len() == ASKS_KEPT {
                        self.asks.pop_front();
                    }
                    self.asks.push_back(Ask {
                        at: now,
                        seq,
                        times: 1,
                    });
                }
            }
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for ReportReader {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                let any = p.as_any();
                if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                    self.note(&rr.reports);
                } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                    self.note(&sr.reports);
                } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                    let now = msg.now;
                    self.note_nack(nack, now);
                }
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for ReportReader {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if !self.ours.contains(&info.ssrc) {
            self.ours.push(info.ssrc);
        }
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.ours.retain(|s| *s != info.ssrc);
    }

    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}

    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::AttributedPacket;
    use rtc::shared::TransportContext;

    fn rtcp(packets: Vec<Box<dyn rtc::rtcp::Packet>>) -> TaggedPacket {
        TaggedPacket {
            now: Instant::now(),
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtcp(packets)),
        }
    }

    fn block(ssrc: u32, fraction_lost: u8) -> ReceptionReport {
        ReceptionReport {
            ssrc,
            fraction_lost,
            ..Default::default()
        }
    }

    fn reader(ssrc: u32) -> (ReportReader, Arc<RemoteLoss>) {
        let loss = RemoteLoss::new();
        let mut r = ReportReader::new(Arc::clone(&loss));
        r.bind_local_stream(&StreamInfo {
            ssrc,
            ..Default::default()
        });
        (r, loss)
    }

    #[test]
    fn reads_our_block_from_receiver_and_sender_reports_and_passes_them_on() {
        let (mut r, loss) = reader(7);
        assert_eq!(loss.take(), None, "nothing reported yet");
        r.handle_read(rtcp(vec![Box::new(ReceiverReport {
            ssrc: 1,
            reports: vec![block(9, 200), block(7, 13)],
            ..Default::default()
        })]))
        .unwrap();
        assert_eq!(
            loss.take(),
            Some(13.0 / 256.0),
            "only our stream's block counts"
        );
        assert_eq!(loss.take(), None, "taken once");
        // A peer that also sends reports in its sender reports.
        r.handle_read(rtcp(vec![Box::new(SenderReport {
            ssrc: 1,
            reports: vec![block(7, 64)],
            ..Default::default()
        })]))
        .unwrap();
        assert_eq!(loss.take(), Some(0.25));
        let passed: Vec<_> = std::iter::from_fn(|| r.poll_read()).collect();
        assert_eq!(passed.len(), 2, "both packets go on up the chain");
    }

    #[test]
    fn keeps_the_worst_report_until_taken_and_ignores_streams_no_longer_sent() {
        let (mut r, loss) = reader(7);
        for f in [10, 40, 5] {
            r.handle_read(rtcp(vec![Box::new(ReceiverReport {
                reports: vec![block(7, f)],
                ..Default::default()
            })]))
            .unwrap();
        }
        assert_eq!(loss.take(), Some(40.0 / 256.0));
        r.unbind_local_stream(&StreamInfo {
            ssrc: 7,
            ..Default::default()
        });
        r.handle_read(rtcp(vec![Box::new(ReceiverReport {
            reports: vec![block(7, 90)],
            ..Default::default()
        })]))
        .unwrap();
        assert_eq!(loss.take(), None);
    }

    fn nack(ssrc: u32, seqs: &[u16], now: Instant) -> TaggedPacket {
        use rtc::rtcp::transport_feedbacks::transport_layer_nack::nack_pairs_from_sequence_numbers;
        TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtcp(vec![Box::new(TransportLayerNack {
                sender_ssrc: 1,
                media_ssrc: ssrc,
                nacks: nack_pairs_from_sequence_numbers(seqs),
            })])),
        }
    }

    #[test]
    fn packets_asked_for_a_second_time_are_missing() {
        let (mut r, loss) = reader(7);
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        // Asked for three times: missing, once.
        for ms in [0, 80, 160] {
            r.handle_read(nack(7, &[100], at(ms))).unwrap();
        }
        // Asked for once (only overtaken, then it came): not missing.
        r.handle_read(nack(7, &[101], at(180))).unwrap();
        assert_eq!(loss.take_missing(), vec![100]);
        assert_eq!(loss.take_missing(), Vec::<u16>::new(), "taken once");
        // Two in one NACK, twice, across the wrap.
        r.handle_read(nack(7, &[65535, 0], at(300))).unwrap();
        r.handle_read(nack(7, &[65535, 0], at(380))).unwrap();
        assert_eq!(loss.take_missing(), vec![65535, 0]);
        // Asks too far apart are two first asks (a new packet with the same number).
        r.handle_read(nack(7, &[500], at(400))).unwrap();
        r.handle_read(nack(7, &[500], at(1500))).unwrap();
        assert!(loss.take_missing().is_empty());
        // Another stream's asks are not about ours.
        for ms in [1600, 1680] {
            r.handle_read(nack(9, &[600, 601], at(ms))).unwrap();
        }
        assert!(loss.take_missing().is_empty());
        assert_eq!(std::iter::from_fn(|| r.poll_read()).count(), 10);
    }

    #[test]
    fn rtp_and_writes_pass_untouched() {
        let (mut r, loss) = reader(7);
        let rtp = || TaggedPacket {
            now: Instant::now(),
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtp(rtc::rtp::Packet::default())),
        };
        r.handle_read(rtp()).unwrap();
        r.handle_write(rtp()).unwrap();
        assert!(r.poll_read().is_some() && r.poll_write().is_some());
        assert_eq!(loss.take(), None);
    }
}
