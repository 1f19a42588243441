//! Background loops, supervised. Every periodic job of the portal (session expiry now; discovery, liveness,
//! leases and swaps later) runs under a [`Supervisor`]: each loop has a name, runs one pass at a time on the
//! portal's [`Clock`], is restarted with exponential backoff after a pass that fails or panics (logged with
//! its name), and stops at shutdown. Loops never decide alone that they are done: a pass that returns is
//! simply followed by the next one after the loop's period.

use crate::clock::Clock;
use chrono::TimeDelta;
use std::{fmt::Display, future::Future, sync::Arc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// After a failure the next pass waits this long, doubled per consecutive failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: TimeDelta = TimeDelta::seconds(1);
pub const MAX_BACKOFF: TimeDelta = TimeDelta::minutes(5);

pub struct Supervisor {
    clock: Clock,
    stop: CancellationToken,
    loops: JoinSet<()>,
}

/// What a loop's pass may return as an error: anything printable (logged, never shown to users).
pub type PassResult<E> = Result<(), E>;

impl Supervisor {
    pub fn new(clock: Clock) -> Self {
        Self { clock, stop: CancellationToken::new(), loops: JoinSet::new() }
    }

    /// Runs `pass` now and then every `period` of portal time, until shutdown.
    pub fn every<F, Fut, E>(&mut self, name: &'static str, period: TimeDelta, pass: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = PassResult<E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let clock = self.clock.clone();
        let stop = self.stop.clone();
        let pass = Arc::new(pass);
        self.loops.spawn(async move {
            tracing::info!(name, "background loop started");
            let mut failures: u32 = 0;
            while !stop.is_cancelled() {
                // Each pass runs as its own task, so a panic ends the pass, not the loop.
                let outcome = tokio::select! {
                    outcome = tokio::spawn({ let pass = pass.clone(); async move { pass().await } }) => outcome,
                    () = stop.cancelled() => break,
                };
                let wait = match outcome {
                    Ok(Ok(())) => {
                        failures = 0;
                        period
                    }
                    Ok(Err(e)) => {
                        failures += 1;
                        tracing::warn!(name, failures, error = %e, "background loop pass failed; retrying");
                        backoff(failures)
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::error!(name, failures, error = %e, "background loop pass panicked; restarting");
                        backoff(failures)
                    }
                };
                tokio::select! {
                    () = clock.sleep(wait) => {}
                    () = stop.cancelled() => break,
                }
            }
            tracing::info!(name, "background loop stopped");
        });
    }

    /// Asks every loop to stop and waits until they have (a pass in progress is abandoned).
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        while self.loops.join_next().await.is_some() {}
    }
}

/// The wait after `failures` consecutive failures: 1 s, 2 s, 4 s, … at most 5 min.
pub fn backoff(failures: u32) -> TimeDelta {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST_BACKOFF * 2_i32.pow(doublings)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(1), TimeDelta::seconds(1));
        assert_eq!(backoff(2), TimeDelta::seconds(2));
        assert_eq!(backoff(5), TimeDelta::seconds(16));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_survives_errors_and_panics_and_stops_on_shutdown() {
        let clock = Clock::scaled(chrono::Utc::now(), 1.0);
        let mut supervisor = Supervisor::new(clock);
        let passes = Arc::new(AtomicU32::new(0));
        let counted = passes.clone();
        supervisor.every("flaky", TimeDelta::seconds(60), move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => Err("the database is away"),
                    1 => panic!("a bug"),
                    _ => Ok(()),
                }
            }
        });
        // Pass 1 fails (backoff 1 s), pass 2 panics (backoff 2 s), pass 3 succeeds (then every 60 s).
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(passes.load(Ordering::SeqCst), 3);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(passes.load(Ordering::SeqCst), 4);
        supervisor.shutdown().await;
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(passes.load(Ordering::SeqCst), 4, "a pass ran after shutdown");
    }
}
