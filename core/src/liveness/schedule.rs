//! When a node is checked next: Emulab's schedule. After `n` consecutive failures a node is re-tested in
//! min(12 h, n²·5 min); after `n` consecutive good checks a healthy node is re-checked in min(1 h,
//! 2n·10 min). Each gets up to two minutes of jitter, so that nodes that failed together (a site's network
//! went down) do not all come back for testing in the same second.

use chrono::TimeDelta;

/// The jitter's bound.
pub const JITTER: TimeDelta = TimeDelta::minutes(2);

/// The wait before re-testing a node after `failures` consecutive failures (at least one), without jitter.
pub fn after_failures(failures: u32) -> TimeDelta {
    // From 13 failures on the cap holds (13²·5 min > 12 h): clamping first keeps the square small.
    let n = i32::try_from(failures.clamp(1, 100)).unwrap_or(100);
    (TimeDelta::minutes(5) * (n * n)).min(TimeDelta::hours(12))
}

/// The wait before re-checking a healthy node after `successes` consecutive good checks (at least one),
/// without jitter.
pub fn after_successes(successes: u32) -> TimeDelta {
    let n = i32::try_from(successes.clamp(1, 1000)).unwrap_or(1000);
    (TimeDelta::minutes(10) * (2 * n)).min(TimeDelta::hours(1))
}

/// A random jitter in [0, [`JITTER`]).
pub fn jitter() -> TimeDelta {
    TimeDelta::milliseconds(rand::random_range(0..JITTER.num_milliseconds()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_quadratically_up_to_twelve_hours() {
        let minutes = |n| after_failures(n).num_minutes();
        assert_eq!([minutes(1), minutes(2), minutes(3), minutes(10)], [5, 20, 45, 500]);
        assert_eq!(minutes(12), 12 * 60, "12²·5 min = 720 min: the cap exactly");
        assert_eq!(minutes(13), 12 * 60);
        assert_eq!(minutes(u32::MAX), 12 * 60);
        assert_eq!(minutes(0), 5, "no failure counts as one");
    }

    #[test]
    fn healthy_nodes_are_rechecked_linearly_up_to_an_hour() {
        let minutes = |n| after_successes(n).num_minutes();
        assert_eq!([minutes(1), minutes(2), minutes(3), minutes(4)], [20, 40, 60, 60]);
        assert_eq!(minutes(u32::MAX), 60);
    }

    #[test]
    fn jitter_stays_under_two_minutes() {
        for _ in 0..1000 {
            let j = jitter();
            assert!(j >= TimeDelta::zero() && j < JITTER);
        }
    }
}
