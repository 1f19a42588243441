//! The simulated sliver: what a sliver on most of the testbed's nodes does when bring-up talks to it over SSH
//! ([`crate::ssh`]). It answers exactly the commands of [`portolan_agent::bringup::Command`] and nothing else,
//! keeps what they leave behind in memory, and runs the agent's own loop ([`portolan_agent::runtime::run`])
//! in-process against a [`SimulatedHost`]: the same logic a real sliver runs, without ever running a user's
//! command (or anything else) on the machine.
//!
//! Per sliver (slice, node) it keeps:
//! - the SHA-256 of the installed binary, never the binary: for `Install`, [`Upload`] hashes standard input
//!   as it streams and counts its bytes, so an upload of any size costs a few hundred bytes of memory; for
//!   `Fetch`, a `HEAD` of the portal's URL tells the checksum the download would have ([`fetch_checksum`]);
//! - the agent's configuration ([`AgentConfig`], at most [`MAX_CONFIG_BYTES`] of JSON);
//! - the running in-process agent (its cancellation token), and what its host was told: the accounts' keys
//!   (which the SSH layer accepts too: that is how a key added in the portal reaches a sliver), the software
//!   and startup command (recorded, never fetched nor run).
//!
//! That state lives only as long as the testbed's sliver: when the sliver goes (slice deleted or expired,
//! node down or gone, `DeleteSliceFromNodes`), [`crate::Testbed::sweep_slivers`] forgets it and stops its
//! agent, which goes down with its node. A sliver that is deleted and created again is another sliver (it is
//! told apart by the moment it came up), and starts empty.
//!
//! The profile's `[ssh]` knobs make commands slow (`exec_delay_s`) and unreliable (`exec_fail_probability`:
//! the command does nothing and exits 255), each failure drawn from the seed, the slice, the node and the
//! sliver's command count.

use crate::{Testbed, random};
use portolan_agent::bringup::{AgentConfig, Command};
use portolan_agent::host::Host;
use portolan_agent::protocol::{Account, Metrics, Software, Startup, StartupState};
use russh::keys::PublicKey;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tokio_util::sync::CancellationToken;

/// A sliver: (slice_id, node index), as the testbed's state keys it.
pub type SliverKey = (i32, usize);

/// The largest agent configuration `Configure` reads (a real one is a few hundred bytes).
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;
/// The largest binary `Install` accepts (the real `portolan` binary is tens of megabytes).
pub const MAX_BINARY_BYTES: u64 = 1 << 30;
/// What a startup command "printed": it is recorded, never run.
pub const STARTUP_NOT_RUN: &str = "simulated sliver: startup command not run";

/// What a command answers: its standard output and error, and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub status: u32,
}

impl Outcome {
    fn ok(stdout: impl Into<String>) -> Self {
        Self { stdout: stdout.into(), stderr: String::new(), status: 0 }
    }

    /// A failure with exit `status`; `message` goes to standard error, on one line.
    pub fn failed(status: u32, message: impl Into<String>) -> Self {
        let mut stderr = message.into();
        stderr.push('\n');
        Self { stdout: String::new(), stderr, status }
    }
}

/// A command's standard input, as the sliver kept it: digested, never the bytes of a binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stdin {
    /// The command reads none (or it was not kept).
    None,
    /// What `Install` received (or `Fetch` would download): its SHA-256 (hex) and length.
    Binary { sha256: String, bytes: u64 },
    /// What `Configure` received.
    Config(Vec<u8>),
    /// More than the command accepts (`limit` bytes).
    TooLarge { limit: u64 },
    /// `Fetch` could not learn the binary's checksum from the portal: why.
    Unavailable(String),
}

/// Standard input arriving for a command, kept bounded: hashed for `Install`, buffered up to
/// [`MAX_CONFIG_BYTES`] for `Configure`.
pub struct Upload {
    kind: UploadKind,
    bytes: u64,
    limit: u64,
}

enum UploadKind {
    Binary(Box<Sha256>),
    Config(Vec<u8>),
    Ignored,
    /// More than the limit arrived: nothing more is kept, the command fails at the end of its input.
    Overflow,
}

impl Upload {
    /// What `command` keeps of its standard input.
    pub fn for_command(command: &Command) -> Self {
        let (kind, limit) = match command {
            Command::Install { .. } => (UploadKind::Binary(Box::default()), MAX_BINARY_BYTES),
            Command::Configure => (UploadKind::Config(Vec::new()), MAX_CONFIG_BYTES as u64),
            _ => (UploadKind::Ignored, u64::MAX),
        };
        Self { kind, bytes: 0, limit }
    }

    /// Whether `command` reads its standard input to the end before it answers.
    pub fn reads_stdin(command: &Command) -> bool {
        matches!(command, Command::Install { .. } | Command::Configure)
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.bytes = self.bytes.saturating_add(data.len() as u64);
        if self.bytes > self.limit {
            self.kind = UploadKind::Overflow;
        }
        match &mut self.kind {
            UploadKind::Binary(hasher) => hasher.update(data),
            UploadKind::Config(buffer) => buffer.extend_from_slice(data),
            UploadKind::Ignored | UploadKind::Overflow => {}
        }
    }

    pub fn finish(self) -> Stdin {
        match self.kind {
            UploadKind::Binary(hasher) => {
                Stdin::Binary { sha256: hex::encode(hasher.finalize()), bytes: self.bytes }
            }
            UploadKind::Config(buffer) => Stdin::Config(buffer),
            UploadKind::Ignored => Stdin::None,
            UploadKind::Overflow => Stdin::TooLarge { limit: self.limit },
        }
    }
}

/// What the in-process agent told its host, shared between the sliver and the agent's [`SimulatedHost`].
#[derive(Debug, Default)]
struct HostRecord {
    keys: Vec<PublicKey>,
    software: Vec<Software>,
    startup: Option<Startup>,
}

/// One simulated sliver's memory.
struct Sliver {
    /// When the testbed's sliver came up: tells this sliver from a later one with the same key.
    born: f64,
    installed: Option<String>,
    config: Option<AgentConfig>,
    agent: Option<CancellationToken>,
    /// Commands run so far (keys the failure draw).
    commands: u64,
    host: Arc<Mutex<HostRecord>>,
}

impl Sliver {
    fn new(born: f64) -> Self {
        Self { born, installed: None, config: None, agent: None, commands: 0, host: Arc::default() }
    }

    fn stop_agent(&mut self) {
        if let Some(agent) = self.agent.take() {
            agent.cancel();
        }
    }
}

/// Every simulated sliver that bring-up has talked to, by key.
#[derive(Default)]
pub struct Slivers {
    map: Mutex<HashMap<SliverKey, Sliver>>,
}

/// A dropped testbed stops its agents (they hold only a weak reference to it, and would go on beating).
impl Drop for Slivers {
    fn drop(&mut self) {
        for sliver in lock(&self.map).values_mut() {
            sliver.stop_agent();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Slivers {
    /// The keys the sliver's agent added (its manifest's accounts), if the sliver `key` born at `born` has any.
    pub(crate) fn extra_keys(&self, key: SliverKey, born: f64) -> Vec<PublicKey> {
        let map = lock(&self.map);
        match map.get(&key) {
            Some(sliver) if sliver.born == born => lock(&sliver.host).keys.clone(),
            _ => Vec::new(),
        }
    }

    /// Every sliver kept, with the moment it was born.
    pub(crate) fn kept(&self) -> Vec<(SliverKey, f64)> {
        lock(&self.map).iter().map(|(key, sliver)| (*key, sliver.born)).collect()
    }

    /// Forgets the slivers `dead`, stopping their agents.
    pub(crate) fn forget(&self, dead: &[SliverKey]) {
        let mut map = lock(&self.map);
        for key in dead {
            if let Some(mut sliver) = map.remove(key) {
                sliver.stop_agent();
            }
        }
    }

    /// How many in-process agents run (started and neither stopped nor swept away).
    pub fn running_agents(&self) -> usize {
        lock(&self.map).values().filter(|s| s.agent.as_ref().is_some_and(|t| !t.is_cancelled())).count()
    }

    /// The installed binary's SHA-256 of sliver `key`, if any.
    pub fn installed(&self, key: SliverKey) -> Option<String> {
        lock(&self.map).get(&key).and_then(|s| s.installed.clone())
    }

    /// The startup command the agent of sliver `key` was asked to start (recorded, never run).
    pub fn startup(&self, key: SliverKey) -> Option<String> {
        let map = lock(&self.map);
        map.get(&key).and_then(|s| lock(&s.host).startup.as_ref().map(|s| s.command.clone()))
    }
}

/// Runs bring-up's `command` in the sliver `key` with its standard input `stdin` (the delay was waited
/// already). The sliver must be ready now; a sliver that went away meanwhile answers exit 255, as a dropped
/// connection would.
pub(crate) fn execute(tb: &Arc<Testbed>, key: SliverKey, command: &Command, stdin: Stdin) -> Outcome {
    let Some((born, slice)) = ready(tb, key) else {
        return Outcome::failed(255, "simulated sliver: the sliver is gone");
    };
    let mut map = lock(&tb.ssh.slivers.map);
    let sliver = map.entry(key).or_insert_with(|| Sliver::new(born));
    if sliver.born != born {
        sliver.stop_agent();
        *sliver = Sliver::new(born);
    }
    let draw = [random::text_key(&slice), key.1 as u64, sliver.commands];
    sliver.commands += 1;
    if random::unit(tb.seed, "ssh-exec-fail", &draw) < tb.profile.ssh.exec_fail_probability {
        return Outcome::failed(255, "simulated failure");
    }
    match command {
        Command::Probe => {
            Outcome::ok(sliver.installed.as_ref().map(|s| format!("{s}\n")).unwrap_or_default())
        }
        Command::Install { sha256 } | Command::Fetch { sha256, .. } => install(sliver, sha256, stdin),
        Command::Configure => configure(sliver, stdin),
        Command::Start => start(tb, key, sliver),
        Command::Stop => {
            sliver.stop_agent();
            Outcome::ok("")
        }
    }
}

/// The moment sliver `key` came up and its slice's name, if it is ready now.
fn ready(tb: &Testbed, key: SliverKey) -> Option<(f64, String)> {
    if tb.ssh.is_sshd_backed(key.1) {
        return None;
    }
    let state = tb.state();
    if !state.sliver_ready(key.0, key.1, tb.now()) {
        return None;
    }
    let born = state.slivers.get(&key)?.ready_at?;
    Some((born, state.slices.get(&key.0)?.name.clone()))
}

fn install(sliver: &mut Sliver, sha256: &str, stdin: Stdin) -> Outcome {
    match stdin {
        Stdin::Binary { sha256: received, .. } if received == sha256 => {
            sliver.installed = Some(received);
            Outcome::ok("")
        }
        Stdin::Binary { sha256: received, bytes } => Outcome::failed(
            1,
            format!("sha256sum: WARNING: the {bytes} bytes received have SHA-256 {received}, not {sha256}"),
        ),
        Stdin::TooLarge { limit } => {
            Outcome::failed(1, format!("simulated sliver: binaries over {limit} bytes are refused"))
        }
        Stdin::Unavailable(why) => Outcome::failed(1, format!("simulated sliver: {why}")),
        Stdin::None | Stdin::Config(_) => Outcome::failed(1, "simulated sliver: no binary received"),
    }
}

/// What `Fetch` would download from `url`, learnt with a `HEAD` instead of downloading: the portal must
/// answer 2xx, and the checksum it announces must be the one asked for. The checksum announced is read from
/// `Repr-Digest: sha-256=:<base64>:` (RFC 9530), `X-Content-Sha256: <hex>` or a strong `ETag: "<hex>"`, in that
/// order; a portal that announces none serves a content-addressed URL (`…/portolan/<sha256>`), whose last
/// segment is then taken as the checksum.
pub async fn fetch_checksum(client: &reqwest::Client, url: &str) -> Stdin {
    let response = match client.head(url).timeout(FETCH_TIMEOUT).send().await {
        Ok(response) => response,
        Err(e) => return Stdin::Unavailable(format!("cannot reach {url}: {e}")),
    };
    if !response.status().is_success() {
        return Stdin::Unavailable(format!("{url} answers {}", response.status()));
    }
    let headers = response.headers();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let announced = header("repr-digest")
        .and_then(repr_digest_sha256)
        .or_else(|| header("x-content-sha256").map(str::to_ascii_lowercase))
        .or_else(|| {
            header("etag").and_then(|t| t.strip_prefix('"')?.strip_suffix('"')).map(str::to_ascii_lowercase)
        })
        .or_else(|| url.split(['?', '#']).next()?.rsplit('/').next().map(str::to_owned));
    let bytes =
        headers.get(reqwest::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
    match announced {
        Some(sha256) => Stdin::Binary { sha256, bytes },
        None => Stdin::Unavailable(format!("{url} announces no checksum")),
    }
}

/// How long `Fetch`'s `HEAD` may take.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The SHA-256 (hex) of a `Repr-Digest` field value, if it carries one.
fn repr_digest_sha256(value: &str) -> Option<String> {
    use base64::Engine;
    value.split(',').find_map(|item| {
        let encoded = item.trim().strip_prefix("sha-256=:")?.strip_suffix(':')?;
        let digest = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
        (digest.len() == 32).then(|| hex::encode(digest))
    })
}

fn configure(sliver: &mut Sliver, stdin: Stdin) -> Outcome {
    let text = match stdin {
        Stdin::Config(text) => text,
        Stdin::TooLarge { limit } => {
            return Outcome::failed(
                1,
                format!("simulated sliver: configurations over {limit} bytes are refused"),
            );
        }
        Stdin::None | Stdin::Binary { .. } | Stdin::Unavailable(_) => {
            return Outcome::failed(1, "simulated sliver: no configuration");
        }
    };
    match serde_json::from_slice::<AgentConfig>(&text) {
        Ok(config) => {
            sliver.config = Some(config);
            Outcome::ok("")
        }
        Err(e) => Outcome::failed(1, format!("simulated sliver: not an agent configuration (JSON): {e}")),
    }
}

/// Starts the in-process agent, stopping one that runs (so a new configuration takes effect).
fn start(tb: &Arc<Testbed>, key: SliverKey, sliver: &mut Sliver) -> Outcome {
    if sliver.installed.is_none() {
        return Outcome::failed(1, "simulated sliver: no agent binary is installed (Install first)");
    }
    let Some(config) = sliver.config.clone() else {
        return Outcome::failed(1, "simulated sliver: the agent is not configured (Configure first)");
    };
    sliver.stop_agent();
    let token = CancellationToken::new();
    sliver.agent = Some(token.clone());
    let host = SimulatedHost { tb: Arc::downgrade(tb), node: key.1, record: sliver.host.clone() };
    let client = tb.ssh.agent_client();
    let slice = config.slice.clone();
    tokio::spawn(async move {
        if let Err(e) = portolan_agent::runtime::run(config, Arc::new(host), client, token).await {
            tracing::warn!(%slice, node = key.1, "simulated sliver: the in-process agent stopped: {e}");
        }
    });
    Outcome::ok("")
}

/// The [`Host`] of a simulated sliver's in-process agent: accounts' keys become keys the sliver's SSH
/// endpoint accepts; software and the startup command are recorded and never fetched nor run; the load is
/// the world's load model for the node.
pub struct SimulatedHost {
    /// Weak: a running agent does not keep a dropped testbed alive.
    tb: Weak<Testbed>,
    node: usize,
    record: Arc<Mutex<HostRecord>>,
}

#[async_trait::async_trait]
impl Host for SimulatedHost {
    async fn apply_accounts(&self, accounts: &[Account]) -> Result<(), String> {
        let mut keys = Vec::new();
        for account in accounts {
            for text in &account.keys {
                let key = PublicKey::from_openssh(text.trim())
                    .map_err(|e| format!("account {}: not an OpenSSH public key ({e})", account.name))?;
                if !keys.iter().any(|k: &PublicKey| k.key_data() == key.key_data()) {
                    keys.push(key);
                }
            }
        }
        lock(&self.record).keys = keys;
        Ok(())
    }

    async fn install(&self, software: &Software) -> Result<(), String> {
        let mut record = lock(&self.record);
        if !record.software.contains(software) {
            record.software.push(software.clone());
        }
        Ok(())
    }

    async fn start(&self, startup: &Startup) -> Result<(), String> {
        lock(&self.record).startup = Some(startup.clone());
        Ok(())
    }

    async fn startup_state(&self) -> StartupState {
        match lock(&self.record).startup {
            Some(_) => StartupState::Exited { code: Some(0), output_tail: STARTUP_NOT_RUN.to_owned() },
            None => StartupState::None,
        }
    }

    async fn metrics(&self) -> Metrics {
        let Some(tb) = self.tb.upgrade() else { return Metrics::default() };
        let node = &tb.world.nodes[self.node];
        let load = tb.world.load(self.node, tb.now());
        let memory = f64::from(node.memory_mb);
        Metrics {
            load1: Some(load.load),
            memory_total_mb: Some(memory),
            memory_free_mb: Some(memory * (1.0 - load.memory_used)),
            disk_free_pct: Some(load.disk_free * 100.0),
            net_rx_bytes: None,
            net_tx_bytes: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_digest_is_read() {
        use base64::Engine;
        let digest = Sha256::digest(b"x");
        let value =
            format!("sha-512=:AAAA:, sha-256=:{}:", base64::engine::general_purpose::STANDARD.encode(digest));
        assert_eq!(repr_digest_sha256(&value), Some(hex::encode(digest)));
        assert_eq!(repr_digest_sha256("sha-256=:AAAA:"), None);
    }

    #[test]
    fn uploads_are_hashed_as_they_stream_and_bounded() {
        let sha = hex::encode(Sha256::digest(b"hello world"));
        let mut upload = Upload::for_command(&Command::Install { sha256: sha.clone() });
        upload.feed(b"hello ");
        upload.feed(b"world");
        assert_eq!(upload.finish(), Stdin::Binary { sha256: sha, bytes: 11 });

        let mut upload = Upload::for_command(&Command::Configure);
        upload.feed(&vec![b' '; MAX_CONFIG_BYTES]);
        upload.feed(b"{");
        assert_eq!(upload.finish(), Stdin::TooLarge { limit: MAX_CONFIG_BYTES as u64 });

        let mut upload = Upload::for_command(&Command::Probe);
        upload.feed(b"ignored");
        assert_eq!(upload.finish(), Stdin::None);
    }
}
