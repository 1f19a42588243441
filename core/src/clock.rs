//! The portal's time. Leases last weeks and the testbed promises slivers within an hour, so every timer of the
//! portal reads this clock rather than the system's: in production it is the real time; in tests and demos it
//! runs scaled (an hour in seconds, in step with the reference testbed's own scaled clock) or is moved by hand.
//!
//! The scaled clock reads tokio's `Instant`, so a test may also pause tokio time and advance it.

use chrono::{DateTime, TimeDelta, Utc};
use std::{sync::Arc, time::Duration};
use tokio::{sync::watch, time::Instant};

#[derive(Clone, Debug)]
pub struct Clock(Kind);

#[derive(Clone, Debug)]
enum Kind {
    Real,
    Scaled { origin_real: Instant, origin: DateTime<Utc>, scale: f64 },
    Manual(Arc<watch::Sender<DateTime<Utc>>>),
}

impl Clock {
    /// The system's clock.
    pub fn real() -> Self {
        Self(Kind::Real)
    }

    /// Starts at `origin`; each real second is `scale` portal seconds.
    ///
    /// # Panics
    /// If `scale` is not a positive, finite number (configuration validates it first).
    pub fn scaled(origin: DateTime<Utc>, scale: f64) -> Self {
        assert!(scale > 0.0 && scale.is_finite(), "time scale must be positive");
        Self(Kind::Scaled { origin_real: Instant::now(), origin, scale })
    }

    /// Stands still at `at` until [`Clock::advance`] moves it: for tests that step time explicitly.
    pub fn manual(at: DateTime<Utc>) -> Self {
        Self(Kind::Manual(Arc::new(watch::channel(at).0)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            Kind::Real => Utc::now(),
            Kind::Scaled { origin_real, origin, scale } => {
                let elapsed = origin_real.elapsed().as_secs_f64() * scale;
                *origin + TimeDelta::microseconds((elapsed * 1e6) as i64)
            }
            Kind::Manual(now) => *now.borrow(),
        }
    }

    /// Moves a manual clock forward by `by`, waking its sleepers that are due.
    ///
    /// # Panics
    /// On a real or scaled clock: those follow real time.
    pub fn advance(&self, by: TimeDelta) {
        match &self.0 {
            Kind::Manual(now) => now.send_modify(|t| *t += by),
            _ => panic!("only a manual clock can be advanced"),
        }
    }

    /// The real time that `span` of portal time takes (zero for a manual clock, which never moves by itself).
    pub fn real_duration(&self, span: TimeDelta) -> Duration {
        let secs = span.as_seconds_f64().max(0.0);
        match &self.0 {
            Kind::Real => Duration::from_secs_f64(secs),
            Kind::Scaled { scale, .. } => Duration::from_secs_f64(secs / scale),
            Kind::Manual(_) => Duration::ZERO,
        }
    }

    /// The portal time that `real` real time takes (a manual clock's: as much, it moves only by hand): how
    /// long a lease must last to cover work bounded in real time.
    pub fn portal_span(&self, real: Duration) -> TimeDelta {
        let secs = match &self.0 {
            Kind::Scaled { scale, .. } => real.as_secs_f64() * scale,
            Kind::Real | Kind::Manual(_) => real.as_secs_f64(),
        };
        TimeDelta::milliseconds((secs * 1000.0).min(i64::MAX as f64 / 2.0) as i64)
    }

    /// Sleeps for `span` of portal time. On a manual clock: until someone advances it far enough.
    pub async fn sleep(&self, span: TimeDelta) {
        match &self.0 {
            Kind::Manual(now) => {
                let until = *now.borrow() + span;
                let mut rx = now.subscribe();
                // `wait_for` returns at once if the value already satisfies it; the sender lives in `self`.
                let _ = rx.wait_for(|t| *t >= until).await;
            }
            _ => tokio::time::sleep(self.real_duration(span)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_scaled_clock_runs_an_hour_in_ten_seconds() {
        let clock = Clock::scaled(origin(), 360.0);
        assert_eq!(clock.now(), origin());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(clock.now(), origin() + TimeDelta::hours(1));
        assert_eq!(clock.real_duration(TimeDelta::hours(1)), Duration::from_secs(10));
        assert_eq!(clock.portal_span(Duration::from_secs(10)), TimeDelta::hours(1));
    }

    #[tokio::test(start_paused = true)]
    async fn scaled_sleep_takes_the_scaled_real_time() {
        let clock = Clock::scaled(origin(), 60.0);
        let start = Instant::now();
        clock.sleep(TimeDelta::minutes(2)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_only_when_advanced_far_enough() {
        let clock = Clock::manual(origin());
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep(TimeDelta::minutes(5)).await }
        });
        tokio::task::yield_now().await; // the sleeper has read the time and waits
        clock.advance(TimeDelta::minutes(4));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woke a minute early");
        clock.advance(TimeDelta::minutes(1));
        sleeper.await.unwrap();
        assert_eq!(clock.now(), origin() + TimeDelta::minutes(5));
    }

    #[test]
    #[should_panic(expected = "only a manual clock")]
    fn the_real_clock_cannot_be_advanced() {
        Clock::real().advance(TimeDelta::seconds(1));
    }
}
