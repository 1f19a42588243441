//! Testbed time. The reference testbed promises things in hours (an hour for a sliver, weeks for a lease);
//! a scaled clock lets those promises play out in seconds in tests and demos. Time is `f64` Unix seconds.
//!
//! The clock reads tokio's `Instant`, so tests may also pause tokio time and advance it by hand.

use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin_real: Instant,
    origin: f64,
    scale: f64,
}

impl Clock {
    /// Starts at `origin` (Unix seconds); each real second is `scale` testbed seconds.
    pub fn scaled(origin: f64, scale: f64) -> Self {
        assert!(scale > 0.0 && scale.is_finite(), "time scale must be positive");
        Self { origin_real: Instant::now(), origin, scale }
    }

    /// Testbed now, in Unix seconds.
    pub fn now(&self) -> f64 {
        self.origin + self.origin_real.elapsed().as_secs_f64() * self.scale
    }

    /// The real duration that `testbed_seconds` take.
    pub fn real_duration(&self, testbed_seconds: f64) -> Duration {
        // Saturates: NaN and negative durations are none, overflowing ones the longest there is.
        Duration::try_from_secs_f64((testbed_seconds / self.scale).max(0.0)).unwrap_or(Duration::MAX)
    }

    /// Sleeps for `testbed_seconds` of testbed time.
    pub async fn sleep(&self, testbed_seconds: f64) {
        tokio::time::sleep(self.real_duration(testbed_seconds)).await;
    }
}

pub fn system_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_hour_in_ten_seconds() {
        let clock = Clock::scaled(1_000_000.0, 360.0);
        assert_eq!(clock.now(), 1_000_000.0);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!((clock.now() - 1_003_600.0).abs() < 1e-6);
        assert_eq!(clock.real_duration(3600.0), Duration::from_secs(10));
    }
}
