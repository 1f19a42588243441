//! The reference testbed: a PlanetLab-Central-compatible service that Portolan is developed, tested and
//! demonstrated against, with the real interface and honest failure behaviour (see `../shared/DESIGN.md`).
//!
//! - `/PLCAPI/`: PLCAPI over XML-RPC (Python's `xmlrpc.client` drives it as PlanetLab users' scripts did);
//! - `/NodeManager/{hostname}/`: each node's manager, the synchronous path (only in the `node-manager`
//!   generation);
//! - `/sensor/paths.json`, `/sensor/paths.csv`: the all-pairs path feed.
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
        })
    }

    pub fn now(&self) -> f64 {
        self.clock.now()
    }

    /// The state, brought up to now (churn applied, expired slices emptied).
    pub fn state(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.advance(&self.world, &self.profile, self.seed, self.start, self.now());
        state
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
        if u < api.timeout_probability {
            Injected::Timeout
        } else if u < api.timeout_probability + api.http_5xx_probability {
            Injected::Unavailable
        } else if u < api.timeout_probability + api.http_5xx_probability + api.fault_probability {
            Injected::Fault
        } else {
            Injected::None
        }
    }

    /// Runs one PLCAPI call (no fault injection: that is the HTTP layer's).
    pub fn plcapi(&self, method: &str, params: Vec<Value>) -> PlcResult<Value> {
        let mut state = self.state();
        plcapi::call(self, &mut state, method, params)
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

/// Applies the drawn fault around `work`.
async fn injected(tb: &Testbed, work: impl Future<Output = PlcResult<Value>>) -> Response {
    match tb.inject() {
        Injected::Unavailable => {
            (StatusCode::SERVICE_UNAVAILABLE, "PLC is temporarily unavailable").into_response()
        }
        Injected::Fault => answer(Err(Fault::new(Code::DbError, "Database error (injected fault)"))),
        Injected::Timeout => {
            let result = work.await;
            // Profiles are validated at load; one built in code may still hold anything, so convert without
            // panicking (a bad delay is no delay).
            let delay =
                std::time::Duration::try_from_secs_f64(tb.profile.api.timeout_delay_s).unwrap_or_default();
            tokio::time::sleep(delay).await;
            answer(result)
        }
        Injected::None => answer(work.await),
    }
}

async fn plcapi_handler(AxumState(tb): AxumState<Arc<Testbed>>, body: Bytes) -> Response {
    let (method, params) = match parse(&body) {
        Ok(call) => call,
        Err(fault) => return answer(Err(fault)),
    };
    injected(&tb, async { tb.plcapi(&method, params) }).await
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
