//! The harness of the sliver tests: a real reference testbed (PLCAPI over HTTP, its slivers' SSH endpoints)
//! and a real portal on one scaled clock, with discovery, the bring-up reconciler and the liveness loop
//! driven by the test; and real OpenSSH `sshd` processes backing chosen nodes, where the real `portolan
//! agent` runs.

use super::TestApp;
use chrono::{DateTime, TimeDelta, Utc};
use portolan_core::{
    clock::Clock,
    db::entity::{NodePool, node, sliver},
    liveness::{self, Liveness},
    nodes::discovery::{Discovery, Schedule, Task},
    slivers::{self, Artifact, reconcile::Reconciler},
    testbed::{Endpoint, plc},
};
use reference_testbed::{Testbed, profile::Profile, world::World};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const ADMIN: (&str, &str) = ("admin@testbed.example", "admin-password");
/// Portal (and testbed) seconds per real second.
pub const SCALE: f64 = 60.0;

/// A profile whose slivers come up within seconds of real time, with no churn but the test's.
pub fn quick(mut p: Profile) -> Profile {
    p.instantiation.median_s = 20.0;
    p.instantiation.sigma = 0.3;
    p.node_manager.create_min_s = 1.0;
    p.node_manager.create_max_s = 5.0;
    p.churn.initially_down = 0.0;
    p.churn.down_per_hour = 0.0;
    p.churn.leave_per_hour = 0.0;
    p.churn.join_per_hour = 0.0;
    p.churn.identity_change_per_hour = 0.0;
    p
}

/// [`quick`] `mild` where nothing fails by chance.
pub fn quiet() -> Profile {
    let mut p = quick(Profile::mild());
    p.instantiation.fail_probability = 0.0;
    p.node_manager.create_fail_probability = 0.0;
    p
}

pub struct Harness {
    pub tb: Arc<Testbed>,
    pub app: TestApp,
    pub clock: Clock,
    pub client: Arc<plc::Plc>,
    pub discovery: Discovery,
    pub reconciler: Reconciler,
    pub liveness: Liveness,
    _bin_dir: tempfile::TempDir,
}

/// How the portal side is set up.
pub struct Options {
    pub profile: Profile,
    pub nodes: usize,
    /// Portal seconds between heartbeats, and of silence before a sliver is down.
    pub heartbeat_s: f64,
    pub silence_s: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self { profile: quiet(), nodes: 12, heartbeat_s: 60.0, silence_s: 300.0 }
    }
}

impl Harness {
    /// The testbed and portal, before discovery's first pass (so that `sshd` nodes can be set up first).
    pub async fn new(backend: &'static str, options: Options) -> Self {
        let start = Utc::now().timestamp() as f64;
        let settings = reference_testbed::Settings {
            seed: 7,
            profile: options.profile,
            clock: reference_testbed::clock::Clock::scaled(start, SCALE),
            admins: vec![(ADMIN.0.to_owned(), ADMIN.1.to_owned())],
        };
        let tb = Testbed::with_world(settings, World::generate(options.nodes, 7));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/PLCAPI/", listener.local_addr().unwrap());
        tokio::spawn(reference_testbed::serve(tb.clone(), listener, std::future::pending()));
        reference_testbed::cli::serve_ssh_on(&tb, "0.0.0.0:0".parse().unwrap()).await.unwrap();

        let clock = Clock::scaled(DateTime::from_timestamp(start as i64, 0).unwrap(), SCALE);
        // A copy: the agent binary must not change while slivers download it (a build elsewhere may relink
        // target/debug/portolan at any moment).
        let bin_dir = tempfile::tempdir().unwrap();
        let binary = bin_dir.path().join("portolan");
        std::fs::copy(env!("CARGO_BIN_EXE_portolan"), &binary).unwrap();
        let (heartbeat_s, silence_s) = (options.heartbeat_s, options.silence_s);
        let app = TestApp::with_clock(
            backend,
            |c| {
                c.agent_binary = Some(binary.clone());
                c.heartbeat_s = heartbeat_s;
                c.silence_s = silence_s;
            },
            clock.clone(),
        )
        .await;
        let plc_settings = plc::Settings {
            request_timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(60),
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
            ..plc::Settings::default()
        };
        let endpoint = Endpoint { url, username: ADMIN.0.to_owned(), password: ADMIN.1.to_owned() };
        let client = Arc::new(plc::Plc::new(endpoint, plc_settings).unwrap());
        let discovery = Discovery::new(app.db.clone(), clock.clone(), client.clone(), Schedule::default());
        let artifact = tokio::task::spawn_blocking(move || Artifact::of(binary)).await.unwrap().unwrap();
        let secs = |s: f64| TimeDelta::milliseconds((s * 1000.0) as i64);
        let settings = Arc::new(slivers::Settings {
            agent_url: app.url("").trim_end_matches('/').to_owned(),
            artifact: Some(artifact),
            heartbeat: secs(heartbeat_s),
            silence: secs(silence_s),
            ..slivers::Settings::default()
        });
        let identity = slivers::portal_identity(&app.db, clock.now()).await.unwrap();
        let reconciler = Reconciler::new(
            app.db.clone(),
            clock.clone(),
            client.clone(),
            identity.clone(),
            settings.clone(),
        );
        let liveness = Liveness::new(
            app.db.clone(),
            clock.clone(),
            client.clone(),
            identity,
            liveness::Settings {
                service_slice: None,
                url: app.url(""),
                testbed_user: ADMIN.0.to_owned(),
                batch: 64,
                silence: settings.silence,
                ..liveness::Settings::default()
            },
        );
        Self { tb, app, clock, client, discovery, reconciler, liveness, _bin_dir: bin_dir }
    }

    /// [`Harness::new`] and discovery's first pass.
    pub async fn discovered(backend: &'static str, options: Options) -> Self {
        let h = Self::new(backend, options).await;
        h.discover().await;
        h
    }

    pub async fn discover(&self) {
        self.discovery.pass(Task::Nodes).await.unwrap();
    }

    /// Runs the liveness and bring-up loops (as `serve` does) until `done` holds, at most `limit` real time.
    pub async fn run_until(&self, what: &str, limit: Duration, mut done: impl AsyncFnMut(&Self) -> bool) {
        let started = Instant::now();
        while started.elapsed() < limit {
            self.liveness.pass().await.unwrap();
            self.reconciler.pass().await.unwrap();
            if done(self).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let slivers: Vec<String> = sliver::Entity::find()
            .all(&self.app.db)
            .await
            .unwrap()
            .into_iter()
            .map(|s| {
                format!(
                    "{} node {} {:?}/{:?} {:?} {:?}",
                    s.id, s.node_id, s.step, s.health, s.error_step, s.last_error
                )
            })
            .collect();
        panic!("{what}: not within {limit:?}; pools {:?}; slivers {slivers:#?}", self.pools().await);
    }

    pub async fn nodes(&self) -> Vec<node::Model> {
        node::Entity::find().all(&self.app.db).await.unwrap()
    }

    pub async fn pools(&self) -> Vec<(String, NodePool)> {
        self.nodes().await.into_iter().map(|n| (n.hostname, n.pool)).collect()
    }

    pub async fn node(&self, hostname: &str) -> node::Model {
        let found = node::Entity::find().filter(node::Column::Hostname.eq(hostname)).one(&self.app.db);
        found.await.unwrap().unwrap()
    }

    pub async fn service_sliver(&self, node_id: i64) -> sliver::Model {
        let found = sliver::Entity::find().filter(sliver::Column::NodeId.eq(node_id)).one(&self.app.db);
        found.await.unwrap().expect("a service sliver")
    }

    pub fn index_of(&self, hostname: &str) -> usize {
        self.tb.world.nodes.iter().position(|n| n.hostname == hostname).unwrap()
    }

    pub fn hostname(&self, index: usize) -> String {
        self.tb.world.nodes[index].hostname.clone()
    }
}

/// A key pair made by `ssh-keygen` in `dir`: (private key path, public key line).
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen runs (openssh-client)");
    assert!(status.success());
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap().trim().to_owned();
    (path, public)
}

/// A real OpenSSH server on a loopback port, serving one node: its own host key, the key file the testbed
/// writes, and a sliver home of its own (`SetEnv HOME`), where the real agent runs. Killed when dropped,
/// with the agent it started.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub addr: std::net::SocketAddr,
    pub host_key: String,
    pub authorized_keys: PathBuf,
    pub home: PathBuf,
    pub login: String,
    child: Child,
}

/// The login the test's `sshd` accepts: the user running the tests (a non-root `sshd` can log in no other).
pub fn login() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl Sshd {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (host_key_path, host_key) = keygen(dir.path(), "host_key");
        let authorized_keys = dir.path().join("authorized_keys");
        std::fs::write(&authorized_keys, "").unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let config = dir.path().join("sshd_config");
        let text = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\n\
             AuthorizedKeysFile {auth} {home}/.ssh/authorized_keys\nStrictModes no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PermitRootLogin prohibit-password\nSetEnv HOME={home}\nLogLevel VERBOSE\n",
            hk = host_key_path.display(),
            pid = dir.path().join("sshd.pid").display(),
            auth = authorized_keys.display(),
            home = home.display(),
        );
        std::fs::write(&config, text).unwrap();
        // sshd's privilege separation directory (as root); harmless when it exists.
        let _ = std::fs::create_dir_all("/run/sshd");
        let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stderr(log)
            .spawn()
            .expect("/usr/sbin/sshd runs (openssh-server)");
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not start: {}",
                Self::log_of(dir.path())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { dir, addr, host_key, authorized_keys, home, login: login(), child }
    }

    fn log_of(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
    }

    pub fn log(&self) -> String {
        Self::log_of(self.dir.path())
    }

    /// The pid of the agent running in this sliver, if one runs.
    pub fn agent_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.home.join(".portolan/agent.pid")).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    /// A `known_hosts` file pinning this server's key for `ssh` from the test.
    pub fn known_hosts(&self) -> PathBuf {
        let path = self.dir.path().join("known_hosts");
        std::fs::write(&path, format!("[127.0.0.1]:{} {}\n", self.addr.port(), self.host_key)).unwrap();
        path
    }

    /// Runs `ssh` from the test with `key`, host key checked strictly: whether `true` ran.
    pub fn ssh_with(&self, key: &Path) -> bool {
        Command::new("ssh")
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts().display()))
            .arg("-i")
            .arg(key)
            .args(["-p", &self.addr.port().to_string()])
            .arg(format!("{}@127.0.0.1", self.login))
            .arg("true")
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(pid) = self.agent_pid() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
