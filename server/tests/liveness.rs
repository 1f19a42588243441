//! Liveness end to end, on SQLite and PostgreSQL, against the real reference testbed over HTTP and SSH on a
//! scaled clock (a portal minute in a real second): discovery lists the nodes; the liveness loop makes the
//! service slice (the portal's key on it) and a service sliver per node; bring-up binds, waits, connects
//! over SSH with the node's host key pinned, installs the agent (checked against the portal's checksum),
//! configures and starts it; its first heartbeat puts the node in `free`. A node that goes down falls
//! silent, goes `down` with the reason, is re-tested on Emulab's schedule and comes back `free`. A node
//! whose published host key changes is refused and goes `down` with that reason. Under the `harsh`
//! profile, failures go down with their step and class recorded and re-tests follow the backoff.

mod common;

use chrono::TimeDelta;
use common::slivers::{Harness, Options};
use portolan_core::db::entity::{Health, NodePool, pool_event, sliver, sliver_attempt};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::time::Duration;

const NODES: usize = 12;

/// Runs each named `async fn(&'static str)` on SQLite and on PostgreSQL.
macro_rules! on_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name("sqlite").await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name("postgres").await
                }
            }
        )*
    };
}

async fn service_slivers_bring_every_node_up_end_to_end(backend: &'static str) {
    let w = Harness::discovered(backend, Options { nodes: NODES, ..Options::default() }).await;
    assert_eq!(w.nodes().await.len(), NODES);
    assert!(w.nodes().await.iter().all(|n| n.pool == NodePool::New));
    w.run_until("every node free", Duration::from_secs(60), async |w| {
        w.nodes().await.iter().all(|n| n.pool == NodePool::Free)
    })
    .await;

    // The service slice exists at the testbed, with the portal's key on it.
    let slice = w.liveness.settings.service_slice.clone();
    assert!(slice.is_none(), "named after the first site");
    let rows = sliver::Entity::find().all(&w.app.db).await.unwrap();
    assert_eq!(rows.len(), NODES);
    let name = rows[0].slice_name.clone();
    assert!(name.ends_with("_portolan"), "{name}");
    let record = w.liveness.testbed.slice(&name).await.unwrap().expect("the service slice exists");
    assert_eq!(record.node_ids.len(), NODES, "bound to every node");
    assert!(rows.iter().all(|r| r.health == Health::Up && r.credential_hash.is_some()));
    // Each came up in one attempt, recorded with its generation; the pools' history says why.
    let attempts = sliver_attempt::Entity::find().all(&w.app.db).await.unwrap();
    assert_eq!(attempts.len(), NODES);
    assert!(
        attempts.iter().all(|a| a.failed_step.is_none() && a.generation == "node-manager" && a.seconds > 0.0)
    );
    let to_free = pool_event::Entity::find()
        .filter(pool_event::Column::ToPool.eq(NodePool::Free))
        .all(&w.app.db)
        .await
        .unwrap();
    assert_eq!(to_free.len(), NODES);
    assert!(to_free.iter().all(|e| e.from_pool == NodePool::New && e.reason.contains("end to end")));
    // The agents heartbeat: their metrics (the testbed's load model) reach the nodes.
    w.run_until("metrics from heartbeats", Duration::from_secs(10), async |w| {
        w.nodes()
            .await
            .iter()
            .all(|n| n.load.is_some() && n.memory_free_mb.is_some() && n.disk_free_pct.is_some())
    })
    .await;
    // They feed the mapper's world: every free node is a candidate with fresh, known metrics.
    let world = portolan_core::nodes::world::candidates(&w.app.db, w.clock.now(), false).await.unwrap();
    assert_eq!(world.len(), NODES);
    assert!(world.iter().all(|c| c.load.is_some() && c.metric_age_s.is_some_and(|a| a < 600.0)), "{world:?}");
    // Re-checks are scheduled within the hour (2·10 min for one good check) plus jitter.
    for n in w.nodes().await {
        let wait = n.due_at.unwrap() - n.last_check_at.unwrap();
        assert!(wait >= TimeDelta::minutes(20) && wait < TimeDelta::minutes(22), "{wait}");
    }

    // A node that goes down falls silent and goes down, with the reason.
    let victim = w.nodes().await[3].hostname.clone();
    let i = w.index_of(&victim);
    w.tb.state().node_mut(i).up = false;
    w.run_until("the silent node down", Duration::from_secs(20), async |w| {
        w.node(&victim).await.pool == NodePool::Down
    })
    .await;
    let down = w.node(&victim).await;
    assert_eq!(down.check_failures, 1);
    let wait = down.due_at.unwrap() - down.last_check_at.unwrap();
    assert!(
        wait >= TimeDelta::minutes(5) && wait < TimeDelta::minutes(7),
        "one failure: 5 min + jitter, {wait}"
    );
    let last = pool_event::Entity::find()
        .filter(pool_event::Column::NodeId.eq(down.id))
        .filter(pool_event::Column::ToPool.eq(NodePool::Down))
        .one(&w.app.db)
        .await
        .unwrap()
        .unwrap();
    assert!(last.reason.contains("silent"), "{}", last.reason);
    assert!(w.nodes().await.iter().filter(|n| n.pool == NodePool::Free).count() == NODES - 1);

    // It comes back; the re-test (at its scheduled time) brings it back to free.
    w.tb.state().node_mut(i).up = true;
    w.run_until("the node free again", Duration::from_secs(30), async |w| {
        w.node(&victim).await.pool == NodePool::Free
    })
    .await;
    let back = w.node(&victim).await;
    assert_eq!((back.check_failures, back.check_successes), (0, 1));
    assert!(w.clock.now() >= down.due_at.unwrap(), "not re-tested before its time");
}

on_backends!(service_slivers_bring_every_node_up_end_to_end);

/// Under the `harsh` profile (failing instantiations and node-manager creates, API faults, slow and failing
/// SSH commands): failures send nodes down with their step and class recorded, re-tests follow the
/// backoff (n failures: n²·5 min plus under 2 min of jitter), nodes come back to free, and a node that
/// leaves the testbed is gone and no longer tested.
async fn harsh_pools_follow_the_backoff(backend: &'static str) {
    let profile = common::slivers::quick(reference_testbed::profile::Profile::harsh());
    let w = Harness::discovered(backend, Options { profile, nodes: NODES, ..Options::default() }).await;
    w.run_until("a failure and a comeback", Duration::from_secs(90), async |w| {
        let events = pool_event::Entity::find().all(&w.app.db).await.unwrap();
        let came_back = events.iter().any(|e| e.from_pool == NodePool::Down && e.to_pool == NodePool::Free);
        let free = w.nodes().await.iter().filter(|n| n.pool == NodePool::Free).count();
        came_back && free >= NODES / 2
    })
    .await;
    let attempts = sliver_attempt::Entity::find().all(&w.app.db).await.unwrap();
    let failed: Vec<_> = attempts.iter().filter(|a| a.failed_step.is_some()).collect();
    assert!(!failed.is_empty());
    assert!(failed.iter().all(|a| a.class.is_some() && a.error.as_ref().is_some_and(|e| !e.is_empty())));
    let mut checked = 0;
    for n in w.nodes().await.into_iter().filter(|n| n.pool == NodePool::Down && n.check_failures > 0) {
        if w.service_sliver(n.id).await.due_at.is_some() {
            continue; // its re-test is under way (the node waits on its outcome)
        }
        checked += 1;
        let wait = n.due_at.unwrap() - n.last_check_at.unwrap();
        let base = portolan_core::liveness::schedule::after_failures(n.check_failures.unsigned_abs());
        assert!(wait >= base && wait < base + TimeDelta::minutes(2), "{} failures: {wait}", n.check_failures);
        let reason = pool_event::Entity::find()
            .filter(pool_event::Column::NodeId.eq(n.id))
            .filter(pool_event::Column::ToPool.eq(NodePool::Down))
            .all(&w.app.db)
            .await
            .unwrap();
        assert!(reason.iter().any(|e| e.reason.contains("service sliver failed at")), "{reason:?}");
    }
    assert!(checked > 0, "some node waits for its re-test");

    // A node leaves the testbed: discovery makes it gone, and liveness leaves it alone.
    let leaver = w.nodes().await.into_iter().find(|n| n.pool == NodePool::Free).unwrap();
    let i = w.index_of(&leaver.hostname);
    {
        let mut state = w.tb.state();
        state.node_mut(i).present = false;
        state.drop_slivers(i);
        state.reindex();
    }
    w.discover().await;
    assert_eq!(w.node(&leaver.hostname).await.pool, NodePool::Gone);
    let attempts_before = sliver_attempt::Entity::find()
        .filter(sliver_attempt::Column::NodeId.eq(leaver.id))
        .all(&w.app.db)
        .await
        .unwrap()
        .len();
    assert!(!portolan_core::liveness::retest_now(&w.app.db, leaver.id, w.clock.now()).await.unwrap());
    for _ in 0..20 {
        w.liveness.pass().await.unwrap();
        w.reconciler.pass().await.unwrap();
    }
    assert_eq!(w.node(&leaver.hostname).await.pool, NodePool::Gone, "silence does not bring it back");
    let attempts_after = sliver_attempt::Entity::find()
        .filter(sliver_attempt::Column::NodeId.eq(leaver.id))
        .all(&w.app.db)
        .await
        .unwrap()
        .len();
    assert_eq!(attempts_before, attempts_after, "a gone node is not tested");
}

on_backends!(harsh_pools_follow_the_backoff);
