//! Time. The engine reads wall-clock time through [`Clock`] and sleeps on
//! tokio's timer, so a test that runs on a paused tokio runtime
//! (`#[tokio::test(start_paused = true)]`) sees Wait states and retry back-off
//! complete instantly on virtual time, while `certops serve` runs on real time.

use chrono::{DateTime, TimeZone, Utc};
use std::time::Duration;
use tokio::time::Instant;

/// The engine's source of time.
pub trait Clock: Send + Sync {
    /// Current wall-clock time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// The tokio instant at which wall-clock time `ms` is reached (for sleeping).
    fn instant_at(&self, ms: i64) -> Instant;
}

/// A clock anchored to a wall-clock start and advanced by tokio's (possibly paused) timer.
#[derive(Debug, Clone)]
pub struct TokioClock {
    wall_start_ms: i64,
    instant_start: Instant,
}

impl TokioClock {
    /// Real time: anchored to the system clock now.
    pub fn system() -> Self {
        Self::starting_at(Utc::now())
    }

    /// Virtual or real time starting at `start` (use on a paused runtime for virtual time).
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        TokioClock {
            wall_start_ms: start.timestamp_millis(),
            instant_start: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        let elapsed = Instant::now().saturating_duration_since(self.instant_start);
        self.wall_start_ms + elapsed.as_millis() as i64
    }

    fn instant_at(&self, ms: i64) -> Instant {
        let offset = (ms - self.wall_start_ms).max(0) as u64;
        self.instant_start + Duration::from_millis(offset)
    }
}

/// A clock on which the engine's own timers (Wait states, Retry back-off, task and
/// heartbeat timeouts) run `factor` times faster than real time, while the code around
/// the engine (step handlers, their HTTP calls, a fault injected by a test) keeps real
/// time. It lets a test put a retry schedule of minutes against a real server that is
/// down for seconds, on a runtime that does real I/O (a paused tokio clock would fire the
/// HTTP client's timeouts early).
#[derive(Debug, Clone)]
pub struct ScaledClock {
    wall_start_ms: i64,
    instant_start: Instant,
    factor: u32,
}

impl ScaledClock {
    /// Engine time starts at the system clock now and runs `factor` (at least 1) times
    /// faster than real time.
    pub fn system(factor: u32) -> Self {
        ScaledClock {
            wall_start_ms: Utc::now().timestamp_millis(),
            instant_start: Instant::now(),
            factor: factor.max(1),
        }
    }
}

impl Clock for ScaledClock {
    fn now_ms(&self) -> i64 {
        let elapsed = Instant::now().saturating_duration_since(self.instant_start);
        self.wall_start_ms + (elapsed.as_millis() as i64).saturating_mul(i64::from(self.factor))
    }

    fn instant_at(&self, ms: i64) -> Instant {
        let offset = (ms - self.wall_start_ms).max(0) as u64 / u64::from(self.factor);
        self.instant_start + Duration::from_millis(offset)
    }
}

/// Formats epoch milliseconds as AWS does in the context object (`2026-01-01T00:00:00.000Z`).
pub fn iso_millis(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn virtual_time_advances_with_tokio_sleep() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let c = TokioClock::starting_at(start);
        assert_eq!(iso_millis(c.now_ms()), "2026-01-01T00:00:00.000Z");
        tokio::time::sleep_until(c.instant_at(c.now_ms() + 3_600_000)).await;
        assert_eq!(iso_millis(c.now_ms()), "2026-01-01T01:00:00.000Z");
    }

    #[tokio::test(start_paused = true)]
    async fn a_scaled_clock_runs_engine_time_faster_than_real_time() {
        let c = ScaledClock::system(60);
        let t0 = c.now_ms();
        let real = Instant::now();
        // One engine minute is one real second.
        tokio::time::sleep_until(c.instant_at(t0 + 60_000)).await;
        assert_eq!(real.elapsed(), Duration::from_secs(1));
        assert_eq!(c.now_ms() - t0, 60_000);
    }
}
