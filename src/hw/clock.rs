//! The box's audio clock: 20 ms frame boundaries shared by capture and playback.
//!
//! Capture and playback tick on the same boundaries, as one sound card's two directions
//! do, so the box wakes once per frame for both instead of twice.

use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::{sleep_until, Instant, Sleep};

use super::FRAME_TIME;

/// The first frame boundary at or after `at`. The boundaries are 20 ms apart from the
/// first time any part of the box asked.
pub fn frame_boundary(at: Instant) -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| at);
    let frame = FRAME_TIME.as_nanos();
    let since = at.saturating_duration_since(epoch).as_nanos();
    let frames = since.div_ceil(frame);
    epoch + Duration::from_nanos((frames * frame) as u64)
}

/// How far behind its schedule a clock may fall before it starts again from now.
const RESTART_AFTER: Duration = Duration::from_millis(100);

/// Ticks once per frame boundary.
///
/// It keeps the tick after the coming one registered with tokio's timer as well. Tokio
/// wakes its own event loop (an eventfd write and one more turn of the loop) whenever a
/// timer is set earlier than every timer already pending, and right after a tick fires
/// the next tick would be exactly that, twice per frame, capture and playback. With the
/// following tick always pending, a new one never is the earliest.
pub struct FrameClock {
    due: Pin<Box<Sleep>>,
    after: Pin<Box<Sleep>>,
}

impl FrameClock {
    /// A clock whose first tick is the first frame boundary from now.
    pub fn new() -> FrameClock {
        let first = frame_boundary(Instant::now());
        let mut clock = FrameClock {
            due: Box::pin(sleep_until(first)),
            after: Box::pin(sleep_until(first + FRAME_TIME)),
        };
        clock.start_at(first);
        clock
    }

    fn start_at(&mut self, first: Instant) {
        // `reset` registers a timer at once; a new `Sleep` waits for its first poll.
        self.due.as_mut().reset(first);
        self.after.as_mut().reset(first + FRAME_TIME);
    }

    /// Waits for the next frame boundary and returns it. A clock nobody waited on for a
    /// while (between calls) carries on from now, as a sound card would, instead of
    /// rushing out the ticks it missed.
    pub async fn tick(&mut self) -> Instant {
        let now = Instant::now();
        if now.saturating_duration_since(self.due.deadline()) > RESTART_AFTER {
            self.start_at(frame_boundary(now));
        }
        self.due.as_mut().await;
        let at = self.due.deadline();
        std::mem::swap(&mut self.due, &mut self.after);
        self.after.as_mut().reset(at + 2 * FRAME_TIME);
        at
    }
}

impl Default for FrameClock {
    fn default() -> Self {
        FrameClock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ticks_every_frame_on_the_shared_boundaries() {
        let mut a = FrameClock::new();
        let first = a.tick().await;
        assert_eq!(first, frame_boundary(first));
        for k in 1..=5 {
            assert_eq!(a.tick().await, first + FRAME_TIME * k);
        }
        // A second clock started mid-frame ticks on the same boundaries.
        tokio::time::sleep(Duration::from_millis(7)).await;
        let mut b = FrameClock::new();
        assert_eq!(b.tick().await, first + FRAME_TIME * 6);
        assert_eq!(a.tick().await, first + FRAME_TIME * 6);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_reader_gets_one_tick_then_carries_on_from_now() {
        let mut c = FrameClock::new();
        let first = c.tick().await;
        // Slightly late: the missed tick comes at once, then the schedule holds.
        tokio::time::sleep(FRAME_TIME * 2).await;
        assert_eq!(c.tick().await, first + FRAME_TIME);
        assert_eq!(c.tick().await, first + FRAME_TIME * 2);
        assert_eq!(c.tick().await, first + FRAME_TIME * 3);
        // Long unread (between calls): no burst of old ticks.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let resumed = c.tick().await;
        assert!(resumed >= Instant::now() - FRAME_TIME, "{resumed:?}");
        assert_eq!(c.tick().await, resumed + FRAME_TIME);
    }
}
