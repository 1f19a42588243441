//! The claim/lease mechanism of reconcilers (`portolan_core::db::claim`) on both databases: concurrent
//! claimers never share a row and leave none behind; an expired lease is taken over, and its old holder can
//! then neither extend nor release it; a lease extended in time stays its holder's.

mod common;

use chrono::{DateTime, TimeDelta, Utc};
use common::TestApp;
use portolan_core::{
    clock::Clock,
    db::claim::{self, Leased, Owner},
};
use sea_orm::{ConnectionTrait, Statement};
use std::collections::HashSet;

fn origin() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

const LEASE: TimeDelta = TimeDelta::minutes(1);

/// `n` tasks of `kind`, due one second apart before `now` (sub-second parts vary, to exercise ordering).
async fn tasks(app: &TestApp, kind: &str, n: i64, now: DateTime<Utc>) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let due = now - TimeDelta::seconds(n - i) + TimeDelta::milliseconds(i % 3 * 250);
        ids.push(claim::ensure_task(&app.db, kind, &format!("k{i}"), due, now).await.unwrap());
    }
    ids
}

async fn owner_of(app: &TestApp, id: i64) -> Option<String> {
    let backend = app.db.get_database_backend();
    let sql = format!("SELECT lease_owner FROM reconcile_tasks WHERE id = {id}");
    let row = app.db.query_one_raw(Statement::from_string(backend, sql)).await.unwrap().unwrap();
    row.try_get("", "lease_owner").unwrap()
}

async fn concurrent_claimers_share_no_row_and_leave_none(app: TestApp) {
    let now = origin();
    let ids = tasks(&app, "many", 200, now).await;
    // A row of another kind, due too: claimers of "many" must not take it.
    let other = claim::ensure_task(&app.db, "other", "", now - TimeDelta::hours(1), now).await.unwrap();

    let claimers = (0..8).map(|n| {
        let db = app.db.clone();
        tokio::spawn(async move {
            let owner = Owner::new(&format!("claimer{n}"));
            let leased = Leased::tasks("many");
            let mut mine = Vec::new();
            loop {
                let batch = leased.claim(&db, &owner, now, LEASE, 3).await.unwrap();
                if batch.is_empty() {
                    break;
                }
                assert!(batch.len() <= 3);
                assert!(batch.windows(2).all(|w| (w[0].due_at, w[0].id) < (w[1].due_at, w[1].id)));
                mine.extend(batch);
                tokio::task::yield_now().await;
            }
            (owner, mine)
        })
    });
    let mut seen = HashSet::new();
    for claimer in claimers {
        let (owner, mine) = claimer.await.unwrap();
        for c in mine {
            assert!(seen.insert(c.id), "row {} claimed twice ({})", c.id, app.backend);
            assert_eq!(c.owner, owner);
            assert_eq!(c.until, now + LEASE);
            assert_eq!(owner_of(&app, c.id).await.as_deref(), Some(owner.as_str()));
        }
    }
    assert_eq!(seen, ids.into_iter().collect::<HashSet<_>>(), "every row claimed ({})", app.backend);
    assert_eq!(owner_of(&app, other).await, None, "a row of another kind was claimed");
    // While the leases run, nothing is left to claim.
    let late = Leased::tasks("many").claim(&app.db, &Owner::new("late"), now, LEASE, 100).await.unwrap();
    assert!(late.is_empty());
}

async fn an_expired_lease_is_taken_over_and_lost_by_its_old_owner(app: TestApp) {
    let clock = Clock::manual(origin());
    let leased = Leased::tasks("takeover");
    let id = claim::ensure_task(&app.db, "takeover", "", clock.now(), clock.now()).await.unwrap();
    let (a, b) = (Owner::new("a"), Owner::new("b"));

    let mut first = leased.claim(&app.db, &a, clock.now(), LEASE, 10).await.unwrap().pop().unwrap();
    assert_eq!(first.id, id);
    assert!(leased.claim(&app.db, &b, clock.now(), LEASE, 10).await.unwrap().is_empty(), "held");

    clock.advance(LEASE); // the lease runs out at this instant
    let mut second = leased.claim(&app.db, &b, clock.now(), LEASE, 10).await.unwrap().pop().unwrap();
    assert_eq!((second.id, &second.owner), (id, &b));

    assert!(!leased.extend(&app.db, &mut first, clock.now(), LEASE).await.unwrap(), "old owner extended");
    assert_eq!(first.until, origin() + LEASE, "a failed extension left the claim as it was");
    assert!(!leased.release(&app.db, first, None).await.unwrap(), "old owner released");
    assert_eq!(owner_of(&app, id).await.as_deref(), Some(b.as_str()));

    clock.advance(TimeDelta::seconds(10));
    assert!(leased.extend(&app.db, &mut second, clock.now(), LEASE).await.unwrap());
    let next = clock.now() + TimeDelta::hours(1);
    assert!(leased.release(&app.db, second, Some(next)).await.unwrap());
    assert_eq!(owner_of(&app, id).await, None);
    // Released with a next due time: not due before it, due at it.
    assert!(leased.claim(&app.db, &a, clock.now(), LEASE, 10).await.unwrap().is_empty());
    let again = leased.claim(&app.db, &a, next, LEASE, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].due_at, next);
}

async fn an_extended_lease_stays_its_owners(app: TestApp) {
    let clock = Clock::manual(origin());
    let leased = Leased::tasks("extend");
    claim::ensure_task(&app.db, "extend", "", clock.now(), clock.now()).await.unwrap();
    let (a, b) = (Owner::new("a"), Owner::new("b"));
    let mut held = leased.claim(&app.db, &a, clock.now(), LEASE, 1).await.unwrap().pop().unwrap();
    for _ in 0..3 {
        clock.advance(TimeDelta::seconds(45));
        assert!(leased.extend(&app.db, &mut held, clock.now(), LEASE).await.unwrap());
        assert_eq!(held.until, clock.now() + LEASE);
        assert!(
            leased.claim(&app.db, &b, clock.now(), LEASE, 1).await.unwrap().is_empty(),
            "taken while held"
        );
    }
    // A failed pass: released with its error and one more attempt, due again after a backoff.
    let retry = clock.now() + TimeDelta::seconds(30);
    assert!(claim::finish_task(&app.db, held, Some(retry), Some("testbed away"), clock.now()).await.unwrap());
    let backend = app.db.get_database_backend();
    let row = app
        .db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT attempts, last_error FROM reconcile_tasks WHERE kind = 'extend'",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i32>("", "attempts").unwrap(), 1);
    assert_eq!(row.try_get::<Option<String>>("", "last_error").unwrap().as_deref(), Some("testbed away"));
    // Registering the task again finds it rather than duplicating it.
    let before = app.count("reconcile_tasks").await;
    claim::ensure_task(&app.db, "extend", "", clock.now(), clock.now()).await.unwrap();
    assert_eq!(app.count("reconcile_tasks").await, before);
}

/// PostgreSQL: a claim made inside a transaction keeps its rows locked until the commit; a second claimer
/// meanwhile skips them (rather than waiting, or taking them too once the first commits) and gets the next.
/// (SQLite has one writer: there the second claim would wait for the first transaction to end.)
#[tokio::test]
async fn a_claimer_skips_rows_locked_by_another_claim_in_progress() {
    use sea_orm::TransactionTrait;
    let app = TestApp::postgres().await;
    let now = origin();
    tasks(&app, "locked", 10, now).await;
    let leased = Leased::tasks("locked");
    let (a, b) = (Owner::new("a"), Owner::new("b"));
    let txn = app.db.begin().await.unwrap();
    let first = leased.claim(&txn, &a, now, LEASE, 4).await.unwrap();
    // Were the first claim's rows waited for, this would block until the commit below, i.e. for ever: the
    // lock timeout turns that into an error.
    let other = app.db.begin().await.unwrap();
    other.execute_unprepared("SET LOCAL lock_timeout = '5s'").await.unwrap();
    let second =
        leased.claim(&other, &b, now, LEASE, 4).await.expect("the second claim waited for locked rows");
    other.commit().await.unwrap();
    txn.commit().await.unwrap();
    let rest = leased.claim(&app.db, &b, now, LEASE, 10).await.unwrap();
    assert_eq!((first.len(), second.len(), rest.len()), (4, 4, 2));
    let all: HashSet<i64> = first.iter().chain(&second).chain(&rest).map(|c| c.id).collect();
    assert_eq!(all.len(), 10, "a row was claimed twice");
    // The oldest due went to the first claimer; the second took the next ones.
    assert!(first.iter().all(|f| second.iter().all(|s| f.due_at <= s.due_at)));
}

on_both_databases!(
    concurrent_claimers_share_no_row_and_leave_none,
    an_expired_lease_is_taken_over_and_lost_by_its_old_owner,
    an_extended_lease_stays_its_owners,
);
