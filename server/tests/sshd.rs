//! The end-to-end proof on real OpenSSH, on SQLite and PostgreSQL: two nodes of the reference testbed are
//! served by real `sshd` processes the test starts (their own host keys, given to the testbed; the
//! `AuthorizedKeysFile` the testbed writes for the slice). Bring-up logs in with the pinned host key,
//! the sliver downloads the real `portolan` binary from the portal with `curl` and checks it, and the real
//! `portolan agent` runs there as a process and heartbeats: the node enters `free`, its metrics come from
//! `/proc`. A researcher's key added to the slice lets `ssh` from the test log in. A key an operator adds in
//! the portal reaches the sliver's authorized keys within two heartbeats (and logs in). A node whose
//! published host key changes is refused on its re-test and goes `down` with that reason.

mod common;

use common::slivers::{Harness, Options, Sshd, keygen};
use portolan_core::{db::entity::NodePool, liveness, testbed::Testbed as _};
use std::time::{Duration, Instant};

fn options() -> Options {
    // Heartbeats every 3 s of real time (the manifest cache lives 2 s: a change reaches the sliver within
    // two heartbeats); silence after 20 s.
    Options { nodes: 6, heartbeat_s: 180.0, silence_s: 1200.0, ..Options::default() }
}

async fn a_real_agent_on_real_sshd(backend: &'static str) {
    let h = Harness::new(backend, options()).await;
    let servers = [Sshd::start(), Sshd::start()];
    let hosts = [h.hostname(1), h.hostname(4)];
    for (sshd, host) in servers.iter().zip(&hosts) {
        h.tb.back_with_sshd(host, &sshd.host_key, sshd.addr, Some(&sshd.login), sshd.authorized_keys.clone())
            .unwrap();
    }
    h.discover().await;
    h.run_until("the sshd nodes free", Duration::from_secs(180), async |h| {
        let mut free = true;
        for host in &hosts {
            free &= h.node(host).await.pool == NodePool::Free;
        }
        free
    })
    .await;
    for (sshd, host) in servers.iter().zip(&hosts) {
        let pid = sshd.agent_pid().unwrap_or_else(|| panic!("a real agent runs for {host}: {}", sshd.log()));
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(String::from_utf8_lossy(&cmdline).contains("agent"), "the agent process");
        let installed = sshd.home.join(".portolan/bin/portolan");
        assert!(installed.exists(), "the binary the sliver downloaded");
        let node = h.node(host).await;
        let sliver = h.service_sliver(node.id).await;
        assert!(sliver.up_at.is_some(), "{sliver:?}");
    }
    // Its metrics are this machine's, read from /proc and statvfs by the real agent.
    h.run_until("the real agents' metrics", Duration::from_secs(20), async |h| {
        let mut all = true;
        for host in &hosts {
            let n = h.node(host).await;
            all &= n.load.is_some() && n.memory_free_mb.is_some_and(|m| m > 0.0) && n.disk_free_pct.is_some();
            all &= h.service_sliver(n.id).await.heartbeats > 0;
        }
        all
    })
    .await;

    // A researcher-style key added to the slice through PLCAPI logs in with `ssh` (host key checked).
    let dir = tempfile::tempdir().unwrap();
    let (researcher, researcher_pub) = keygen(dir.path(), "researcher");
    assert!(!servers[0].ssh_with(&researcher), "not before it is on the slice");
    let slice = h.service_sliver(h.node(&hosts[0]).await.id).await.slice_name;
    h.client.add_person_to_slice("researcher@lab.example", &[researcher_pub], &slice).await.unwrap();
    wait("the researcher's key in the slice's key file", Duration::from_secs(10), || {
        servers[0].ssh_with(&researcher)
    })
    .await;

    // A key an operator adds in the portal reaches the real sliver within two heartbeats.
    let (operator_key, operator_pub) = keygen(dir.path(), "operator");
    let operator = h.app.user("op@portolan.example").await;
    portolan_core::accounts::set_operator(
        &h.app.db,
        &portolan_core::clock::Clock::real(),
        "op@portolan.example",
        true,
    )
    .await
    .unwrap();
    let (status, body) = h.app.call(&operator, "add_key", &[("public_key", &operator_pub)]).await;
    assert!(status.is_success(), "{status} {body}");
    let added = Instant::now();
    let fragment = operator_pub.split_whitespace().nth(1).unwrap().to_owned();
    let authorized = servers[1].home.join(".ssh/authorized_keys");
    wait("the operator's key in the sliver", Duration::from_secs(15), || {
        std::fs::read_to_string(&authorized).is_ok_and(|t| t.contains(&fragment))
    })
    .await;
    assert!(
        added.elapsed() <= Duration::from_secs(2 * 3 + 2),
        "within two heartbeats: {:?}",
        added.elapsed()
    );
    assert!(servers[1].ssh_with(&operator_key), "and it logs in");

    // The testbed now publishes another host key for the first node: its re-test is refused.
    let (_, impostor) = keygen(dir.path(), "impostor");
    h.tb.back_with_sshd(
        &hosts[0],
        &impostor,
        servers[0].addr,
        Some(&servers[0].login),
        servers[0].authorized_keys.clone(),
    )
    .unwrap();
    h.discover().await;
    let node = h.node(&hosts[0]).await;
    assert_eq!(node.host_key.as_deref(), Some(impostor.as_str()), "discovery follows the published key");
    // The operator's "re-test now" brings the service sliver up again from scratch, end to end.
    assert!(liveness::retest_now(&h.app.db, node.id, h.clock.now()).await.unwrap());
    h.run_until("the impostor refused", Duration::from_secs(30), async |h| {
        h.node(&hosts[0]).await.pool == NodePool::Down
    })
    .await;
    let sliver = h.service_sliver(node.id).await;
    assert_eq!(sliver.error_step.as_deref(), Some("connect"));
    let error = sliver.last_error.unwrap_or_default();
    assert!(error.contains("host key mismatch"), "{error}");
}

async fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

mod on_sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_real_agent_on_real_sshd() {
        super::a_real_agent_on_real_sshd("sqlite").await
    }
}

mod on_postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_real_agent_on_real_sshd() {
        super::a_real_agent_on_real_sshd("postgres").await
    }
}
