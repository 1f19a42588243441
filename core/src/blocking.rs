//! CPU-heavy work off the async workers. An argon2 hash takes tens of milliseconds and a mapping up to its
//! time limit; run on a tokio worker either would stall every request scheduled there (the portal runs on two
//! cores). Each kind of work gets its own bounded pool on tokio's blocking threads, so a flood of log-ins
//! cannot starve the mapper and neither can take every core from the pages.

use model::error::{AppError, AppResult};
use std::sync::LazyLock;
use tokio::sync::Semaphore;

/// A bounded share of the blocking threads.
pub struct Pool {
    name: &'static str,
    permits: Semaphore,
}

impl Pool {
    const fn new(name: &'static str, size: usize) -> Self {
        Self { name, permits: Semaphore::const_new(size) }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// Password hashing and verification: at most one per core at a time (further log-ins queue).
pub static PASSWORDS: LazyLock<Pool> = LazyLock::new(|| Pool::new("passwords", cores()));
/// Mapping: one mapping at a time per two cores, at least one.
pub static MAPPING: LazyLock<Pool> = LazyLock::new(|| Pool::new("mapping", (cores() / 2).max(1)));

/// Runs `work` on a blocking thread once `pool` has room, and waits for its result.
///
/// The work holds its share of the pool until it ends, even if the caller stops waiting (a client that
/// disconnects drops its request's future, but a blocking thread cannot be stopped).
pub async fn run<T, F>(pool: &'static Pool, work: F) -> AppResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let permit = pool.permits.acquire().await.map_err(AppError::internal)?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .map_err(|e| AppError::internal(format!("{} work failed: {e}", pool.name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test(flavor = "current_thread")]
    async fn the_async_worker_stays_free_while_the_work_runs() {
        // On a single-threaded runtime a blocking call inline would stop the ticker; here it keeps ticking.
        let ticks = tokio::spawn(async {
            let mut n = 0;
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(150) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                n += 1;
            }
            n
        });
        let answer = run(&MAPPING, || {
            std::thread::sleep(Duration::from_millis(200));
            42
        })
        .await
        .unwrap();
        assert_eq!(answer, 42);
        assert!(ticks.await.unwrap() >= 5, "the runtime was blocked");
    }

    #[tokio::test]
    async fn a_cancelled_caller_keeps_its_share_until_the_work_ends() {
        // A client that disconnects drops the request's future, but its hash goes on running on a blocking
        // thread: that thread must still count against the pool, or a flood of disconnecting log-ins runs
        // unbounded argon2 work.
        static ONE: Pool = Pool::new("one", 1);
        let (started_tx, started) = std::sync::mpsc::channel();
        let (finish, finish_rx) = std::sync::mpsc::channel::<()>();
        let caller = tokio::spawn(run(&ONE, move || {
            started_tx.send(()).unwrap();
            finish_rx.recv().unwrap();
        }));
        tokio::task::spawn_blocking(move || started.recv().unwrap()).await.unwrap();
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        assert!(ONE.permits.try_acquire().is_err(), "the pool was freed while its work still runs");
        finish.send(()).unwrap();
        let permit = ONE.permits.acquire().await.unwrap();
        drop(permit);
    }

    #[tokio::test]
    async fn a_panic_in_the_work_is_an_internal_error() {
        let err = run(&PASSWORDS, || -> u8 { panic!("boom") }).await.unwrap_err();
        assert_eq!(err.code, model::error::ErrorCode::Internal);
    }
}
