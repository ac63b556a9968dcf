//! The box's audio clock: 20 ms frame boundaries shared by capture and playback.
//!
//! Capture and playback tick on the same boundaries, as one sound card's two directions
//! do, so the box wakes once per frame for both instead of twice.
//!
//! The ticks come from a kernel timer (`timerfd`), as a sound card's come from its
//! period interrupt, not from tokio's timer wheel: the wheel keeps timers more than
//! 64 ms ahead in a coarser level and wakes the loop at each 64 ms boundary to move them
//! down, and a 20 ms tick is across such a boundary a third of the time, so about 12
//! of a call's 120 wake-ups a second were the wheel's own. It runs in real time only
//! (tokio's paused test clock does not move it).

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::OnceLock;
use std::time::Duration;

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Instant;

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

/// A `timerfd`, as tokio's readiness wants it.
struct Timer(TimerFd);

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Ticks once per frame boundary.
pub struct FrameClock {
    /// The kernel timer, or `None` if the system gave none (then tokio's timer paces).
    timer: Option<AsyncFd<Timer>>,
    /// The boundary the next tick returns.
    next: Instant,
    /// Expirations the kernel counted that no tick has returned yet.
    pending: u64,
}

impl FrameClock {
    /// A clock whose first tick is the first frame boundary from now. Needs a tokio
    /// runtime with I/O enabled.
    pub fn new() -> FrameClock {
        Self::paced_by(kernel_timer())
    }

    fn paced_by(timer: Option<AsyncFd<Timer>>) -> FrameClock {
        let mut clock = FrameClock {
            timer,
            next: Instant::now(),
            pending: 0,
        };
        clock.start_at(frame_boundary(Instant::now()));
        clock
    }

    /// Starts the ticks again at `first` and every frame after it.
    fn start_at(&mut self, first: Instant) {
        self.next = first;
        self.pending = 0;
        if let Some(timer) = &self.timer {
            if let Err(e) = arm(timer, first) {
                tracing::warn!("audio clock: {e}; using tokio's timer");
                self.timer = None;
            }
        }
    }

    /// Waits for the next frame boundary and returns it. A reader a little late gets the
    /// ticks it missed at once, one per call; a clock nobody waited on for a while
    /// (between calls) carries on from now, as a sound card would, instead of rushing
    /// out the ticks it missed.
    pub async fn tick(&mut self) -> Instant {
        let now = Instant::now();
        if now.saturating_duration_since(self.next) > RESTART_AFTER {
            self.start_at(frame_boundary(now));
        }
        while self.pending == 0 {
            match &self.timer {
                Some(timer) => match wait_expirations(timer).await {
                    Ok(n) => self.pending += n,
                    Err(e) => {
                        tracing::warn!("audio clock: {e}; using tokio's timer");
                        self.timer = None;
                    }
                },
                None => {
                    tokio::time::sleep_until(self.next).await;
                    self.pending = 1;
                }
            }
        }
        self.pending -= 1;
        let at = self.next;
        self.next += FRAME_TIME;
        at
    }
}

/// Sets `timer` to expire at `first` and every frame after it. Setting it also clears
/// the count of expirations not yet read.
fn arm(timer: &AsyncFd<Timer>, first: Instant) -> nix::Result<()> {
    // CLOCK_MONOTONIC is the clock tokio's (and std's) `Instant` reads. Reading it after
    // `Instant::now()` can only set the timer late by a hair, never early.
    let ahead = first.saturating_duration_since(Instant::now());
    let mono_now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)?;
    let at = TimeSpec::from_duration(Duration::from(mono_now) + ahead);
    let every = TimeSpec::from_duration(FRAME_TIME);
    timer.get_ref().0.set(
        Expiration::IntervalDelayed(at, every),
        TimerSetTimeFlags::TFD_TIMER_ABSTIME,
    )
}

/// A kernel timer registered with tokio, or `None` (said in the log) if there is none.
fn kernel_timer() -> Option<AsyncFd<Timer>> {
    let timer = TimerFd::new(
        ClockId::CLOCK_MONOTONIC,
        TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
    )
    .map_err(io::Error::from)
    .and_then(|fd| {
        // SAFETY: `Timer` owns the descriptor for its whole life and always names it.
        unsafe { AsyncFd::register_with_interest(Timer(fd), Interest::READABLE) }
            .map_err(io::Error::from)
    });
    match timer {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!("no kernel timer for the audio clock ({e}); using tokio's");
            None
        }
    }
}

/// Waits until the timer has expired and returns how many times it has since last read.
async fn wait_expirations(timer: &AsyncFd<Timer>) -> io::Result<u64> {
    loop {
        let mut ready = timer.readable().await?;
        let mut count = [0u8; 8];
        match ready
            .try_io(|fd| nix::unistd::read(fd.as_raw_fd(), &mut count).map_err(io::Error::from))
        {
            Ok(Ok(8)) => {
                // One read takes every expiration: nothing is left to read until the next
                // one, which tokio sees as a new edge even if it came in meanwhile.
                ready.clear_ready();
                return Ok(u64::from_ne_bytes(count));
            }
            Ok(Ok(n)) => {
                return Err(io::Error::other(format!("timerfd read {n} bytes, not 8")));
            }
            Ok(Err(e)) => return Err(e),
            // Not expired after all (the timer was set again): wait for the next edge.
            Err(_would_block) => continue,
        }
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

    // Real time: these wait on the kernel timer. They check only what no slow machine can
    // break: which boundaries come, and that none comes before its time.

    #[tokio::test]
    async fn ticks_every_frame_on_the_shared_boundaries() {
        let mut a = FrameClock::new();
        let first = a.tick().await;
        assert_eq!(first, frame_boundary(first));
        assert!(Instant::now() >= first, "ticked early");
        for k in 1..=5 {
            let at = a.tick().await;
            assert_eq!(at, first + FRAME_TIME * k);
            assert!(Instant::now() >= at, "ticked early");
        }
        // A second clock started mid-frame ticks on the same boundaries.
        tokio::time::sleep(Duration::from_millis(7)).await;
        let mut b = FrameClock::new();
        let b_first = b.tick().await;
        assert_eq!((b_first - first).as_nanos() % FRAME_TIME.as_nanos(), 0);
        assert!(b_first > first);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_kernel_timer_tokio_paces_the_same_boundaries() {
        let mut c = FrameClock::paced_by(None);
        let first = c.tick().await;
        assert_eq!(first, frame_boundary(first));
        // Tokio's timer has millisecond steps: a tick comes within one after its boundary.
        let on_time = |at: Instant| {
            (Duration::ZERO..Duration::from_millis(1)).contains(&(Instant::now() - at))
        };
        assert!(on_time(first));
        for k in 1..=3 {
            let at = c.tick().await;
            assert_eq!(at, first + FRAME_TIME * k);
            assert!(on_time(at));
        }
        tokio::time::sleep(FRAME_TIME * 2).await;
        assert_eq!(c.tick().await, first + FRAME_TIME * 4);
        assert_eq!(c.tick().await, first + FRAME_TIME * 5);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = Instant::now();
        let resumed = c.tick().await;
        assert!(resumed >= before);
        assert_eq!(c.tick().await, resumed + FRAME_TIME);
    }

    #[tokio::test]
    async fn a_late_reader_gets_the_missed_ticks_then_carries_on_from_now() {
        let mut c = FrameClock::new();
        let first = c.tick().await;
        // Slightly late: the missed ticks come at once, in order, then the schedule holds.
        std::thread::sleep(FRAME_TIME * 2);
        assert_eq!(c.tick().await, first + FRAME_TIME);
        assert_eq!(c.tick().await, first + FRAME_TIME * 2);
        let third = c.tick().await;
        assert_eq!(third, first + FRAME_TIME * 3);
        assert!(Instant::now() >= third, "ticked early");
        // Long unread (between calls): no burst of old ticks.
        std::thread::sleep(Duration::from_millis(300));
        let before = Instant::now();
        let resumed = c.tick().await;
        assert!(
            resumed >= before,
            "an old tick came: {:?}",
            before - resumed
        );
        assert_eq!(c.tick().await, resumed + FRAME_TIME);
    }
}
