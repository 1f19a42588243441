//! The reference testbed: a PlanetLab-Central-compatible service that Portolan is developed, tested and
//! demonstrated against, with the real interface and honest failure behaviour (see `../shared/DESIGN.md`).
//!
//! - `/PLCAPI/`: PLCAPI over XML-RPC (Python's `xmlrpc.client` drives it as PlanetLab users' scripts did);
//! - `/NodeManager/{hostname}/`: each node's manager, the synchronous path (only in the `node-manager`
//!   generation);
//! - `/sensor/paths.json`, `/sensor/paths.csv`: the all-pairs path feed;
//! - every sliver's SSH endpoint ([`ssh`], served apart by [`Testbed::serve_ssh`]), where most slivers are
//!   simulated ([`sliver`]) and some may be real `sshd`s ([`Testbed::back_with_sshd`]).
//!
//! Its world ([`world`]) comes from the real PlanetLab data; its behaviour ([`profile`]) from a profile, with
//! every random choice drawn from one seed ([`random`]); its time ([`clock`]) may run scaled. State lives in
//! memory: restarting the testbed forgets slices, as a testbed that lost its database would.

pub mod cli;
pub mod clock;
pub mod fault;
pub mod filter;
pub mod node_manager;
pub mod plcapi;
pub mod profile;
pub mod random;
pub mod sensor;
pub mod sliver;
pub mod ssh;
pub mod state;
pub mod ticket;
pub mod world;

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State as AxumState},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use clock::Clock;
use dxr::{FaultResponse, MethodCall, MethodResponse, Value};
use fault::{Code, Fault, PlcResult};
use profile::{Generation, Profile};
use rand_distr::{Distribution, LogNormal};
use state::{Person, ROLE_ADMIN, ROLE_PI, State};
use std::sync::{Arc, Mutex, MutexGuard, atomic::AtomicU64, atomic::Ordering};
use std::time::Duration;
use world::World;

/// How to build a testbed.
#[derive(Debug, Clone)]
pub struct Settings {
    pub seed: u64,
    pub profile: Profile,
    pub clock: Clock,
    /// Admin accounts (email, password): they may act as PI at every site.
    pub admins: Vec<(String, String)>,
}

pub struct Testbed {
    pub world: World,
    pub profile: Profile,
    pub clock: Clock,
    pub seed: u64,
    /// Testbed time at start.
    pub start: f64,
    tickets: ticket::Tickets,
    state: Mutex<State>,
    calls: AtomicU64,
    /// Faults injected so far: timeouts, 503s, faults 106.
    injected: [AtomicU64; 3],
    /// The longest the state lock was held so far, in nanoseconds of real time.
    max_hold_ns: AtomicU64,
    /// Bounds the CPU-heavy work (PLCAPI calls, the sensor feed) running at once on tokio's blocking pool.
    permits: Arc<tokio::sync::Semaphore>,
    pub(crate) sensor: sensor::Cache,
    /// The slivers' SSH endpoints: listener port, sshd-backed nodes, simulated slivers.
    pub(crate) ssh: ssh::Endpoints,
}

/// The state, locked, brought up to now. Dropping it releases the lock and records how long it was held.
pub struct StateGuard<'a> {
    guard: MutexGuard<'a, State>,
    since: std::time::Instant,
    max_hold_ns: &'a AtomicU64,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        let held = u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.max_hold_ns.fetch_max(held, Ordering::Relaxed);
    }
}

/// The fate the fault injector draws for one API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    None,
    /// Answered late: the call takes effect, the answer comes after `timeout_delay_s`.
    Timeout,
    /// HTTP 503; the call has no effect.
    Unavailable,
    /// XML-RPC fault 106; the call has no effect.
    Fault,
}

impl Testbed {
    pub fn new(settings: Settings) -> Arc<Self> {
        let world = match settings.profile.world.nodes {
            0 => World::planetlab(settings.seed),
            n => World::generate(n, settings.seed),
        };
        Self::with_world(settings, world)
    }

    pub fn with_world(settings: Settings, world: World) -> Arc<Self> {
        let start = settings.clock.now();
        let mut state = State::new(&world, &settings.profile, settings.seed, start);
        let all_sites: Vec<i32> = world.sites.iter().map(|s| s.site_id).collect();
        for (email, password) in settings.admins {
            let person_id = state.fresh_id();
            let mut admin = Person::new(person_id, email, Some(password), start);
            admin.roles = vec![ROLE_ADMIN, ROLE_PI];
            admin.site_ids = all_sites.clone();
            state.persons.insert(person_id, admin);
        }
        Arc::new(Self {
            tickets: ticket::Tickets::new(settings.seed),
            world,
            profile: settings.profile,
            clock: settings.clock,
            seed: settings.seed,
            start,
            state: Mutex::new(state),
            calls: AtomicU64::new(0),
            injected: Default::default(),
            max_hold_ns: AtomicU64::new(0),
            permits: Arc::new(tokio::sync::Semaphore::new(blocking_permits())),
            sensor: sensor::Cache::default(),
            ssh: ssh::Endpoints::default(),
        })
    }

    pub fn now(&self) -> f64 {
        self.clock.now()
    }

    /// The state, brought up to now (churn applied, expired slices emptied). Hold it briefly: readers copy
    /// what they need (the node table is an `Arc`) and work after dropping it.
    pub fn state(&self) -> StateGuard<'_> {
        let guard = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut state =
            StateGuard { guard, since: std::time::Instant::now(), max_hold_ns: &self.max_hold_ns };
        state.advance(&self.world, &self.profile, self.seed, self.start, self.now());
        state
    }

    /// The longest the state lock has been held (real time) since start or the last [`Self::reset_max_lock_hold`].
    pub fn max_lock_hold(&self) -> Duration {
        Duration::from_nanos(self.max_hold_ns.load(Ordering::Relaxed))
    }

    /// How many times the whole sensor feed has been built (once per measurement round and node set).
    pub fn sensor_feed_builds(&self) -> u64 {
        self.sensor.computations()
    }

    pub fn reset_max_lock_hold(&self) {
        self.max_hold_ns.store(0, Ordering::Relaxed);
    }

    /// Runs CPU-heavy `work` on tokio's blocking pool, never on the async workers (in the embedded mode they
    /// are the portal's), and at most [`blocking_permits`] such jobs at once. The permit is held until the
    /// work ends, even if the caller stops waiting.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let permit = self.permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
    }

    pub fn generation(&self) -> Generation {
        let api = &self.profile.api;
        let switched = api.switch_after_s > 0.0 && self.now() >= self.start + api.switch_after_s;
        match (api.generation, switched) {
            (g, false) => g,
            (Generation::NodeManager, true) => Generation::AsyncOnly,
            (Generation::AsyncOnly, true) => Generation::NodeManager,
        }
    }

    /// How long the sliver of `slice` on `node` takes to come up on the asynchronous path, or `None` if it
    /// never will. Drawn from the seed, the slice name and the node, so reruns see the same delays.
    pub fn instantiation_delay(&self, slice: &str, node: usize) -> Option<f64> {
        let p = &self.profile.instantiation;
        let key = [random::text_key(slice), node as u64];
        if random::unit(self.seed, "instantiation-fails", &key) < p.fail_probability {
            return None;
        }
        let shape = LogNormal::new(p.median_s.ln(), p.sigma.max(1e-9)).ok()?;
        Some(shape.sample(&mut random::stream(self.seed, "instantiation-delay", &key)).min(p.max_s))
    }

    /// Draws the fate of the next API call (the n-th call's fate depends on the seed and n only).
    pub fn inject(&self) -> Injected {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let api = &self.profile.api;
        let u = random::unit(self.seed, "api-fault", &[n]);
        let fate = if u < api.timeout_probability {
            Injected::Timeout
        } else if u < api.timeout_probability + api.http_5xx_probability {
            Injected::Unavailable
        } else if u < api.timeout_probability + api.http_5xx_probability + api.fault_probability {
            Injected::Fault
        } else {
            Injected::None
        };
        if let Some(slot) = Self::slot(fate) {
            self.injected[slot].fetch_add(1, Ordering::Relaxed);
        }
        fate
    }

    fn slot(fate: Injected) -> Option<usize> {
        match fate {
            Injected::Timeout => Some(0),
            Injected::Unavailable => Some(1),
            Injected::Fault => Some(2),
            Injected::None => None,
        }
    }

    /// How many calls so far were given `fate` (for tests that must know a fault really happened).
    pub fn injected(&self, fate: Injected) -> u64 {
        Self::slot(fate).map_or(0, |slot| self.injected[slot].load(Ordering::Relaxed))
    }

    /// Runs one PLCAPI call (no fault injection: that is the HTTP layer's). Synchronous and possibly heavy
    /// (a `GetNodes` of a large world): async callers run it through [`Self::blocking`].
    pub fn plcapi(&self, method: &str, params: Vec<Value>) -> PlcResult<Value> {
        plcapi::call(self, method, params)
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/PLCAPI/", post(plcapi_handler))
            .route("/PLCAPI", post(plcapi_handler))
            .route("/NodeManager/{hostname}/", post(node_manager_handler))
            .route("/NodeManager/{hostname}", post(node_manager_handler))
            .route("/sensor/paths.json", get(sensor::json))
            .route("/sensor/paths.csv", get(sensor::csv))
            .with_state(self)
    }
}

/// How many CPU-heavy jobs may run at once: all cores but one (at least one), so that the embedded testbed
/// always leaves the portal a core.
pub fn blocking_permits() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// A testbed account with admin rights, for scripts and tests.
pub fn parse_admin(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((email, password)) if email.contains('@') && !password.is_empty() => {
            Ok((email.to_owned(), password.to_owned()))
        }
        _ => Err(format!("expected EMAIL:PASSWORD, got {:?}", text.split(':').next().unwrap_or(""))),
    }
}

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

fn answer(result: PlcResult<Value>) -> Response {
    let body = match result {
        Ok(value) => MethodResponse { value }.to_xml(),
        Err(fault) => FaultResponse { fault: fault.into_xmlrpc() }.to_xml(),
    };
    match body {
        Ok(body) => xml(body),
        Err(e) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the answer: {e}")).into_response()
        }
    }
}

fn parse(body: &[u8]) -> PlcResult<(String, Vec<Value>)> {
    let text = std::str::from_utf8(body).map_err(|_| Fault::invalid("the request is not UTF-8"))?;
    let call =
        MethodCall::from_xml(text).map_err(|_| Fault::invalid("the request is not an XML-RPC methodCall"))?;
    Ok((call.name.into_owned(), call.params))
}

/// Applies the drawn fault around `work` (which answers the call).
async fn injected(tb: &Testbed, work: impl Future<Output = Response>) -> Response {
    match tb.inject() {
        Injected::Unavailable => {
            (StatusCode::SERVICE_UNAVAILABLE, "PLC is temporarily unavailable").into_response()
        }
        Injected::Fault => answer(Err(Fault::new(Code::DbError, "Database error (injected fault)"))),
        Injected::Timeout => {
            let response = work.await;
            // Profiles are validated at load; one built in code may still hold anything, so convert without
            // panicking (a bad delay is no delay).
            let delay = Duration::try_from_secs_f64(tb.profile.api.timeout_delay_s).unwrap_or_default();
            tokio::time::sleep(delay).await;
            response
        }
        Injected::None => work.await,
    }
}

/// Requests up to this size are parsed on the async worker; larger ones on the blocking pool.
const INLINE_PARSE_BYTES: usize = 16 * 1024;

fn internal_error(e: tokio::task::JoinError) -> Response {
    tracing::error!("reference testbed: a call failed: {e}");
    (StatusCode::INTERNAL_SERVER_ERROR, "the call failed").into_response()
}

/// A PLCAPI call. Filtered reads (`Get*`, whose cost grows with the world) are run and encoded off the async
/// workers (see [`Testbed::blocking`]), as is parsing a large request; the rest (microseconds) runs inline. The
/// state lock is held only for what the method must read or change.
async fn plcapi_handler(AxumState(tb): AxumState<Arc<Testbed>>, body: Bytes) -> Response {
    let parsed = if body.len() <= INLINE_PARSE_BYTES {
        parse(&body)
    } else {
        match tb.blocking(move || parse(&body)).await {
            Ok(parsed) => parsed,
            Err(e) => return internal_error(e),
        }
    };
    let (method, params) = match parsed {
        Ok(call) => call,
        Err(fault) => return answer(Err(fault)),
    };
    let work = async {
        if plcapi::is_read(&method) {
            let testbed = tb.clone();
            tb.blocking(move || answer(testbed.plcapi(&method, params))).await.unwrap_or_else(internal_error)
        } else {
            // Writes and one-record reads take microseconds: they need not queue behind a large read.
            answer(tb.plcapi(&method, params))
        }
    };
    injected(&tb, work).await
}

async fn node_manager_handler(
    AxumState(tb): AxumState<Arc<Testbed>>,
    Path(hostname): Path<String>,
    body: Bytes,
) -> Response {
    if tb.generation() == Generation::AsyncOnly {
        return (StatusCode::NOT_FOUND, "this testbed generation has no node managers").into_response();
    }
    let node = {
        let state = tb.state();
        match state.by_host.get(&hostname) {
            Some(&i) if state.nodes[i].up => i,
            _ => return (StatusCode::BAD_GATEWAY, format!("{hostname} does not answer")).into_response(),
        }
    };
    let (method, params) = match parse(&body) {
        Ok(call) => call,
        Err(fault) => return answer(Err(fault)),
    };
    answer(node_manager::call(&tb, node, &method, params).await)
}

/// Serves the testbed on `listener` until `shutdown` completes.
pub async fn serve(
    tb: Arc<Testbed>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, tb.router()).with_graceful_shutdown(shutdown).await
}
