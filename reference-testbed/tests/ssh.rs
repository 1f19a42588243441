//! The slivers' SSH endpoints, driven by a real russh client that pins each node's published host key: which
//! node answers where, who may log in, what a simulated sliver does with bring-up's commands (and refuses),
//! the in-process agent and the sweep that stops it, and sshd-backed nodes' key files.

use axum::response::IntoResponse;
use dxr::Value;
use portolan_agent::bringup::{AgentConfig, Command};
use portolan_agent::protocol::{Account, HeartbeatReply, Manifest, Startup};
use reference_testbed::{Settings, Testbed, clock::Clock, profile::Profile, ssh, state::Sliver};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, client};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const ADMIN: (&str, &str) = ("admin@plc.test", "adminpw");
/// Every test's bound: a hang fails instead of blocking the suite.
const BOUND: Duration = Duration::from_secs(20);

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

fn st(pairs: &[(&str, Value)]) -> Value {
    Value::Struct(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
}

fn admin() -> Value {
    st(&[("AuthMethod", s("password")), ("Username", s(ADMIN.0)), ("AuthString", s(ADMIN.1))])
}

fn rows(v: &Value) -> Vec<&std::collections::BTreeMap<String, Value>> {
    match v {
        Value::Array(a) => {
            a.iter().map(|r| if let Value::Struct(m) = r { m } else { panic!("{r:?}") }).collect()
        }
        _ => panic!("not an array: {v:?}"),
    }
}

fn text(v: &Value) -> &str {
    match v {
        Value::String(t) => t,
        _ => panic!("not a string: {v:?}"),
    }
}

/// No faults, no churn, slivers ready as soon as they are bound; a small generated world.
fn profile() -> Profile {
    let mut p = Profile::mild();
    p.api.fault_probability = 0.0;
    p.churn.initially_down = 0.0;
    p.churn.down_per_hour = 0.0;
    p.churn.leave_per_hour = 0.0;
    p.churn.identity_change_per_hour = 0.0;
    p.lease.skew_probability = 0.0;
    p.instantiation.fail_probability = 0.0;
    p.instantiation.max_s = 0.0;
    p.world.nodes = 40;
    p
}

struct Bed {
    tb: Arc<Testbed>,
}

impl Bed {
    fn new(profile: Profile) -> Self {
        let settings = Settings {
            seed: 1,
            profile,
            clock: Clock::scaled(1_790_000_000.0, 1.0),
            admins: vec![(ADMIN.0.to_owned(), ADMIN.1.to_owned())],
        };
        Self { tb: Testbed::new(settings) }
    }

    /// A testbed whose SSH endpoints are served.
    async fn serving(profile: Profile) -> Self {
        let bed = Self::new(profile);
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        tokio::spawn(bed.tb.clone().serve_ssh(listener, std::future::pending()));
        // `serve_ssh` publishes its port before its first await.
        tokio::task::yield_now().await;
        bed
    }

    fn ok(&self, method: &str, params: Vec<Value>) -> Value {
        self.tb.plcapi(method, params).unwrap_or_else(|f| panic!("{method}: {f}"))
    }

    fn host(&self, node: usize) -> String {
        self.tb.world.nodes[node].hostname.clone()
    }

    /// A slice of the first site, with the given members.
    fn slice(&self, short: &str, members: &[i32]) -> String {
        let name = format!("{}_{short}", self.tb.world.sites[0].login_base);
        let fields = st(&[("name", s(&name)), ("description", s("t")), ("url", s("http://example.org"))]);
        self.ok("AddSlice", vec![admin(), fields]);
        for &person in members {
            self.add_member(&name, person);
        }
        name
    }

    fn add_member(&self, slice: &str, person: i32) {
        self.ok("AddPersonToSlice", vec![admin(), Value::Integer(person), s(slice)]);
    }

    /// An account holding `key`'s public half.
    fn person(&self, email: &str, key: &PrivateKey) -> i32 {
        let id = self.ok("AddPerson", vec![admin(), st(&[("email", s(email))])]);
        let Value::Integer(id) = id else { panic!("{id:?}") };
        let public = key.public_key().to_openssh().unwrap();
        self.ok(
            "AddPersonKey",
            vec![admin(), Value::Integer(id), st(&[("key_type", s("ssh")), ("key", s(&public))])],
        );
        id
    }

    fn bind(&self, slice: &str, nodes: &[usize]) {
        let hosts = nodes.iter().map(|&n| s(&self.host(n))).collect();
        self.ok("AddSliceToNodes", vec![admin(), s(slice), Value::Array(hosts)]);
    }

    fn unbind(&self, slice: &str, nodes: &[usize]) {
        let hosts = nodes.iter().map(|&n| s(&self.host(n))).collect();
        self.ok("DeleteSliceFromNodes", vec![admin(), s(slice), Value::Array(hosts)]);
    }

    fn slice_id(&self, name: &str) -> i32 {
        self.tb.state().slice_by_name(name).unwrap().slice_id
    }

    /// The node's `GetNodes` host key.
    fn published_key(&self, node: usize) -> String {
        let answer =
            self.ok("GetNodes", vec![admin(), s(&self.host(node)), Value::Array(vec![s("ssh_rsa_key")])]);
        text(&rows(&answer)[0]["ssh_rsa_key"]).to_owned()
    }

    /// The node's tags, as `GetNodeTags` lists them.
    fn tags(&self, node: usize) -> Vec<(String, String)> {
        let node_id = self.tb.state().nodes[node].node_id;
        let filter = st(&[("node_id", Value::Integer(node_id))]);
        let answer = self.ok("GetNodeTags", vec![admin(), filter]);
        rows(&answer).iter().map(|r| (text(&r["tagname"]).to_owned(), text(&r["value"]).to_owned())).collect()
    }

    fn tag(&self, node: usize, name: &str) -> Option<String> {
        self.tags(node).into_iter().find(|(t, _)| t == name).map(|(_, v)| v)
    }

    /// Where node `node`'s endpoint is, read from its `ssh_endpoint` tag.
    fn endpoint(&self, node: usize) -> SocketAddr {
        self.tag(node, "ssh_endpoint").expect("an ssh_endpoint tag").parse().unwrap()
    }

    /// Connects to node `node` pinning its published host key.
    async fn connect(&self, node: usize) -> Result<client::Handle<Pinned>, russh::Error> {
        connect_pinned(self.endpoint(node), &self.published_key(node)).await
    }

    /// Connects to node `node` and logs in as `user` with `key`.
    async fn login(&self, node: usize, user: &str, key: &PrivateKey) -> client::Handle<Pinned> {
        let mut handle = self.connect(node).await.expect("connects");
        assert!(authenticate(&mut handle, user, key).await, "{user} logs in on node {node}");
        handle
    }
}

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
}

/// A client that accepts only the host key it was told.
struct Pinned {
    expected: PublicKey,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(
            matches!(key, PublicKeyOrCertificate::PublicKey { key, .. } if key.key_data() == self.expected.key_data()),
        )
    }
}

async fn connect_pinned(addr: SocketAddr, host_key: &str) -> Result<client::Handle<Pinned>, russh::Error> {
    let expected = PublicKey::from_openssh(host_key).unwrap();
    let config = Arc::new(client::Config { inactivity_timeout: Some(BOUND), ..Default::default() });
    client::connect(config, addr, Pinned { expected }).await
}

async fn authenticate(handle: &mut client::Handle<Pinned>, user: &str, key: &PrivateKey) -> bool {
    let key = PrivateKeyWithHashAlg::new(Arc::new(key.clone()), None);
    handle.authenticate_publickey(user, key).await.unwrap().success()
}

/// What one exec answered.
#[derive(Debug)]
struct Answer {
    status: Option<u32>,
    stdout: String,
    stderr: String,
}

/// Runs `command` with `stdin` (then EOF) on a fresh channel.
async fn exec(handle: &client::Handle<Pinned>, command: &str, stdin: &[u8]) -> Answer {
    let mut channel = handle.channel_open_session().await.unwrap();
    channel.exec(true, command).await.unwrap();
    if !stdin.is_empty() {
        channel.data(stdin).await.unwrap();
    }
    channel.eof().await.unwrap();
    read_answer(&mut channel).await
}

async fn read_answer(channel: &mut russh::Channel<client::Msg>) -> Answer {
    let mut answer = Answer { status: None, stdout: String::new(), stderr: String::new() };
    while let Some(message) = channel.wait().await {
        match message {
            ChannelMsg::Data { data } => answer.stdout.push_str(&String::from_utf8_lossy(&data)),
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                answer.stderr.push_str(&String::from_utf8_lossy(&data))
            }
            ChannelMsg::ExitStatus { exit_status } => answer.status = Some(exit_status),
            _ => {}
        }
    }
    answer
}

async fn within<T>(work: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, work).await.expect("finished in time")
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[test]
fn derived_host_keys_are_the_published_ones() {
    let world = reference_testbed::world::World::generate(50, 7);
    let mut seen = std::collections::HashSet::new();
    for node in world.nodes.iter().step_by(7) {
        let private = ssh::host_private_key(node);
        let published = PublicKey::from_openssh(&node.host_key).unwrap();
        assert_eq!(private.public_key().key_data(), published.key_data(), "{}", node.hostname);
        assert_eq!(private.public_key().to_openssh().unwrap(), node.host_key);
        assert!(seen.insert(node.host_key.clone()), "every node has its own key");
    }
    assert!(seen.len() >= 7);
}

#[tokio::test]
async fn each_node_answers_at_its_address_with_its_published_key() {
    within(async {
        let idle = Bed::new(profile());
        assert_eq!(idle.tag(0, "ssh_endpoint"), None, "no listener, no tag (the real-PLC case)");

        let bed = Bed::serving(profile()).await;
        let (a, b) = (bed.endpoint(0), bed.endpoint(1));
        assert_eq!(a.ip().to_string(), "127.64.0.1");
        assert_eq!(b.ip().to_string(), "127.64.0.2");
        assert_eq!(a.port(), b.port());
        assert_eq!(bed.tb.ssh_endpoint(1), Some(b));
        let (key_a, key_b) = (bed.published_key(0), bed.published_key(1));
        assert_ne!(key_a, key_b);

        connect_pinned(a, &key_a).await.expect("node 0 presents node 0's key");
        connect_pinned(b, &key_b).await.expect("node 1 presents node 1's key");
        assert!(connect_pinned(b, &key_a).await.is_err(), "node 1 does not present node 0's key");
        assert!(connect_pinned(a, &key_b).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn only_members_of_a_slice_with_a_ready_sliver_there_log_in() {
    within(async {
        let bed = Bed::serving(profile()).await;
        let (alice_key, bob_key) = (key(1), key(2));
        let alice = bed.person("alice@x.test", &alice_key);
        let bob = bed.person("bob@x.test", &bob_key);
        let slice = bed.slice("exp", &[alice]);
        let other = bed.slice("other", &[bob]);
        bed.bind(&other, &[0]);

        let mut handle = bed.connect(0).await.unwrap();
        assert!(!authenticate(&mut handle, &slice, &alice_key).await, "no sliver yet");
        bed.bind(&slice, &[0]);
        assert!(!authenticate(&mut handle, &slice, &bob_key).await, "a key of another slice's member");
        assert!(!authenticate(&mut handle, "nobody_here", &alice_key).await, "an unknown user");
        assert!(!handle.authenticate_password(&slice, ADMIN.1).await.unwrap().success(), "a password");
        assert!(!authenticate(&mut handle, &other, &alice_key).await, "alice is not in the other slice");
        assert!(authenticate(&mut handle, &slice, &alice_key).await, "a member, with a ready sliver");

        let mut elsewhere = bed.connect(1).await.unwrap();
        assert!(!authenticate(&mut elsewhere, &slice, &alice_key).await, "no sliver on node 1");

        // Bound, but not up yet.
        let id = bed.slice_id(&slice);
        let later = bed.tb.now() + 3600.0;
        bed.tb.state().slivers.insert((id, 2), Sliver { ready_at: Some(later), running: true });
        let mut not_yet = bed.connect(2).await.unwrap();
        assert!(!authenticate(&mut not_yet, &slice, &alice_key).await, "the sliver is not ready");
    })
    .await;
}

#[tokio::test]
async fn nothing_but_bring_up_commands_runs() {
    within(async {
        let bed = Bed::serving(profile()).await;
        let alice_key = key(1);
        let slice = bed.slice("exp", &[bed.person("alice@x.test", &alice_key)]);
        bed.bind(&slice, &[0]);
        let handle = bed.login(0, &slice, &alice_key).await;

        let marker = std::env::temp_dir().join(format!("portolan-ssh-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        for command in [
            "rm -rf /".to_owned(),
            format!("touch {}", marker.display()),
            format!("{}; touch {}", Command::Probe.to_shell(), marker.display()),
            format!(" {}", Command::Probe.to_shell()),
        ] {
            let answer = exec(&handle, &command, b"").await;
            assert_eq!(answer.status, Some(127), "{command}: {answer:?}");
            assert_eq!(answer.stderr.trim(), ssh::NOT_SUPPORTED);
            assert!(answer.stdout.is_empty());
        }
        assert!(!marker.exists(), "no command ran on the host");

        let mut channel = handle.channel_open_session().await.unwrap();
        channel.request_shell(true).await.unwrap();
        let shell = read_answer(&mut channel).await;
        assert_eq!(shell.status, Some(1), "{shell:?}");
        assert!(shell.stderr.contains("no shell"), "{shell:?}");

        let probe = exec(&handle, &Command::Probe.to_shell(), b"").await;
        assert_eq!((probe.status, probe.stdout.as_str()), (Some(0), ""), "nothing was installed");
    })
    .await;
}

#[tokio::test]
async fn install_keeps_only_a_binary_whose_streamed_checksum_matches() {
    within(async {
        let bed = Bed::serving(profile()).await;
        let alice_key = key(1);
        let slice = bed.slice("exp", &[bed.person("alice@x.test", &alice_key)]);
        bed.bind(&slice, &[0]);
        let handle = bed.login(0, &slice, &alice_key).await;
        let probe = async || exec(&handle, &Command::Probe.to_shell(), b"").await;

        assert_eq!(probe().await.stdout, "");
        // Larger than the channel window, so it streams in many packets.
        let binary: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let sha = sha256(&binary);
        let install = Command::Install { sha256: sha.clone() }.to_shell();

        let wrong = exec(&handle, &install, &binary[..binary.len() - 1]).await;
        assert_ne!(wrong.status, Some(0), "{wrong:?}");
        assert_eq!(probe().await.stdout, "", "a binary that does not match is not installed");

        let right = exec(&handle, &install, &binary).await;
        assert_eq!(right.status, Some(0), "{right:?}");
        assert_eq!(probe().await.stdout, format!("{sha}\n"));

        let other = Command::Install { sha256: sha256(b"other") }.to_shell();
        assert_ne!(exec(&handle, &other, b"not other").await.status, Some(0));
        assert_eq!(probe().await.stdout, format!("{sha}\n"), "a failed install keeps the installed binary");
    })
    .await;
}

#[tokio::test]
async fn configure_keeps_only_an_agent_configuration() {
    within(async {
        let bed = Bed::serving(profile()).await;
        let alice_key = key(1);
        let slice = bed.slice("exp", &[bed.person("alice@x.test", &alice_key)]);
        bed.bind(&slice, &[0]);
        let handle = bed.login(0, &slice, &alice_key).await;
        let configure = Command::Configure.to_shell();

        for bad in [&b"{not json"[..], b"{\"portal\": 1}", &vec![b' '; 100_000]] {
            let answer = exec(&handle, &configure, bad).await;
            assert_eq!(answer.status, Some(1), "{answer:?}");
        }
        let start = exec(&handle, &Command::Start.to_shell(), b"").await;
        assert_eq!(start.status, Some(1), "nothing installed or configured: {start:?}");
        let config = AgentConfig {
            portal: "http://127.0.0.1:9".to_owned(),
            credential: format!("pslv_1_{}", "a".repeat(64)),
            slice: slice.clone(),
            node: bed.host(0),
        };
        let good = exec(&handle, &configure, &serde_json::to_vec(&config).unwrap()).await;
        assert_eq!(good.status, Some(0), "{good:?}");
    })
    .await;
}

#[tokio::test]
async fn down_nodes_and_addresses_that_are_no_node_refuse_connections() {
    within(async {
        let bed = Bed::serving(profile()).await;
        let port = bed.endpoint(0).port();
        bed.connect(3).await.expect("node 3 is up");
        bed.tb.state().node_mut(3).up = false;
        assert!(bed.connect(3).await.is_err(), "a down node does not answer");
        bed.tb.state().node_mut(3).up = true;
        bed.connect(3).await.expect("node 3 answers again");

        let beyond = ssh::node_address(bed.tb.world.nodes.len()).unwrap();
        let key = bed.published_key(0);
        assert!(connect_pinned(SocketAddr::new(beyond.into(), port), &key).await.is_err(), "no such node");
        let localhost = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(connect_pinned(localhost, &key).await.is_err(), "not a node's address");
    })
    .await;
}

#[tokio::test]
async fn the_profile_makes_commands_slow_and_unreliable() {
    within(async {
        let mut slow = profile();
        slow.ssh.exec_delay_s = 0.1;
        let bed = Bed::serving(slow).await;
        let alice_key = key(1);
        let slice = bed.slice("exp", &[bed.person("alice@x.test", &alice_key)]);
        bed.bind(&slice, &[0]);
        let handle = bed.login(0, &slice, &alice_key).await;
        let started = std::time::Instant::now();
        assert_eq!(exec(&handle, &Command::Probe.to_shell(), b"").await.status, Some(0));
        assert!(started.elapsed() >= Duration::from_millis(100), "{:?}", started.elapsed());

        let mut failing = profile();
        failing.ssh.exec_fail_probability = 1.0;
        let bed = Bed::serving(failing).await;
        let slice = bed.slice("exp", &[bed.person("alice@x.test", &alice_key)]);
        bed.bind(&slice, &[0]);
        let handle = bed.login(0, &slice, &alice_key).await;
        let answer = exec(&handle, &Command::Probe.to_shell(), b"").await;
        assert_eq!(answer.status, Some(255), "{answer:?}");
        assert_eq!(answer.stderr.trim(), "simulated failure");
    })
    .await;
}

/// What the stand-in portal saw.
#[derive(Debug)]
enum Seen {
    Manifest { authorization: String },
    Heartbeat(serde_json::Value),
}

/// A stand-in portal: serves `manifest`, answers heartbeats, reports each request.
async fn portal(manifest: Manifest) -> (String, mpsc::UnboundedReceiver<Seen>) {
    use axum::{Json, http::HeaderMap, routing::get, routing::post};
    let (tx, rx) = mpsc::unbounded_channel();
    let version = manifest.version.clone();
    let (on_manifest, on_beat) = (tx.clone(), tx);
    let app = axum::Router::new()
        .route(
            "/agent/v1/manifest",
            get(move |headers: HeaderMap| {
                let authorization =
                    headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let _ = on_manifest.send(Seen::Manifest { authorization });
                let manifest = manifest.clone();
                async move { Json(manifest) }
            }),
        )
        .route(
            "/agent/v1/heartbeat",
            post(move |Json(beat): Json<serde_json::Value>| {
                let _ = on_beat.send(Seen::Heartbeat(beat));
                let reply = HeartbeatReply { manifest_version: version.clone(), heartbeat_s: 60 };
                async move { Json(reply) }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

#[tokio::test]
async fn start_runs_the_agent_in_process_until_its_sliver_goes() {
    within(async {
        let bed = Bed::serving(profile()).await;
        let (alice_key, carol_key) = (key(1), key(3));
        let slice = bed.slice("exp", &[bed.person("alice@x.test", &alice_key)]);
        bed.bind(&slice, &[0]);
        let manifest = Manifest {
            version: "v1".to_owned(),
            slice: slice.clone(),
            node: bed.host(0),
            accounts: vec![Account {
                name: "carol".to_owned(),
                keys: vec![carol_key.public_key().to_openssh().unwrap()],
            }],
            software: Vec::new(),
            startup: Some(Startup { command: "rm -rf ~".to_owned() }),
            heartbeat_s: 60,
        };
        let (url, mut seen) = portal(manifest).await;
        let handle = bed.login(0, &slice, &alice_key).await;
        let binary = b"not really portolan";
        let install = Command::Install { sha256: sha256(binary) }.to_shell();
        assert_eq!(exec(&handle, &install, binary).await.status, Some(0));
        let credential = format!("pslv_7_{}", "b".repeat(64));
        let config = AgentConfig {
            portal: url,
            credential: credential.clone(),
            slice: slice.clone(),
            node: bed.host(0),
        };
        let configure =
            exec(&handle, &Command::Configure.to_shell(), &serde_json::to_vec(&config).unwrap()).await;
        assert_eq!(configure.status, Some(0), "{configure:?}");

        let mut fresh = bed.connect(0).await.unwrap();
        assert!(!authenticate(&mut fresh, &slice, &carol_key).await, "carol's key is not the sliver's yet");

        let start = exec(&handle, &Command::Start.to_shell(), b"").await;
        assert_eq!(start.status, Some(0), "{start:?}");
        match seen.recv().await.unwrap() {
            Seen::Manifest { authorization } => assert_eq!(authorization, format!("Bearer {credential}")),
            other => panic!("the agent's first request is for its manifest, not {other:?}"),
        }
        let beat = loop {
            if let Seen::Heartbeat(beat) = seen.recv().await.unwrap() {
                break beat;
            }
        };
        assert_eq!(beat["manifest_version"], "v1", "{beat}");
        assert_eq!(beat["startup"]["output_tail"], reference_testbed::sliver::STARTUP_NOT_RUN, "{beat}");
        assert!(beat["metrics"]["load1"].is_number(), "{beat}");
        let key = (bed.slice_id(&slice), 0);
        assert_eq!(bed.tb.simulated_slivers().startup(key).as_deref(), Some("rm -rf ~"), "recorded, not run");
        assert_eq!(bed.tb.simulated_slivers().running_agents(), 1);
        assert!(authenticate(&mut fresh, &slice, &carol_key).await, "the manifest's keys reach the sliver");

        // Started again: the running agent is replaced, not doubled.
        assert_eq!(exec(&handle, &Command::Start.to_shell(), b"").await.status, Some(0));
        assert_eq!(bed.tb.simulated_slivers().running_agents(), 1);

        bed.unbind(&slice, &[0]);
        bed.tb.sweep_slivers();
        assert_eq!(bed.tb.simulated_slivers().running_agents(), 0, "the agent goes down with its sliver");
        assert_eq!(bed.tb.simulated_slivers().installed(key), None, "and so does what was installed");
        let mut later = bed.connect(0).await.unwrap();
        assert!(!authenticate(&mut later, &slice, &carol_key).await);
    })
    .await;
}

/// A stand-in for the portal's binary download: `/agent/v1/portolan/<sha>` serves only `known` (announcing
/// its checksum), `/liar/<anything>` announces `known` whatever the path says.
async fn downloads(known: String) -> String {
    use axum::{extract::Path, http::StatusCode, routing::get};
    let (a, b) = (known.clone(), known);
    let app = axum::Router::new()
        .route(
            "/agent/v1/portolan/{sha}",
            get(move |Path(sha): Path<String>| {
                let known = a.clone();
                async move {
                    if sha == known {
                        (StatusCode::OK, [("x-content-sha256", known)]).into_response()
                    } else {
                        StatusCode::NOT_FOUND.into_response()
                    }
                }
            }),
        )
        .route(
            "/liar/{sha}",
            get(move || {
                let known = b.clone();
                async move { (StatusCode::OK, [("x-content-sha256", known)]).into_response() }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn fetch_installs_what_the_portal_announces_without_downloading() {
    within(async {
        let bed = Bed::serving(profile()).await;
        let alice_key = key(1);
        let slice = bed.slice("exp", &[bed.person("alice@x.test", &alice_key)]);
        bed.bind(&slice, &[0]);
        let handle = bed.login(0, &slice, &alice_key).await;
        let (known, other) = (sha256(b"the agent"), sha256(b"something else"));
        let portal = downloads(known.clone()).await;
        let fetch = |sha: &str, path: &str| {
            Command::Fetch { sha256: sha.to_owned(), url: format!("{portal}{path}{sha}") }.to_shell()
        };
        let probe = async || exec(&handle, &Command::Probe.to_shell(), b"").await.stdout;

        let missing = exec(&handle, &fetch(&other, "/agent/v1/portolan/"), b"").await;
        assert_eq!(missing.status, Some(1), "the portal has no such binary: {missing:?}");
        let lied = exec(&handle, &fetch(&other, "/liar/"), b"").await;
        assert_eq!(lied.status, Some(1), "the portal announces another checksum: {lied:?}");
        assert_eq!(probe().await, "");

        let fetched = exec(&handle, &fetch(&known, "/agent/v1/portolan/"), b"").await;
        assert_eq!(fetched.status, Some(0), "{fetched:?}");
        assert_eq!(probe().await, format!("{known}\n"));
    })
    .await;
}

#[tokio::test]
async fn stop_stops_the_agent() {
    within(async {
        let bed = Bed::serving(profile()).await;
        let alice_key = key(1);
        let slice = bed.slice("exp", &[bed.person("alice@x.test", &alice_key)]);
        bed.bind(&slice, &[0]);
        let handle = bed.login(0, &slice, &alice_key).await;
        assert_eq!(
            exec(&handle, &Command::Install { sha256: sha256(b"x") }.to_shell(), b"x").await.status,
            Some(0)
        );
        let config = AgentConfig {
            portal: "http://127.0.0.1:9".to_owned(),
            credential: format!("pslv_1_{}", "a".repeat(64)),
            slice: slice.clone(),
            node: bed.host(0),
        };
        let json = serde_json::to_vec(&config).unwrap();
        assert_eq!(exec(&handle, &Command::Configure.to_shell(), &json).await.status, Some(0));
        assert_eq!(exec(&handle, &Command::Start.to_shell(), b"").await.status, Some(0));
        assert_eq!(bed.tb.simulated_slivers().running_agents(), 1);
        assert_eq!(exec(&handle, &Command::Stop.to_shell(), b"").await.status, Some(0));
        assert_eq!(bed.tb.simulated_slivers().running_agents(), 0);
    })
    .await;
}

#[tokio::test]
async fn sshd_backed_nodes_publish_their_sshd_and_get_their_key_file() {
    use std::os::unix::fs::PermissionsExt;
    within(async {
        let bed = Bed::serving(profile()).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("authorized_keys");
        let sshd_key = key(9).public_key().to_openssh().unwrap();
        let sshd: SocketAddr = "127.0.0.1:2222".parse().unwrap();
        let (alice_key, dave_key, eve_key) = (key(1), key(4), key(5));
        let line = |k: &PrivateKey| k.public_key().to_openssh().unwrap();
        let (alice, dave) = (bed.person("alice@x.test", &alice_key), bed.person("dave@x.test", &dave_key));
        bed.person("eve@x.test", &eve_key);
        let slice = bed.slice("exp", &[alice]);
        bed.bind(&slice, &[3]);

        let direct = bed.connect(3).await.expect("simulated until handed over");
        drop(direct);
        bed.tb.back_with_sshd(&bed.host(3), &sshd_key, sshd, Some("tester"), file.clone()).unwrap();
        assert_eq!(bed.published_key(3), sshd_key);
        assert_eq!(bed.tag(3, "ssh_endpoint").as_deref(), Some("127.0.0.1:2222"));
        assert_eq!(bed.tag(3, "ssh_login").as_deref(), Some("tester"));
        assert_eq!(bed.tag(4, "ssh_login"), None);
        let simulated = SocketAddr::new(ssh::node_address(3).unwrap().into(), bed.endpoint(0).port());
        assert!(
            connect_pinned(simulated, &bed.tb.world.nodes[3].host_key).await.is_err(),
            "no longer simulated"
        );

        let read = || std::fs::read_to_string(&file).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(read().contains(&line(&alice_key)), "{}", read());
        assert!(!read().contains(&line(&dave_key)));

        bed.add_member(&slice, dave);
        bed.tb.sweep_slivers();
        assert!(read().contains(&line(&dave_key)), "a member added is written: {}", read());
        assert!(read().contains(&line(&alice_key)));
        assert!(!read().contains(&line(&eve_key)), "only members' keys");

        bed.unbind(&slice, &[3]);
        bed.tb.sweep_slivers();
        assert!(!read().contains("ssh-ed25519"), "no sliver, no keys: {}", read());
        assert!(
            !dir.path().read_dir().unwrap().any(|e| e.unwrap().file_name() != "authorized_keys"),
            "no temporaries"
        );

        let bad = bed.tb.back_with_sshd("no.such.node", &sshd_key, sshd, None, file.clone());
        assert!(bad.unwrap_err().contains("no.such.node"));
        let bad = bed.tb.back_with_sshd(&bed.host(5), "not a key", sshd, None, file);
        assert!(bad.is_err());
    })
    .await;
}

#[test]
fn sshd_nodes_parse_from_the_command_line() {
    use reference_testbed::cli::parse_sshd_node;
    let node =
        parse_sshd_node("pl1.example.edu,addr=127.0.0.1:2222,host-key=/k.pub,authorized-keys=/ak,login=me")
            .unwrap();
    assert_eq!(node.hostname, "pl1.example.edu");
    assert_eq!(node.addr, "127.0.0.1:2222".parse().unwrap());
    assert_eq!(node.login.as_deref(), Some("me"));
    assert!(
        parse_sshd_node("pl1,addr=127.0.0.1:2222,host-key=/k.pub").unwrap_err().contains("authorized-keys")
    );
    assert!(parse_sshd_node("pl1,addr=nowhere,host-key=/k,authorized-keys=/a").unwrap_err().contains("addr"));
    assert!(parse_sshd_node("pl1,colour=blue").unwrap_err().contains("colour"));
}
