//! The agent's loop: fetch the sliver's manifest, apply it to a [`Host`], heartbeat, and fetch again when a
//! heartbeat's reply names a version not applied yet. It lives apart from the host so that the real agent and
//! the reference testbed's simulated slivers run exactly this logic.
//!
//! The portal may be down or slow at any time: every request has a timeout, failures back off exponentially
//! with full jitter (capped), and the agent keeps only its *current* state, never a queue of heartbeats, so a
//! long outage costs nothing but the beats it missed. A refused credential (HTTP 401 or 403) means the sliver
//! was revoked: the agent stops.

use crate::bringup::AgentConfig;
use crate::host::Host;
use crate::protocol::{Credential, Heartbeat, HeartbeatReply, Manifest, Software, Startup, StartupState};
use reqwest::StatusCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The agent's version, as heartbeats report it.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The largest manifest the agent reads.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Error texts a heartbeat carries are cut to this many characters (so a beat stays small).
const MAX_ERROR_CHARS: usize = 1024;

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the portal refused the sliver's credential: it was revoked")]
    Revoked,
    #[error("bad agent configuration: {0}")]
    Config(String),
    #[error("cannot listen for stop signals: {0}")]
    Signals(#[source] std::io::Error),
}

/// Exponential backoff with full jitter: after the `n`th failure in a row, wait a uniformly random time up to
/// `min(cap, base · 2ⁿ⁻¹)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { base: Duration::from_secs(1), cap: Duration::from_secs(300) }
    }
}

impl Backoff {
    /// The shortest wait, so that an unlucky draw never retries in a tight loop.
    pub const FLOOR: Duration = Duration::from_millis(100);

    /// The longest wait after `failures` failures in a row (1 is the first).
    pub fn ceiling(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.base.saturating_mul(1 << doublings).min(self.cap)
    }

    /// The wait after `failures` failures, `fraction` (in `[0, 1]`) of the way up to the ceiling.
    pub fn delay(&self, failures: u32, fraction: f64) -> Duration {
        self.ceiling(failures).mul_f64(fraction.clamp(0.0, 1.0)).max(Self::FLOOR)
    }
}

/// How the loop talks to the portal; [`run`] uses the defaults.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Each request's limit, from connecting to the end of the body.
    pub request_timeout: Duration,
    pub backoff: Backoff,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { request_timeout: Duration::from_secs(10), backoff: Backoff::default() }
    }
}

/// Runs the agent until `stop` is cancelled (then `Ok`, promptly, whatever it was doing) or the portal
/// revokes the credential ([`AgentError::Revoked`]).
pub async fn run(
    config: AgentConfig,
    host: Arc<dyn Host>,
    client: reqwest::Client,
    stop: CancellationToken,
) -> Result<(), AgentError> {
    run_with(config, host, client, stop, RunOptions::default()).await
}

/// [`run`] with other timeouts and backoff.
pub async fn run_with(
    config: AgentConfig,
    host: Arc<dyn Host>,
    client: reqwest::Client,
    stop: CancellationToken,
    options: RunOptions,
) -> Result<(), AgentError> {
    let mut agent = Agent::new(config, host, client, options)?;
    tracing::info!(slice = %agent.slice, node = %agent.node, portal = %agent.portal, version = AGENT_VERSION,
        "agent starting");
    tokio::select! {
        biased;
        () = stop.cancelled() => {
            tracing::info!(slice = %agent.slice, "agent stopping");
            Ok(())
        }
        result = agent.run_loop() => result,
    }
}

/// Why a request to the portal did not give an answer.
#[derive(Debug)]
enum CallError {
    /// 401 or 403: the credential is no longer valid.
    Revoked(StatusCode),
    /// Another 4xx: the portal refuses this request (a bug on one side, or a portal being upgraded).
    Refused(StatusCode),
    /// Unreachable, slow, 5xx, or an answer that makes no sense.
    Unavailable(String),
}

/// The loop's state: one current view of the sliver, nothing queued.
struct Agent {
    portal: String,
    slice: String,
    node: String,
    credential: String,
    host: Arc<dyn Host>,
    client: reqwest::Client,
    options: RunOptions,
    /// The last heartbeat's sequence number.
    sequence: u64,
    interval: Duration,
    /// Failed requests in a row.
    failures: u32,
    /// The version last applied in full, and the version last tried (applied or not).
    applied: Option<String>,
    attempted: Option<String>,
    manifest_error: Option<String>,
    /// Whether the last manifest has a startup command, and why it could not be (re)started, if it could not.
    wants_startup: bool,
    startup_blocked: Option<String>,
    /// What the running startup command was started for: it is started again only when this changes.
    started: Option<(Vec<Software>, Startup)>,
}

impl Agent {
    fn new(
        config: AgentConfig,
        host: Arc<dyn Host>,
        client: reqwest::Client,
        options: RunOptions,
    ) -> Result<Self, AgentError> {
        let portal = config.portal.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&portal)
            .map_err(|e| AgentError::Config(format!("the portal {portal:?} is not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(AgentError::Config(format!("the portal {portal:?} is not an http(s) URL")));
        }
        if Credential::parse(&config.credential).is_none() {
            return Err(AgentError::Config("the credential is not a sliver credential (pslv_…)".to_owned()));
        }
        Ok(Self {
            portal,
            slice: config.slice,
            node: config.node,
            credential: config.credential,
            host,
            client,
            options,
            sequence: 0,
            interval: Duration::from_secs(60),
            failures: 0,
            applied: None,
            attempted: None,
            manifest_error: None,
            wants_startup: false,
            startup_blocked: None,
            started: None,
        })
    }

    /// Fetch and apply, beat, sleep; on a failed request back off and take the step again. Returns only
    /// when the credential is revoked.
    async fn run_loop(&mut self) -> Result<(), AgentError> {
        let mut refetch = true;
        loop {
            if refetch {
                match self.fetch_and_apply().await {
                    Ok(()) => refetch = false,
                    Err(error) => {
                        self.back_off(error).await?;
                        continue;
                    }
                }
            }
            let reply = match self.beat().await {
                Ok(reply) => reply,
                Err(error) => {
                    self.back_off(error).await?;
                    continue;
                }
            };
            refetch = self.applied.as_ref() != Some(&reply.manifest_version);
            if refetch && self.attempted.as_ref() != Some(&reply.manifest_version) {
                // A version not tried yet: fetch it now, so the next beat already reports it.
                match self.fetch_and_apply().await {
                    Ok(()) => refetch = false,
                    Err(error) => {
                        self.back_off(error).await?;
                        continue;
                    }
                }
            }
            // A version tried and failed is retried (`refetch`) just before the next beat.
            tokio::time::sleep(self.interval).await;
        }
    }

    /// Waits out a failed request, or returns [`AgentError::Revoked`].
    async fn back_off(&mut self, error: CallError) -> Result<(), AgentError> {
        let slice = &self.slice;
        let reason = match error {
            CallError::Revoked(status) => {
                tracing::error!(%slice, %status, "the portal refused the credential; stopping");
                return Err(AgentError::Revoked);
            }
            CallError::Refused(status) => format!("the portal refused the request (HTTP {status})"),
            CallError::Unavailable(reason) => reason,
        };
        self.failures = self.failures.saturating_add(1);
        let delay = self.options.backoff.delay(self.failures, rand::random::<f64>());
        let (failures, retry_ms) = (self.failures, u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        tracing::warn!(%slice, %reason, failures, retry_ms, "no answer from the portal; retrying");
        tokio::time::sleep(delay).await;
        Ok(())
    }

    fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(slice = %self.slice, failures = self.failures, "the portal answers again");
        }
        self.failures = 0;
    }

    async fn fetch_and_apply(&mut self) -> Result<(), CallError> {
        let manifest = self.fetch_manifest().await?;
        self.succeeded();
        self.interval = heartbeat_interval(manifest.heartbeat_s);
        self.attempted = Some(manifest.version.clone());
        self.wants_startup = manifest.startup.is_some();
        match self.apply(&manifest).await {
            Ok(()) => {
                tracing::info!(slice = %self.slice, version = %manifest.version, "manifest applied");
                self.applied = Some(manifest.version);
                self.manifest_error = None;
            }
            Err(error) => {
                let (slice, version) = (&self.slice, &manifest.version);
                tracing::warn!(%slice, %version, %error, "cannot apply the manifest");
                self.manifest_error = Some(shorten(&error));
            }
        }
        Ok(())
    }

    /// Accounts, then software in order, then the startup command when it (or its software) changed.
    async fn apply(&mut self, manifest: &Manifest) -> Result<(), String> {
        let wanted = manifest.startup.clone().map(|startup| (manifest.software.clone(), startup));
        let must_start = wanted.is_some() && wanted != self.started;
        self.startup_blocked = None;
        let result = self.apply_steps(manifest, wanted.as_ref().filter(|_| must_start)).await;
        match &result {
            Ok(()) => self.started = wanted,
            Err(error) if must_start => self.startup_blocked = Some(shorten(error)),
            Err(_) => {}
        }
        result
    }

    async fn apply_steps(
        &self,
        manifest: &Manifest,
        start: Option<&(Vec<Software>, Startup)>,
    ) -> Result<(), String> {
        self.host.apply_accounts(&manifest.accounts).await.map_err(|e| format!("accounts: {e}"))?;
        for (index, software) in manifest.software.iter().enumerate() {
            self.host.install(software).await.map_err(|e| format!("software #{}: {e}", index + 1))?;
        }
        if let Some((_, startup)) = start {
            self.host.start(startup).await.map_err(|e| format!("startup command: {e}"))?;
        }
        Ok(())
    }

    async fn startup_report(&self) -> StartupState {
        if let Some(error) = &self.startup_blocked {
            return StartupState::Failed { error: error.clone() };
        }
        if !self.wants_startup {
            return StartupState::None;
        }
        match self.host.startup_state().await {
            StartupState::None => StartupState::Pending,
            state => state,
        }
    }

    async fn beat(&mut self) -> Result<HeartbeatReply, CallError> {
        self.sequence += 1;
        let heartbeat = Heartbeat {
            slice: self.slice.clone(),
            node: self.node.clone(),
            sequence: self.sequence,
            agent_version: AGENT_VERSION.to_owned(),
            manifest_version: self.applied.clone(),
            manifest_error: self.manifest_error.clone(),
            startup: self.startup_report().await,
            metrics: self.host.metrics().await,
        };
        let request = self.client.post(format!("{}/agent/v1/heartbeat", self.portal)).json(&heartbeat);
        let body = self.send(request).await?;
        let reply: HeartbeatReply = serde_json::from_slice(&body)
            .map_err(|e| CallError::Unavailable(format!("the heartbeat reply does not parse ({e})")))?;
        self.succeeded();
        self.interval = heartbeat_interval(reply.heartbeat_s);
        let (slice, version) = (&self.slice, &reply.manifest_version);
        tracing::debug!(%slice, sequence = self.sequence, %version, "beat");
        Ok(reply)
    }

    async fn fetch_manifest(&self) -> Result<Manifest, CallError> {
        let body = self.send(self.client.get(format!("{}/agent/v1/manifest", self.portal))).await?;
        serde_json::from_slice(&body)
            .map_err(|e| CallError::Unavailable(format!("the manifest does not parse ({e})")))
    }

    /// Sends `request` with the credential and the timeout; the body of a 2xx answer.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, CallError> {
        let request = request.bearer_auth(&self.credential).timeout(self.options.request_timeout);
        let mut response = request.send().await.map_err(|e| CallError::Unavailable(describe(&e)))?;
        let status = response.status();
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(CallError::Revoked(status));
        }
        if status.is_client_error() {
            return Err(CallError::Refused(status));
        }
        if !status.is_success() {
            return Err(CallError::Unavailable(format!("HTTP {status}")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| CallError::Unavailable(describe(&e)))? {
            if body.len() + chunk.len() > MAX_MANIFEST_BYTES {
                return Err(CallError::Unavailable(format!("an answer over {MAX_MANIFEST_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The heartbeat interval the portal asked for, kept between 1 s and 1 h.
fn heartbeat_interval(seconds: u32) -> Duration {
    Duration::from_secs(u64::from(seconds.clamp(1, 3600)))
}

/// A request's error with its causes (reqwest's own text names only the first); never the credential, which
/// travels in a header, not in the URL.
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() { "timed out".to_owned() } else { error.to_string() };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `text` cut to [`MAX_ERROR_CHARS`] characters.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Account, Metrics, Startup};
    use axum::Json;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode as Status};
    use axum::response::{IntoResponse, Response};
    use std::sync::Mutex;
    use tokio::task::JoinHandle;
    use tokio::time::{Instant, sleep};

    const S: Duration = Duration::from_secs(1);

    /// How the test portal answers.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Mode {
        Normal,
        Status(Status),
        /// Never answers.
        Hang,
    }

    /// A test double of the portal's agent API, recording what reaches it.
    struct Portal {
        credential: String,
        manifest: Manifest,
        mode: Mode,
        fetches: Vec<Instant>,
        beats: Vec<(Instant, Heartbeat)>,
        /// Requests answered with an error status (or left hanging).
        refused: Vec<Instant>,
        bad_credentials: usize,
    }

    type Shared = Arc<Mutex<Portal>>;

    impl Portal {
        /// What to answer instead of the real thing, if anything; records the refusal.
        fn refusal(&mut self, headers: &HeaderMap) -> Option<Mode> {
            let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
            if authorization != Some(&format!("Bearer {}", self.credential)) {
                self.bad_credentials += 1;
                return Some(Mode::Status(Status::UNAUTHORIZED));
            }
            (self.mode != Mode::Normal).then(|| {
                self.refused.push(Instant::now());
                self.mode
            })
        }
    }

    async fn refuse(mode: Mode) -> Response {
        match mode {
            Mode::Status(status) => status.into_response(),
            _ => std::future::pending().await,
        }
    }

    async fn manifest_route(State(portal): State<Shared>, headers: HeaderMap) -> Response {
        let answer = {
            let mut portal = portal.lock().unwrap();
            portal.refusal(&headers).ok_or_else(|| {
                portal.fetches.push(Instant::now());
                portal.manifest.clone()
            })
        };
        match answer {
            Ok(mode) => refuse(mode).await,
            Err(manifest) => Json(manifest).into_response(),
        }
    }

    async fn heartbeat_route(State(portal): State<Shared>, headers: HeaderMap, body: String) -> Response {
        let answer = {
            let mut portal = portal.lock().unwrap();
            portal.refusal(&headers).ok_or_else(|| {
                assert!(
                    body.len() <= crate::protocol::MAX_HEARTBEAT_BYTES,
                    "a heartbeat of {} bytes",
                    body.len()
                );
                portal.beats.push((Instant::now(), serde_json::from_str(&body).unwrap()));
                HeartbeatReply {
                    manifest_version: portal.manifest.version.clone(),
                    heartbeat_s: portal.manifest.heartbeat_s,
                }
            })
        };
        match answer {
            Ok(mode) => refuse(mode).await,
            Err(reply) => Json(reply).into_response(),
        }
    }

    /// Serves a portal with `manifest` on a local port.
    async fn portal(manifest: Manifest, credential: &Credential) -> (String, Shared) {
        let shared = Arc::new(Mutex::new(Portal {
            credential: credential.expose(),
            manifest,
            mode: Mode::Normal,
            fetches: Vec::new(),
            beats: Vec::new(),
            refused: Vec::new(),
            bad_credentials: 0,
        }));
        let app = axum::Router::new()
            .route("/agent/v1/manifest", axum::routing::get(manifest_route))
            .route("/agent/v1/heartbeat", axum::routing::post(heartbeat_route))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, shared)
    }

    /// A host in memory: records what it is asked to do.
    #[derive(Default)]
    struct FakeHost {
        log: Mutex<Vec<String>>,
        /// When set, every install fails with this error.
        install_error: Mutex<Option<String>>,
        started: Mutex<bool>,
    }

    impl FakeHost {
        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }

        fn count(&self, prefix: &str) -> usize {
            self.log().iter().filter(|line| line.starts_with(prefix)).count()
        }
    }

    #[async_trait::async_trait]
    impl Host for FakeHost {
        async fn apply_accounts(&self, accounts: &[Account]) -> Result<(), String> {
            let keys: Vec<String> = accounts.iter().flat_map(|a| a.keys.clone()).collect();
            self.log.lock().unwrap().push(format!("accounts {}", keys.join(",")));
            Ok(())
        }

        async fn install(&self, software: &Software) -> Result<(), String> {
            if let Some(error) = self.install_error.lock().unwrap().clone() {
                return Err(error);
            }
            let name = match software {
                Software::Tarball { url, .. } => url.clone(),
                Software::Package { name } => name.clone(),
            };
            self.log.lock().unwrap().push(format!("install {name}"));
            Ok(())
        }

        async fn start(&self, startup: &Startup) -> Result<(), String> {
            self.log.lock().unwrap().push(format!("start {}", startup.command));
            *self.started.lock().unwrap() = true;
            Ok(())
        }

        async fn startup_state(&self) -> StartupState {
            if *self.started.lock().unwrap() { StartupState::Running } else { StartupState::None }
        }

        async fn metrics(&self) -> Metrics {
            Metrics { load1: Some(0.25), ..Metrics::default() }
        }
    }

    fn manifest(version: &str, key: &str, command: &str) -> Manifest {
        Manifest {
            version: version.to_owned(),
            slice: "pl_demo".to_owned(),
            node: "node1.example.org".to_owned(),
            accounts: vec![Account { name: "alice".to_owned(), keys: vec![key.to_owned()] }],
            software: vec![
                Software::Tarball {
                    url: "http://files.example/tool.tgz".to_owned(),
                    sha256: "0".repeat(64),
                    target_dir: "opt".to_owned(),
                },
                Software::Package { name: "iperf3".to_owned() },
            ],
            startup: Some(Startup { command: command.to_owned() }),
            heartbeat_s: 10,
        }
    }

    struct Running {
        portal: Shared,
        host: Arc<FakeHost>,
        stop: CancellationToken,
        agent: JoinHandle<Result<(), AgentError>>,
    }

    impl Running {
        fn beats(&self) -> Vec<(Instant, Heartbeat)> {
            self.portal.lock().unwrap().beats.clone()
        }

        fn fetches(&self) -> Vec<Instant> {
            self.portal.lock().unwrap().fetches.clone()
        }

        fn refused(&self) -> Vec<Instant> {
            self.portal.lock().unwrap().refused.clone()
        }

        fn set_mode(&self, mode: Mode) {
            self.portal.lock().unwrap().mode = mode;
        }

        fn set_manifest(&self, manifest: Manifest) {
            self.portal.lock().unwrap().manifest = manifest;
        }

        /// Stops the agent; it must return `Ok` without time passing.
        async fn stop(self) {
            self.stop.cancel();
            let started = Instant::now();
            let result = tokio::time::timeout(Duration::from_millis(1), self.agent).await;
            assert!(matches!(result, Ok(Ok(Ok(())))), "the agent returns Ok at once: {result:?}");
            assert!(started.elapsed() < Duration::from_millis(1));
            assert_eq!(self.portal.lock().unwrap().bad_credentials, 0);
        }
    }

    async fn start(manifest: Manifest) -> Running {
        let credential = Credential::generate(7);
        let (url, portal) = self::portal(manifest, &credential).await;
        let config = AgentConfig {
            portal: url,
            credential: credential.expose(),
            slice: "pl_demo".to_owned(),
            node: "node1.example.org".to_owned(),
        };
        let host = Arc::new(FakeHost::default());
        let stop = CancellationToken::new();
        let agent = tokio::spawn(run(config, host.clone(), reqwest::Client::new(), stop.clone()));
        Running { portal, host, stop, agent }
    }

    /// The gaps between successive instants.
    fn gaps(times: &[Instant]) -> Vec<Duration> {
        times.windows(2).map(|pair| pair[1] - pair[0]).collect()
    }

    fn close_to(actual: Duration, expected: Duration) -> bool {
        actual.abs_diff(expected) < Duration::from_millis(100)
    }

    #[tokio::test(start_paused = true)]
    async fn the_manifest_is_applied_once_and_heartbeats_count_up() {
        let agent = start(manifest("v1", "key-a", "./run")).await;
        sleep(35 * S).await;
        let beats = agent.beats();
        assert_eq!(beats.len(), 4, "beats at 0, 10, 20 and 30 s");
        assert!(
            gaps(&beats.iter().map(|b| b.0).collect::<Vec<_>>()).iter().all(|gap| close_to(*gap, 10 * S))
        );
        for (index, (_, beat)) in beats.iter().enumerate() {
            assert_eq!(beat.sequence, index as u64 + 1);
            assert_eq!((beat.slice.as_str(), beat.node.as_str()), ("pl_demo", "node1.example.org"));
            assert_eq!(beat.manifest_version.as_deref(), Some("v1"));
            assert_eq!(beat.manifest_error, None);
            assert_eq!(beat.startup, StartupState::Running);
            assert_eq!(beat.agent_version, AGENT_VERSION);
            assert_eq!(beat.metrics.load1, Some(0.25));
        }
        assert_eq!(agent.fetches().len(), 1, "an unchanged manifest is not fetched again");
        assert!(agent.fetches()[0] <= beats[0].0);
        let expected =
            ["accounts key-a", "install http://files.example/tool.tgz", "install iperf3", "start ./run"];
        assert_eq!(agent.host.log(), expected, "accounts, then software in order, then the startup command");
        agent.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_version_is_fetched_before_the_next_heartbeat() {
        let agent = start(manifest("v1", "key-a", "./run")).await;
        sleep(15 * S).await;
        agent.set_manifest(manifest("v2", "key-b", "./run"));
        sleep(20 * S).await;
        let beats = agent.beats();
        let versions: Vec<_> =
            beats.iter().map(|(_, beat)| beat.manifest_version.as_deref().unwrap()).collect();
        assert_eq!(
            versions,
            ["v1", "v1", "v1", "v2"],
            "the beat after the one whose reply named v2 reports v2"
        );
        let fetches = agent.fetches();
        assert_eq!(fetches.len(), 2);
        assert!(beats[2].0 <= fetches[1] && fetches[1] < beats[3].0, "fetched between the two beats");
        assert!(close_to(fetches[1] - beats[2].0, Duration::ZERO), "fetched as soon as the reply named v2");
        assert_eq!(agent.host.count("accounts key-b"), 1);
        assert_eq!(agent.host.count("start"), 1, "the startup command did not change: it is not restarted");

        agent.set_manifest(manifest("v3", "key-b", "./run --again"));
        sleep(20 * S).await;
        assert_eq!(agent.host.log().last().map(String::as_str), Some("start ./run --again"));
        assert_eq!(agent.host.count("start"), 2);
        assert_eq!(agent.beats().last().unwrap().1.manifest_version.as_deref(), Some("v3"));
        agent.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_manifest_that_cannot_be_applied_is_reported_and_retried() {
        let long_error = format!("checksum mismatch {}", "x".repeat(100_000));
        let credential = Credential::generate(7);
        let (url, portal) = self::portal(manifest("v1", "key-a", "./run"), &credential).await;
        let host = Arc::new(FakeHost::default());
        *host.install_error.lock().unwrap() = Some(long_error);
        let config = AgentConfig {
            portal: url,
            credential: credential.expose(),
            slice: "pl_demo".to_owned(),
            node: "node1.example.org".to_owned(),
        };
        let stop = CancellationToken::new();
        let handle = tokio::spawn(run(config, host.clone(), reqwest::Client::new(), stop.clone()));
        let agent = Running { portal, host, stop, agent: handle };

        sleep(25 * S).await;
        let beats = agent.beats();
        assert_eq!(beats.len(), 3);
        for (_, beat) in &beats {
            assert_eq!(beat.manifest_version, None, "nothing was applied in full");
            let error = beat.manifest_error.as_deref().unwrap();
            assert!(
                error.starts_with("software #1: checksum mismatch") && error.len() < 2048,
                "{}",
                error.len()
            );
            assert!(
                matches!(&beat.startup, StartupState::Failed { error } if error.starts_with("software #1"))
            );
        }
        assert_eq!(agent.fetches().len(), 3, "retried before each beat whose reply still named v1");
        assert_eq!(agent.host.count("start"), 0);

        *agent.host.install_error.lock().unwrap() = None;
        sleep(10 * S).await;
        let (_, last) = agent.beats().pop().unwrap();
        assert_eq!(last.manifest_version.as_deref(), Some("v1"));
        assert_eq!((last.manifest_error, last.startup), (None, StartupState::Running));
        assert_eq!(agent.host.count("start"), 1);
        sleep(30 * S).await;
        assert_eq!(agent.fetches().len(), 4, "once applied, it is not fetched again");
        agent.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_unavailable_portal_is_retried_with_growing_backoff_then_beats_resume() {
        let agent = start(manifest("v1", "key-a", "./run")).await;
        sleep(5 * S).await;
        assert_eq!(agent.beats().len(), 1);
        agent.set_mode(Mode::Status(Status::SERVICE_UNAVAILABLE));
        sleep(30 * 60 * S).await;
        let attempts = agent.refused();
        // Every 10 s would be 180 attempts; the ceilings 1, 2, 4 … 256, 300, 300 … s allow about 15 to 35.
        assert!((8..=60).contains(&attempts.len()), "{} attempts in 30 minutes", attempts.len());
        let backoff = Backoff::default();
        for (index, gap) in gaps(&attempts).into_iter().enumerate() {
            let ceiling = backoff.ceiling(index as u32 + 1);
            assert!(gap <= ceiling + Duration::from_millis(10), "gap {index}: {gap:?} over {ceiling:?}");
        }
        let late = gaps(&attempts[attempts.len() / 2..]);
        assert!(late.iter().sum::<Duration>() / late.len() as u32 > 20 * S, "later retries are far apart");

        agent.set_mode(Mode::Normal);
        let recovered = Instant::now();
        sleep(300 * S + 35 * S).await;
        let beats: Vec<_> = agent.beats().into_iter().skip(1).collect();
        assert!(beats[0].0 - recovered <= 300 * S, "the first beat after recovery comes within the cap");
        assert!(beats.len() >= 3);
        assert!(
            gaps(&beats.iter().map(|b| b.0).collect::<Vec<_>>()).iter().all(|gap| close_to(*gap, 10 * S)),
            "the normal interval resumes, and no backlog of beats is flushed"
        );
        let sequences: Vec<u64> = beats.iter().map(|(_, beat)| beat.sequence).collect();
        assert_eq!(sequences[0], 1 + attempts.len() as u64 + 1, "each attempt was one fresh beat");
        assert!(sequences.windows(2).all(|pair| pair[1] == pair[0] + 1));
        assert_eq!(agent.fetches().len(), 1);

        // A success resets the backoff: the next outage starts again from the base.
        let before = agent.refused().len();
        agent.set_mode(Mode::Status(Status::INTERNAL_SERVER_ERROR));
        sleep(12 * S).await;
        let attempts = agent.refused()[before..].to_vec();
        assert!(
            attempts.len() >= 2
                && attempts[1] - attempts[0] <= backoff.ceiling(1) + Duration::from_millis(10)
        );
        agent.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_portal_times_out_and_is_retried() {
        let agent = start(manifest("v1", "key-a", "./run")).await;
        sleep(5 * S).await;
        agent.set_mode(Mode::Hang);
        sleep(120 * S).await;
        let attempts = agent.refused();
        assert!(gaps(&attempts).iter().all(|gap| *gap >= 10 * S), "each hung request waited out its timeout");
        assert!((3..=12).contains(&attempts.len()), "{} attempts", attempts.len());
        agent.set_mode(Mode::Normal);
        sleep(400 * S).await;
        assert!(agent.beats().len() >= 10);
        agent.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn other_client_errors_back_off_without_stopping() {
        let agent = start(manifest("v1", "key-a", "./run")).await;
        sleep(5 * S).await;
        agent.set_mode(Mode::Status(Status::NOT_FOUND));
        sleep(120 * S).await;
        assert!(!agent.agent.is_finished());
        let attempts = agent.refused().len();
        assert!((3..=15).contains(&attempts), "{attempts} attempts");
        agent.set_mode(Mode::Normal);
        sleep(300 * S).await;
        assert!(agent.beats().len() > 2);
        agent.stop().await;
    }

    async fn revoked_with(status: Status, after: Duration) {
        let agent = start(manifest("v1", "key-a", "./run")).await;
        sleep(after).await;
        agent.set_mode(Mode::Status(status));
        let result = tokio::time::timeout(15 * S, agent.agent).await.expect("the agent stops at once");
        assert!(matches!(result, Ok(Err(AgentError::Revoked))), "{status}: {result:?}");
        assert_eq!(agent.portal.lock().unwrap().refused.len(), 1, "{status}: no retry after a revocation");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_credential_stops_the_agent() {
        revoked_with(Status::UNAUTHORIZED, Duration::ZERO).await;
        revoked_with(Status::FORBIDDEN, 25 * S).await;
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_returns_promptly_while_sleeping_backing_off_or_waiting() {
        let agent = start(manifest("v1", "key-a", "./run")).await;
        sleep(5 * S).await;
        agent.stop().await;

        let agent = start(manifest("v1", "key-a", "./run")).await;
        sleep(5 * S).await;
        agent.set_mode(Mode::Status(Status::BAD_GATEWAY));
        sleep(200 * S).await;
        agent.stop().await;

        let agent = start(manifest("v1", "key-a", "./run")).await;
        sleep(5 * S).await;
        agent.set_mode(Mode::Hang);
        sleep(10 * S - Duration::from_millis(10)).await;
        agent.stop().await;
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_full_jitter() {
        let backoff = Backoff::default();
        let ceilings: Vec<u64> = (1..=12).map(|n| backoff.ceiling(n).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff.ceiling(u32::MAX), 300 * S);
        assert_eq!(backoff.delay(5, 0.5), 8 * S);
        assert_eq!(backoff.delay(5, 1.0), 16 * S);
        assert_eq!(backoff.delay(5, 0.0), Backoff::FLOOR);
    }

    #[tokio::test]
    async fn a_bad_configuration_is_refused_before_any_request() {
        let good = AgentConfig {
            portal: "https://portal.example".to_owned(),
            credential: Credential::generate(3).expose(),
            slice: "s".to_owned(),
            node: "n".to_owned(),
        };
        let cases = [
            (AgentConfig { portal: "portal.example".to_owned(), ..good.clone() }, "not a URL"),
            (AgentConfig { portal: "ftp://portal.example".to_owned(), ..good.clone() }, "not an http(s) URL"),
            (AgentConfig { credential: "secret".to_owned(), ..good.clone() }, "not a sliver credential"),
        ];
        for (config, reason) in cases {
            let host: Arc<dyn Host> = Arc::new(FakeHost::default());
            let result = run(config, host, reqwest::Client::new(), CancellationToken::new()).await;
            assert!(matches!(&result, Err(AgentError::Config(text)) if text.contains(reason)), "{result:?}");
        }
    }
}
