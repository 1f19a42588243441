//! Every sliver's SSH endpoint. A sliver is reached over SSH as its slice's login, with the node's host key
//! pinned to the one the testbed publishes (`GetNodes`' `ssh_rsa_key`); bring-up runs its few commands
//! ([`portolan_agent::bringup::Command`]) there. On most nodes the sliver is simulated ([`crate::sliver`]);
//! tests may back some nodes with a real OpenSSH `sshd` ([`Testbed::back_with_sshd`]).
//!
//! **One listener, one address per node (loopback mode).** The testbed cannot own an address per node on the
//! Internet, but the whole of 127.0.0.0/8 is local on Linux. Node `i` (its world index, which never changes:
//! hostnames, IPs and node ids may) answers at **127.64.0.0 + i + 1** — node 0 at 127.64.0.1, node 255 at
//! 127.64.1.0, node 100 000 at 127.65.134.161 — all on one port. One socket bound to `0.0.0.0:<port>` takes
//! every connection; the address the client dialled (the socket's *local* address) says which node it wants.
//! A connection to an address that is no node, or not loopback, is closed at once; so is one to a node that
//! is not present or not up, as a machine that is down would not answer; the handshake presents that node's
//! host key, derived from the world's `host_key_seed` ([`host_private_key`]).
//!
//! **Where a client connects.** While the listener runs, `GetNodeTags` lists a tag `ssh_endpoint` =
//! `127.64.x.y:port` for every node. A node backed by `sshd` has `ssh_endpoint` = that `sshd`'s address, and,
//! when the `sshd` only accepts one Unix user (a non-root `sshd` can log in only its own), `ssh_login` = that
//! user. A client reads both: a missing `ssh_endpoint` means the real-PLC case, `<hostname>:22`; a missing
//! `ssh_login` means the login is the slice's name.
//!
//! **Who may log in.** The user name is a slice's name and the only method is public-key: the keys accepted
//! are those of the slice's members (`AddPersonToSlice`, `AddPersonKey`) and those the sliver's own agent was
//! given by its manifest, and only while that slice has a *ready* sliver on this node. Passwords, unknown
//! users and keys of other slices are refused.
//!
//! **sshd-backed nodes.** [`Testbed::back_with_sshd`] hands a node to a real `sshd`: the node then publishes
//! that `sshd`'s host key and address, the simulated endpoint refuses it, and the testbed keeps the `sshd`'s
//! `AuthorizedKeysFile` (mode 600, replaced atomically) holding the keys of the members of every slice with a
//! ready sliver on the node. Since that `sshd` logs in one Unix user for all slices, any such member may log
//! in there: a test's shortcut, not a security boundary.
//!
//! **Bounds.** At most [`MAX_SESSIONS`] connections are served at once (more wait in the kernel's backlog),
//! each with at most [`MAX_CHANNELS`] channels; idle connections are dropped after [`INACTIVITY`]; uploads
//! are hashed as they stream ([`crate::sliver::Upload`]). A sweep every [`SWEEP_INTERVAL`] of real time
//! ([`Testbed::sweep_slivers`]) forgets simulated slivers that went away (stopping their agents) and
//! rewrites `sshd`s' key files that changed.

use crate::sliver::{self, Outcome, SliverKey, Slivers, Stdin, Upload};
use crate::{Testbed, state::State, world::Node};
use portolan_agent::bringup::Command;
use russh::keys::{PrivateKey, PublicKey, ssh_key::private::Ed25519Keypair};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, MethodKind, MethodSet};
use std::collections::{BTreeSet, HashMap};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The address before node 0's: node `i` answers at `NODE_BASE + i + 1`.
pub const NODE_BASE: Ipv4Addr = Ipv4Addr::new(127, 64, 0, 0);
/// SSH connections served at once.
pub const MAX_SESSIONS: usize = 256;
/// Channels open at once on one connection.
pub const MAX_CHANNELS: usize = 16;
/// An idle connection is dropped after this long (real time).
pub const INACTIVITY: Duration = Duration::from_secs(120);
/// How often (real time) dead slivers are swept and `sshd` key files brought up to date.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// How long a refused authentication takes, whatever was refused (so refusals tell nothing by their time).
const AUTH_REJECTION: Duration = Duration::from_millis(50);

/// What anything but an exec of a bring-up command gets.
pub const NOT_SUPPORTED: &str = "simulated sliver: command not supported";
/// What a shell request gets.
pub const NO_SHELL: &str = "simulated sliver: no shell or terminal here, only the bring-up commands (exec) of portolan_agent::bringup";

/// Node `index`'s loopback address (see the module documentation), if the index fits 127.0.0.0/8.
pub fn node_address(index: usize) -> Option<Ipv4Addr> {
    let offset = u32::try_from(index).ok()?.checked_add(1)?;
    let ip = u32::from(NODE_BASE).checked_add(offset)?;
    (ip < u32::from(Ipv4Addr::new(127, 255, 255, 255))).then(|| Ipv4Addr::from(ip))
}

/// The node index whose loopback address is `ip`, if it is one.
pub fn node_of_address(ip: Ipv4Addr) -> Option<usize> {
    let offset = u32::from(ip).checked_sub(u32::from(NODE_BASE))?.checked_sub(1)?;
    let index = usize::try_from(offset).ok()?;
    (node_address(index) == Some(ip)).then_some(index)
}

/// The private half of `node`'s host key, derived from its seed as the world derives the public half.
pub fn host_private_key(node: &Node) -> PrivateKey {
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&node.host_key_seed));
    key.set_comment(format!("root@{}", node.hostname));
    key
}

/// A node handed to a real `sshd`.
#[derive(Debug, Clone)]
struct Sshd {
    authorized_keys: PathBuf,
    /// What was last written there (`None`: nothing yet).
    written: Option<String>,
}

/// What a node backed by `sshd` publishes.
#[derive(Debug, Clone)]
struct SshdPublic {
    host_key: String,
    endpoint: SocketAddr,
    login: Option<String>,
}

/// The testbed's SSH side: the listener's port, the sshd-backed nodes, the simulated slivers.
pub struct Endpoints {
    /// The listener's port; 0 while none runs.
    port: AtomicU16,
    sessions: Arc<Semaphore>,
    sshd: Mutex<HashMap<usize, Sshd>>,
    /// Replaced, never changed in place: readers take a copy of the `Arc`.
    sshd_public: Mutex<Arc<HashMap<usize, SshdPublic>>>,
    pub(crate) slivers: Slivers,
    /// One HTTP client for every in-process agent.
    client: OnceLock<reqwest::Client>,
    sweeper: AtomicBool,
    /// Serialises sweeps (two would race on a key file's temporary).
    sweep: Mutex<()>,
}

impl Default for Endpoints {
    fn default() -> Self {
        Self {
            port: AtomicU16::new(0),
            sessions: Arc::new(Semaphore::new(MAX_SESSIONS)),
            sshd: Mutex::default(),
            sshd_public: Mutex::default(),
            slivers: Slivers::default(),
            client: OnceLock::new(),
            sweeper: AtomicBool::new(false),
            sweep: Mutex::new(()),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What `GetNodes` and `GetNodeTags` publish about SSH, taken once per call.
pub(crate) struct Published {
    port: Option<u16>,
    sshd: Arc<HashMap<usize, SshdPublic>>,
}

impl Published {
    /// Node `node`'s host key: its `sshd`'s, or the world's.
    pub(crate) fn host_key<'a>(&'a self, node: usize, world_key: &'a str) -> &'a str {
        self.sshd.get(&node).map_or(world_key, |s| s.host_key.as_str())
    }

    /// The SSH tags of node `node` (see the module documentation).
    pub(crate) fn tags(&self, node: usize) -> Vec<(&'static str, String)> {
        match (self.sshd.get(&node), self.port) {
            (Some(sshd), _) => {
                let mut tags = vec![("ssh_endpoint", sshd.endpoint.to_string())];
                tags.extend(sshd.login.clone().map(|login| ("ssh_login", login)));
                tags
            }
            (None, Some(port)) => {
                node_address(node).map(|ip| ("ssh_endpoint", format!("{ip}:{port}"))).into_iter().collect()
            }
            (None, None) => Vec::new(),
        }
    }
}

impl Endpoints {
    pub(crate) fn published(&self) -> Published {
        let port = self.port.load(Ordering::SeqCst);
        Published { port: (port != 0).then_some(port), sshd: lock(&self.sshd_public).clone() }
    }

    pub(crate) fn is_sshd_backed(&self, node: usize) -> bool {
        lock(&self.sshd_public).contains_key(&node)
    }

    pub(crate) fn agent_client(&self) -> reqwest::Client {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .build()
                    .unwrap_or_default()
            })
            .clone()
    }
}

impl Testbed {
    /// Serves every simulated sliver's SSH endpoint on `listener` until `shutdown` completes. Bind it to
    /// `0.0.0.0:<port>` (a socket bound to 127.0.0.1 does not take connections to the other loopback
    /// addresses). While it runs, `GetNodeTags` publishes each node's `ssh_endpoint`.
    pub async fn serve_ssh(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        self.ssh.port.store(listener.local_addr()?.port(), Ordering::SeqCst);
        self.start_sweeper();
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                () = &mut shutdown => break,
                permit = self.ssh.sessions.clone().acquire_owned() => permit.expect("never closed"),
            };
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => drop(tokio::spawn(self.clone().serve_connection(stream, permit))),
                Err(e) => {
                    // Out of file descriptors and the like: pass, rather than spin or stop.
                    tracing::warn!("reference testbed: cannot accept an SSH connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        self.ssh.port.store(0, Ordering::SeqCst);
        Ok(())
    }

    /// Where node `node`'s sliver endpoint answers: its `sshd`, or its loopback address on the listener's
    /// port; `None` when neither (a client then uses `<hostname>:22`).
    pub fn ssh_endpoint(&self, node: usize) -> Option<SocketAddr> {
        self.ssh.published().tags(node).into_iter().find(|(tag, _)| *tag == "ssh_endpoint")?.1.parse().ok()
    }

    /// The simulated slivers, for tests and operators to look into.
    pub fn simulated_slivers(&self) -> &Slivers {
        &self.ssh.slivers
    }

    async fn serve_connection(self: Arc<Self>, stream: TcpStream, _permit: OwnedSemaphorePermit) {
        let Some(node) = stream.local_addr().ok().and_then(|a| dialled_node(a.ip())) else { return };
        if node >= self.world.nodes.len() || !self.answers_ssh(node) {
            return;
        }
        // Bring-up's exchanges are small: do not let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let session =
            match russh::server::run_stream(self.ssh_config(node), stream, Connection::new(self, node)).await
            {
                Ok(session) => session,
                Err(e) => return tracing::debug!(node, "SSH handshake failed: {e}"),
            };
        if let Err(e) = session.await {
            tracing::debug!(node, "SSH session ended: {e}");
        }
    }

    /// Whether node `node`'s simulated endpoint answers now: present, up, not handed to an `sshd`.
    fn answers_ssh(&self, node: usize) -> bool {
        if self.ssh.is_sshd_backed(node) {
            return false;
        }
        let state = self.state();
        let n = &state.nodes[node];
        n.present && n.up
    }

    fn ssh_config(&self, node: usize) -> Arc<russh::server::Config> {
        let mut methods = MethodSet::empty();
        methods.push(MethodKind::PublicKey);
        Arc::new(russh::server::Config {
            methods,
            keys: vec![host_private_key(&self.world.nodes[node])],
            auth_rejection_time: AUTH_REJECTION,
            auth_rejection_time_initial: Some(Duration::ZERO),
            inactivity_timeout: Some(INACTIVITY),
            max_auth_attempts: 6,
            ..Default::default()
        })
    }

    /// The slice `user` logs in to on `node` with `key`, if it may (see the module documentation).
    fn ssh_login(&self, node: usize, user: &str, key: &PublicKey) -> Option<i32> {
        let (slice, born, members) = {
            let state = self.state();
            let slice = state.slice_by_name(user)?.slice_id;
            if !state.sliver_ready(slice, node, self.now()) {
                return None;
            }
            let born = state.slivers.get(&(slice, node))?.ready_at?;
            (slice, born, state.member_keys(slice).into_iter().map(str::to_owned).collect::<Vec<_>>())
        };
        let same = |k: &PublicKey| k.key_data() == key.key_data();
        let member = members.iter().filter_map(|text| PublicKey::from_openssh(text).ok()).any(|k| same(&k));
        (member || self.ssh.slivers.extra_keys((slice, node), born).iter().any(same)).then_some(slice)
    }

    /// Hands node `hostname` to a real `sshd` at `endpoint` whose host key is `host_key` (an OpenSSH public
    /// line) and whose `AuthorizedKeysFile` is `authorized_keys`; `login`: the one Unix user it accepts, if
    /// not the slice's name (published as the tag `ssh_login`). From now on the node publishes that key and
    /// address, and the testbed keeps the file holding the keys of the members of every slice with a ready
    /// sliver there (written now, rewritten by each sweep that finds the set changed).
    pub fn back_with_sshd(
        self: &Arc<Self>,
        hostname: &str,
        host_key: &str,
        endpoint: SocketAddr,
        login: Option<&str>,
        authorized_keys: PathBuf,
    ) -> Result<(), String> {
        let host_key = host_key.trim();
        PublicKey::from_openssh(host_key)
            .map_err(|e| format!("the host key given for {hostname} is not an OpenSSH public key ({e})"))?;
        if let Some(login) =
            login.filter(|l| l.is_empty() || l.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(format!("{login:?} is not a Unix login"));
        }
        let node =
            self.state().by_host.get(hostname).copied().ok_or_else(|| format!("no node {hostname}"))?;
        lock(&self.ssh.sshd).insert(node, Sshd { authorized_keys, written: None });
        {
            let mut public = lock(&self.ssh.sshd_public);
            let mut next = HashMap::clone(&public);
            let login = login.map(str::to_owned);
            next.insert(node, SshdPublic { host_key: host_key.to_owned(), endpoint, login });
            *public = Arc::new(next);
        }
        let errors = self.sweep();
        self.start_sweeper();
        match errors.into_iter().find(|(n, _)| *n == node) {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Forgets the simulated slivers that went away (stopping their in-process agents) and brings every
    /// `sshd`'s key file up to date. Runs every [`SWEEP_INTERVAL`] once SSH is in use; tests may call it to
    /// be sure it ran.
    pub fn sweep_slivers(&self) {
        self.sweep();
    }

    /// [`Self::sweep_slivers`], returning the key files it could not write (node, why).
    fn sweep(&self) -> Vec<(usize, String)> {
        let _one = lock(&self.ssh.sweep);
        self.forget_gone_slivers();
        self.sync_authorized_keys()
    }

    fn forget_gone_slivers(&self) {
        let kept = self.ssh.slivers.kept();
        if kept.is_empty() {
            return;
        }
        let sshd = lock(&self.ssh.sshd_public).clone();
        let gone: Vec<SliverKey> = {
            let state = self.state();
            let now = self.now();
            let alive = |(slice, node): SliverKey, born: f64| {
                state.sliver_ready(slice, node, now)
                    && state.slivers.get(&(slice, node)).and_then(|s| s.ready_at) == Some(born)
            };
            kept.into_iter()
                .filter(|(key, born)| sshd.contains_key(&key.1) || !alive(*key, *born))
                .map(|(k, _)| k)
                .collect()
        };
        self.ssh.slivers.forget(&gone);
    }

    /// Writes each `sshd`'s key file whose contents changed; returns those it could not write.
    fn sync_authorized_keys(&self) -> Vec<(usize, String)> {
        let targets: Vec<(usize, Sshd)> = lock(&self.ssh.sshd).iter().map(|(i, s)| (*i, s.clone())).collect();
        if targets.is_empty() {
            return Vec::new();
        }
        let texts: Vec<String> = {
            let state = self.state();
            let now = self.now();
            targets.iter().map(|(node, _)| authorized_keys_text(&state, *node, now)).collect()
        };
        let mut errors = Vec::new();
        for ((node, sshd), text) in targets.into_iter().zip(texts) {
            if sshd.written.as_deref() == Some(text.as_str()) {
                continue;
            }
            match write_atomically(&sshd.authorized_keys, &text) {
                Ok(()) => {
                    if let Some(s) = lock(&self.ssh.sshd).get_mut(&node) {
                        s.written = Some(text);
                    }
                }
                Err(e) => {
                    let e = format!("cannot write {}: {e}", sshd.authorized_keys.display());
                    tracing::warn!(node, "reference testbed: {e}");
                    errors.push((node, e));
                }
            }
        }
        errors
    }

    /// Starts the periodic sweep once (when a tokio runtime runs); it ends when the testbed is dropped.
    fn start_sweeper(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if self.ssh.sweeper.swap(true, Ordering::SeqCst) {
            return;
        }
        let tb = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(tb) = tb.upgrade() else { break };
                tb.sweep();
            }
        });
    }
}

/// The node whose loopback address `ip` is (IPv4-mapped IPv6 included).
fn dialled_node(ip: IpAddr) -> Option<usize> {
    match ip {
        IpAddr::V4(ip) => node_of_address(ip),
        IpAddr::V6(ip) => ip.to_ipv4_mapped().and_then(node_of_address),
    }
}

/// The key file of an `sshd`-backed node: every key of the members of the slices with a ready sliver there,
/// each re-encoded from its parsed form (so each line is exactly one well-formed key), sorted, once.
fn authorized_keys_text(state: &State, node: usize, now: f64) -> String {
    let keys: BTreeSet<String> = state
        .node_slices(node)
        .into_iter()
        .filter(|&slice| state.sliver_ready(slice, node, now))
        .flat_map(|slice| state.member_keys(slice))
        .filter_map(|text| PublicKey::from_openssh(text).ok()?.to_openssh().ok())
        .collect();
    let mut text =
        "# Written by the reference testbed: the keys of the slices with a ready sliver here.\n".to_owned();
    for key in keys {
        text.push_str(&key);
        text.push('\n');
    }
    text
}

/// Replaces `path` with `text` at once (a temporary in the same directory, renamed), readable by its owner
/// only.
fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut name = path.file_name().ok_or_else(|| io::Error::other("not a file name"))?.to_owned();
    name.push(".portolan-tmp");
    let temporary = path.with_file_name(name);
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)
}

/// What a channel of a connection is doing.
enum ChannelState {
    /// Opened, no request yet.
    Open,
    /// A command reading its standard input until EOF.
    Reading { command: Command, upload: Upload },
    /// Answered, or answering.
    Done,
}

/// One SSH connection to node `node`'s simulated sliver endpoint.
struct Connection {
    tb: Arc<Testbed>,
    node: usize,
    /// The slice logged in to.
    slice: Option<i32>,
    channels: HashMap<ChannelId, ChannelState>,
}

impl Connection {
    fn new(tb: Arc<Testbed>, node: usize) -> Self {
        Self { tb, node, slice: None, channels: HashMap::new() }
    }

    fn check(&self, user: &str, key: &PublicKey) -> Option<i32> {
        self.tb.ssh_login(self.node, user, key)
    }

    /// Runs `command` in the background (after the profile's delay) and answers on `channel` through
    /// `handle`: the connection goes on serving meanwhile.
    fn run(&mut self, channel: ChannelId, command: Command, stdin: Stdin, handle: russh::server::Handle) {
        self.channels.insert(channel, ChannelState::Done);
        let Some(slice) = self.slice else { return };
        let (tb, key) = (self.tb.clone(), (slice, self.node));
        tokio::spawn(async move {
            let delay = tb.profile.ssh.exec_delay_s;
            if delay > 0.0 {
                tb.clock.sleep(delay).await;
            }
            let stdin = match &command {
                Command::Fetch { url, .. } => sliver::fetch_checksum(&tb.ssh.agent_client(), url).await,
                _ => stdin,
            };
            let outcome = sliver::execute(&tb, key, &command, stdin);
            answer_later(&handle, channel, outcome).await;
        });
    }

    /// Answers `channel` at once with `outcome` and closes it.
    fn answer(
        &mut self,
        session: &mut Session,
        channel: ChannelId,
        outcome: Outcome,
    ) -> Result<(), russh::Error> {
        self.channels.insert(channel, ChannelState::Done);
        if !outcome.stdout.is_empty() {
            session.data(channel, outcome.stdout.into_bytes())?;
        }
        if !outcome.stderr.is_empty() {
            session.extended_data(channel, 1, outcome.stderr.into_bytes())?;
        }
        session.exit_status_request(channel, outcome.status)?;
        session.eof(channel)?;
        session.close(channel)
    }
}

async fn answer_later(handle: &russh::server::Handle, channel: ChannelId, outcome: Outcome) {
    // A client that went away meanwhile is no error: there is no one left to tell.
    if !outcome.stdout.is_empty() {
        let _ = handle.data(channel, outcome.stdout.into_bytes()).await;
    }
    if !outcome.stderr.is_empty() {
        let _ = handle.extended_data(channel, 1, outcome.stderr.into_bytes()).await;
    }
    let _ = handle.exit_status_request(channel, outcome.status).await;
    let _ = handle.eof(channel).await;
    let _ = handle.close(channel).await;
}

fn publickey_only() -> Auth {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    Auth::Reject { proceed_with_methods: Some(methods), partial_success: false }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_none(&mut self, _: &str) -> Result<Auth, Self::Error> {
        Ok(publickey_only())
    }

    async fn auth_password(&mut self, _: &str, _: &str) -> Result<Auth, Self::Error> {
        Ok(publickey_only())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(match self.check(user, offer.public_key) {
            Some(_) => Auth::Accept,
            None => publickey_only(),
        })
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        self.slice = self.check(user, key.public_key);
        Ok(if self.slice.is_some() { Auth::Accept } else { publickey_only() })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.slice.is_none() || self.channels.len() >= MAX_CHANNELS {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        // The handler's callbacks see everything on the channel; the channel object itself is not read.
        self.channels.insert(channel.id(), ChannelState::Open);
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if !matches!(self.channels.get(&channel), Some(ChannelState::Open)) {
            return session.channel_failure(channel);
        }
        session.channel_success(channel)?;
        let Some(command) = std::str::from_utf8(data).ok().and_then(Command::parse) else {
            return self.answer(session, channel, Outcome::failed(127, NOT_SUPPORTED));
        };
        if Upload::reads_stdin(&command) {
            let upload = Upload::for_command(&command);
            self.channels.insert(channel, ChannelState::Reading { command, upload });
        } else {
            self.run(channel, command, Stdin::None, session.handle());
        }
        Ok(())
    }

    async fn data(&mut self, channel: ChannelId, data: &[u8], _: &mut Session) -> Result<(), Self::Error> {
        if let Some(ChannelState::Reading { upload, .. }) = self.channels.get_mut(&channel) {
            upload.feed(data);
        }
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        if let Some(ChannelState::Reading { command, upload }) = self.channels.remove(&channel) {
            self.run(channel, command, upload.finish(), session.handle());
        }
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _: &mut Session) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        if !matches!(self.channels.get(&channel), Some(ChannelState::Open)) {
            return session.channel_failure(channel);
        }
        session.channel_success(channel)?;
        self.answer(session, channel, Outcome::failed(1, NO_SHELL))
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _: &str,
        _: u32,
        _: u32,
        _: u32,
        _: u32,
        _: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _: &str,
        _: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _: bool,
        _: &str,
        _: &str,
        _: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_follow_the_rule_and_invert() {
        assert_eq!(node_address(0), Some(Ipv4Addr::new(127, 64, 0, 1)));
        assert_eq!(node_address(255), Some(Ipv4Addr::new(127, 64, 1, 0)));
        assert_eq!(node_address(100_000), Some(Ipv4Addr::new(127, 65, 134, 161)));
        for index in [0, 1, 254, 255, 256, 65_535, 100_000] {
            assert_eq!(node_of_address(node_address(index).unwrap()), Some(index));
        }
        assert_eq!(node_of_address(NODE_BASE), None);
        assert_eq!(node_of_address(Ipv4Addr::LOCALHOST), None);
        assert_eq!(node_of_address(Ipv4Addr::new(10, 0, 0, 1)), None);
        assert_eq!(node_of_address(Ipv4Addr::new(127, 255, 255, 255)), None);
        assert_eq!(node_address(usize::MAX), None);
    }
}
