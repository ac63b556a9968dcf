//! When each incoming RTP packet reached the box, from the kernel's receive timestamp.
//!
//! The jitter buffer sizes its delay from packet arrival times. Once a call's sockets
//! are read on the audio tick (`src/call/pacing.rs`), "when the packet was read" is
//! always a tick, and a stream whose packets land near the tick would look 20 ms
//! jittery. The kernel
//! stamps every datagram as it arrives (`SO_TIMESTAMPNS`, which quinn-udp turns on); the
//! socket notes that stamp under the packet's SSRC and sequence number, read from the RTP
//! header that SRTP leaves in the clear, and the receiving side looks it up when the packet
//! comes out of the stack decrypted. A stamp is a time and two numbers the network already
//! shows, nothing of what was said.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::format::FRAME_TIME;

/// Stamps kept: a little over five seconds of 20 ms packets.
const SLOTS: usize = 256;
/// A stamp older than this (against the wall clock) is not trusted: the clock moved.
const MAX_AGE: Duration = Duration::from_secs(2);

/// Recent kernel arrival times of RTP packets, by SSRC and sequence number.
#[derive(Debug)]
pub struct ReceiveStamps {
    slots: Mutex<Vec<Option<Stamp>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ssrc: u32,
    seq: u16,
    at: Instant,
}

impl Default for ReceiveStamps {
    fn default() -> Self {
        ReceiveStamps {
            slots: Mutex::new(vec![None; SLOTS]),
        }
    }
}

/// The SSRC and sequence number of an SRTP packet (RFC 3550 header, RFC 7983 demux); `None`
/// for STUN, DTLS, RTCP and anything too short.
pub fn rtp_id(datagram: &[u8]) -> Option<(u32, u16)> {
    if datagram.len() < 12 || !(128..=191).contains(&datagram[0]) {
        return None;
    }
    // RTCP packet types 192–223 show as payload types 64–95 (RFC 5761).
    if (64..=95).contains(&(datagram[1] & 0x7f)) {
        return None;
    }
    let seq = u16::from_be_bytes([datagram[2], datagram[3]]);
    let ssrc = u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]);
    Some((ssrc, seq))
}

/// The wall clock and the monotonic clock at one moment. The wall clock is read between two
/// monotonic reads and the pair read closest together of a few tries is kept: a thread
/// preempted between the two reads would otherwise shift the stamp by the whole preemption.
fn clocks_now() -> Option<(Duration, Instant)> {
    /// Two reads this close are one moment for a 20 ms jitter buffer.
    const CLOSE: Duration = Duration::from_micros(50);
    let mut best: Option<(Duration, Instant, Duration)> = None;
    for _ in 0..4 {
        let before = Instant::now();
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
        let gap = before.elapsed();
        if best.is_none_or(|(_, _, g)| gap < g) {
            best = Some((wall, before + gap / 2, gap));
        }
        if gap <= CLOSE {
            break;
        }
    }
    best.map(|(wall, at, _)| (wall, at))
}

/// The kernel's wall-clock receive time as an [`Instant`], if it is recent.
pub fn kernel_time_to_instant(stamp: Duration) -> Option<Instant> {
    let (now_wall, now) = clocks_now()?;
    let age = now_wall.checked_sub(stamp)?;
    if age > MAX_AGE {
        return None;
    }
    now.checked_sub(age)
}

/// When a datagram read at `read_at` arrived: the kernel's stamp, but no earlier than one
/// tick before the read. Reading on the tick should not look like jitter; a box that
/// stalled (a slow redraw) should, so the jitter buffer holds enough to ride it out.
pub fn arrival_time(kernel: Option<Duration>, read_at: Instant) -> Instant {
    let Some(at) = kernel.and_then(kernel_time_to_instant) else {
        return read_at;
    };
    match read_at.checked_sub(FRAME_TIME) {
        Some(floor) => at.max(floor),
        None => at,
    }
}

impl ReceiveStamps {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<Stamp>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes every RTP packet in `segments` (one datagram, or several GRO-coalesced ones of
    /// `stride` bytes) as arrived `at`.
    pub fn record(&self, buf: &[u8], stride: usize, at: Instant) {
        let mut slots = self.lock();
        for segment in buf.chunks(stride.max(1)) {
            if let Some((ssrc, seq)) = rtp_id(segment) {
                let slot = &mut slots[usize::from(seq) % SLOTS];
                // The first arrival counts; a replayed copy does not move it.
                if !matches!(slot, Some(s) if s.ssrc == ssrc && s.seq == seq) {
                    *slot = Some(Stamp { ssrc, seq, at });
                }
            }
        }
    }

    /// When packet `seq` of `ssrc` arrived, if it was stamped; forgets the stamp.
    pub fn take(&self, ssrc: u32, seq: u16) -> Option<Instant> {
        let mut slots = self.lock();
        let slot = &mut slots[usize::from(seq) % SLOTS];
        match *slot {
            Some(s) if s.ssrc == ssrc && s.seq == seq => slot.take().map(|s| s.at),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rtp(seq: u16, ssrc: u32, pt: u8) -> Vec<u8> {
        let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xde, 0xad];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p
    }

    #[test]
    fn reads_rtp_and_skips_the_rest() {
        assert_eq!(
            rtp_id(&rtp(513, 0xdead_beef, 111)),
            Some((0xdead_beef, 513))
        );
        assert_eq!(rtp_id(&rtp(1, 2, 111 | 0x80)), Some((2, 1)), "marker bit");
        assert_eq!(rtp_id(&rtp(1, 2, 200)), None, "RTCP sender report");
        assert_eq!(rtp_id(&rtp(1, 2, 201)), None, "RTCP receiver report");
        let mut stun = rtp(1, 2, 1);
        stun[0] = 0x00;
        assert_eq!(rtp_id(&stun), None);
        let mut dtls = rtp(1, 2, 0xfe);
        dtls[0] = 22;
        assert_eq!(rtp_id(&dtls), None);
        assert_eq!(rtp_id(&rtp(1, 2, 111)[..11]), None, "too short");
    }

    #[test]
    fn a_stamp_is_found_once_and_only_for_its_packet() {
        let stamps = ReceiveStamps::default();
        let t0 = Instant::now();
        stamps.record(&rtp(7, 42, 111), 1500, t0);
        assert_eq!(stamps.take(43, 7), None, "other SSRC");
        assert_eq!(
            stamps.take(42, 7 + SLOTS as u16),
            None,
            "same slot, other packet"
        );
        // A later copy does not move the first arrival.
        stamps.record(&rtp(7, 42, 111), 1500, t0 + Duration::from_millis(5));
        assert_eq!(stamps.take(42, 7), Some(t0));
        assert_eq!(stamps.take(42, 7), None, "taken twice");
    }

    #[test]
    fn coalesced_datagrams_are_each_stamped() {
        let stamps = ReceiveStamps::default();
        let t0 = Instant::now();
        let mut buf = rtp(1, 9, 111);
        buf.extend(rtp(2, 9, 111));
        buf.extend(&rtp(3, 9, 111)[..12]);
        stamps.record(&buf, 14, t0);
        for seq in 1..=3 {
            assert_eq!(stamps.take(9, seq), Some(t0), "seq {seq}");
        }
    }

    #[test]
    fn kernel_stamps_become_instants_only_when_recent() {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let before = Instant::now();
        let at = kernel_time_to_instant(wall - Duration::from_millis(15)).unwrap();
        assert!(
            at <= before - Duration::from_millis(14),
            "{:?}",
            before - at
        );
        assert!(kernel_time_to_instant(wall - Duration::from_secs(60)).is_none());
        assert!(kernel_time_to_instant(wall + Duration::from_secs(60)).is_none());
    }

    #[test]
    fn arrival_is_the_kernel_stamp_within_one_tick_of_the_read() {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let read = Instant::now();
        // Waited 12 ms in the socket for the tick: the kernel's time counts.
        let at = arrival_time(Some(wall - Duration::from_millis(12)), read);
        let waited = read.saturating_duration_since(at);
        assert!(waited >= Duration::from_millis(11), "{waited:?}");
        // Waited 300 ms because the box stalled: one tick is all that is forgiven.
        let at = arrival_time(Some(wall - Duration::from_millis(300)), read);
        assert_eq!(at, read - FRAME_TIME);
        // No stamp: the read.
        assert_eq!(arrival_time(None, read), read);
    }

    proptest! {
        /// Whatever comes off the network, recording never panics.
        #[test]
        fn any_datagram_is_safe(buf in prop::collection::vec(any::<u8>(), 0..200), stride in 0usize..300) {
            let stamps = ReceiveStamps::default();
            stamps.record(&buf, stride, Instant::now());
            if let (Some((ssrc, seq)), true) = (rtp_id(&buf), stride >= buf.len()) {
                prop_assert!(stamps.take(ssrc, seq).is_some());
            }
        }
    }
}
