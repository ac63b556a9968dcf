//! The loss the other box reports for our audio, read from its RTCP reception reports.
//!
//! `rtc` 0.21.1 never feeds received RTCP into its statistics (its
//! `process_read_rtcp_for_stats` has no caller), so `get_stats` always says our stream
//! loses nothing. [`ReportReader`] sits in the interceptor chain next to the wire and reads
//! the reception report blocks about our streams out of every receiver report and sender
//! report on the way in; it passes every packet on unchanged.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// No report since the last [`RemoteLoss::take`].
const NONE: u32 = u32::MAX;

/// The worst fraction lost the other side reported since it was last taken.
#[derive(Debug)]
pub(super) struct RemoteLoss {
    /// RTCP's fraction lost (0–255, in 256ths), or [`NONE`].
    worst: AtomicU32,
}

impl Default for RemoteLoss {
    fn default() -> Self {
        RemoteLoss {
            worst: AtomicU32::new(NONE),
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

    fn record(&self, fraction_lost: u8) {
        let new = u32::from(fraction_lost);
        let _ = self
            .worst
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                (old == NONE || new > old).then_some(new)
            });
    }
}

/// An interceptor that notes what the other side reports about our streams.
pub(super) struct ReportReader {
    loss: Arc<RemoteLoss>,
    /// The SSRCs we send.
    ours: Vec<u32>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl ReportReader {
    /// A reader that records into `loss`.
    pub(super) fn new(loss: Arc<RemoteLoss>) -> ReportReader {
        ReportReader {
            loss,
            ours: Vec::new(),
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }

    fn note(&self, reports: &[ReceptionReport]) {
        for r in reports.iter().filter(|r| self.ours.contains(&r.ssrc)) {
            self.loss.record(r.fraction_lost);
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
