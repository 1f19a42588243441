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
                // Each pass runs as its own task, so a panic ends the pass, not the loop. At shutdown a pass
                // in progress is aborted and awaited (dropping its handle alone would leave it running).
                let mut running = tokio::spawn({
                    let pass = pass.clone();
                    async move { pass().await }
                });
                let outcome = tokio::select! {
                    outcome = &mut running => outcome,
                    () = stop.cancelled() => {
                        running.abort();
                        let _ = running.await;
                        break;
                    }
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

    /// Asks every loop to stop and waits until they have: a pass in progress is cancelled at its next
    /// `.await` (so a pass should keep what it writes consistent at every await, as reconcilers do by
    /// committing each step in one transaction), and none starts afterwards.
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

    /// Sets its flag when dropped: tells whether a pass's future was really given up.
    struct DropFlag(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cancels_a_pass_in_progress_and_waits_for_it() {
        let clock = Clock::manual(chrono::Utc::now());
        let mut supervisor = Supervisor::new(clock.clone());
        let started = Arc::new(tokio::sync::Notify::new());
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        supervisor.every("slow", TimeDelta::minutes(1), {
            let (started, dropped, finished) = (started.clone(), dropped.clone(), finished.clone());
            let clock = clock.clone();
            move || {
                let (started, flag, finished) =
                    (started.clone(), DropFlag(dropped.clone()), finished.clone());
                let clock = clock.clone();
                async move {
                    let _flag = flag;
                    started.notify_one();
                    clock.sleep(TimeDelta::hours(1)).await; // a long pass: nobody advances the clock
                    finished.store(true, Ordering::SeqCst);
                    Ok::<(), &str>(())
                }
            }
        });
        started.notified().await;
        assert!(!dropped.load(Ordering::SeqCst));
        supervisor.shutdown().await;
        assert!(dropped.load(Ordering::SeqCst), "shutdown returned while the pass still ran");
        clock.advance(TimeDelta::hours(2));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!finished.load(Ordering::SeqCst), "the pass went on after shutdown");
    }

    #[tokio::test(start_paused = true)]
    async fn passes_never_overlap_and_wait_a_period_of_portal_time() {
        let clock = Clock::manual(chrono::Utc::now());
        let mut supervisor = Supervisor::new(clock.clone());
        let passes = Arc::new(AtomicU32::new(0));
        let running = Arc::new(AtomicU32::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        supervisor.every("gated", TimeDelta::minutes(10), {
            let (passes, running, gate) = (passes.clone(), running.clone(), gate.clone());
            move || {
                let (passes, running, gate) = (passes.clone(), running.clone(), gate.clone());
                async move {
                    assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0, "two passes at once");
                    passes.fetch_add(1, Ordering::SeqCst);
                    gate.acquire().await.unwrap().forget(); // held until the test lets it finish
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok::<(), &str>(())
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(passes.load(Ordering::SeqCst), 1, "the first pass runs at once");
        // A period goes by while the first pass still runs: no second pass starts beside it.
        clock.advance(TimeDelta::minutes(30));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(passes.load(Ordering::SeqCst), 1);
        gate.add_permits(1);
        tokio::time::sleep(Duration::from_millis(1)).await;
        // Finished: the next pass waits a whole period from now, not from when the first one started.
        clock.advance(TimeDelta::minutes(9));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(passes.load(Ordering::SeqCst), 1, "the next pass came early");
        clock.advance(TimeDelta::minutes(1));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(passes.load(Ordering::SeqCst), 2);
        gate.add_permits(1);
        supervisor.shutdown().await;
    }
}
