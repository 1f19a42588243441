//! PLCAPI over XML-RPC: the portal's one [`Testbed`] implementation.
//!
//! Every central call goes through [`Plc::call`]: it encodes the call with `dxr` (the wire format crate the
//! reference testbed serves with), authenticates with a password or a session, gives each attempt
//! [`Settings::request_timeout`], classifies the failure ([`super::error`]) and retries the retryable ones
//! with exponential backoff and full jitter (`backon`) until [`Settings::deadline`] is spent. The node
//! managers (`/NodeManager/<hostname>/`) and the sensor feed (`/sensor/paths.json`) are found beside the
//! PLCAPI URL, as the reference testbed serves them.

use super::{
    Endpoint, Generation, NodeOp, NodeRecord, PathRecord, SiteRecord, SliceRecord, SliceSpec, SliverRecord,
    Testbed,
    error::{Cause, Class, TestbedError, TestbedResult, fault},
    value::{Reader, string, strings, structure},
};
use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use dxr::{FaultResponse, MethodCall, MethodResponse, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{
    Mutex,
    atomic::{AtomicU32, Ordering},
};
use std::time::Duration;

/// The `User-Agent` of every request the portal makes to the testbed.
pub const USER_AGENT: &str = concat!("Portolan/", env!("CARGO_PKG_VERSION"), " (+PLCAPI client)");

/// How the client waits and retries.
#[derive(Clone, Debug)]
pub struct Settings {
    /// One attempt of a central call (and of a sensor feed download).
    pub request_timeout: Duration,
    /// One node manager call: `Create` answers only when the sliver is up, which takes minutes.
    pub node_manager_timeout: Duration,
    /// All attempts of one call together; a retryable failure reaches the caller once this is spent.
    pub deadline: Duration,
    /// The first backoff; each retry doubles it, up to `max_backoff`, with full jitter.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Authenticate with a PLCAPI session (`GetSession` once, then the session key) instead of sending the
    /// password with every call.
    pub session: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            node_manager_timeout: Duration::from_secs(20 * 60),
            deadline: Duration::from_secs(120),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(15),
            session: false,
        }
    }
}

pub struct Plc {
    http: reqwest::Client,
    endpoint: Endpoint,
    settings: Settings,
    /// The URL up to (not including) `PLCAPI/`: where the node managers and the sensor are.
    base: String,
    session: Mutex<Option<String>>,
    generation: Mutex<Option<Generation>>,
    /// The portal's own person id at the testbed (found once).
    person_id: Mutex<Option<i32>>,
}

impl std::fmt::Debug for Plc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the session key (nor the password: `Endpoint`'s own Debug leaves it out).
        f.debug_struct("Plc")
            .field("endpoint", &self.endpoint)
            .field("settings", &self.settings)
            .field("generation", &self.last_generation())
            .finish_non_exhaustive()
    }
}

impl Plc {
    /// A client of the PLCAPI at `endpoint.url`.
    ///
    /// # Errors
    /// When the URL is not an `http(s)://…` URL, or the HTTP client cannot be built.
    pub fn new(endpoint: Endpoint, settings: Settings) -> Result<Self, String> {
        let url = reqwest::Url::parse(&endpoint.url)
            .map_err(|e| format!("the testbed URL {:?} is not a URL: {e}", endpoint.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("the testbed URL {:?} must start with http:// or https://", endpoint.url));
        }
        let path = url.path();
        let base_path = path.strip_suffix('/').unwrap_or(path);
        let base_path = base_path.strip_suffix("PLCAPI").unwrap_or(base_path);
        let base_path = if base_path.ends_with('/') { base_path.to_owned() } else { format!("{base_path}/") };
        let mut base = url.clone();
        base.set_path(&base_path);
        base.set_query(None);
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            endpoint,
            settings,
            base: base.to_string(),
            session: Mutex::new(None),
            generation: Mutex::new(None),
            person_id: Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn password_auth(&self) -> Value {
        structure(&[
            ("AuthMethod", string("password")),
            ("Username", string(&self.endpoint.username)),
            ("AuthString", string(&self.endpoint.password)),
        ])
    }

    /// The auth struct for the next call: the password, or a session (made once, with the password).
    async fn auth(&self) -> TestbedResult<Value> {
        if !self.settings.session {
            return Ok(self.password_auth());
        }
        if let Some(key) = lock(&self.session).clone() {
            return Ok(structure(&[("AuthMethod", string("session")), ("session", string(key))]));
        }
        let answer =
            self.post_xmlrpc("GetSession", &self.plcapi_url(), vec![self.password_auth()], false).await?;
        let Value::String(key) = answer else {
            return Err(TestbedError::malformed("GetSession", "the session key should be a string"));
        };
        *lock(&self.session) = Some(key.clone());
        Ok(structure(&[("AuthMethod", string("session")), ("session", string(key))]))
    }

    fn plcapi_url(&self) -> String {
        self.endpoint.url.clone()
    }

    /// One PLCAPI call (auth struct first, then `params`), retried while its failures are retryable and the
    /// deadline lasts.
    pub async fn call(&self, method: &str, params: Vec<Value>) -> TestbedResult<Value> {
        self.retried(method, || async {
            let mut all = Vec::with_capacity(params.len() + 1);
            all.push(self.auth().await?);
            all.extend(params.iter().cloned());
            match self.post_xmlrpc(method, &self.plcapi_url(), all, false).await {
                // A session the testbed no longer knows: forget it, and let the retry make a new one.
                Err(e) if self.settings.session && e.fault_code() == Some(fault::AUTHENTICATION) => {
                    if lock(&self.session).take().is_some() {
                        Err(TestbedError { class: Class::Retryable, ..e })
                    } else {
                        Err(e)
                    }
                }
                other => other,
            }
        })
        .await
    }

    /// Runs `attempt` until it succeeds, fails other than retryably, or the deadline is spent; the error
    /// returned counts the attempts made.
    async fn retried<T, F, Fut>(&self, call: &str, attempt: F) -> TestbedResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = TestbedResult<T>>,
    {
        let attempts = AtomicU32::new(0);
        let last: Mutex<Option<TestbedError>> = Mutex::new(None);
        let mut attempt = attempt;
        let counted = || {
            attempts.fetch_add(1, Ordering::Relaxed);
            let next = attempt();
            async {
                let result = next.await;
                if let Err(e) = &result {
                    *lock(&last) = Some(e.clone());
                }
                result
            }
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.settings.min_backoff)
            .with_max_delay(self.settings.max_backoff)
            .with_jitter()
            .with_max_times(usize::MAX);
        let retrying = counted.retry(backoff).when(TestbedError::is_retryable).notify(|e, wait| {
            tracing::debug!(%e, ?wait, "testbed call failed, retrying");
        });
        let outcome = tokio::time::timeout(self.settings.deadline, retrying).await;
        let n = attempts.load(Ordering::Relaxed).max(1);
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(mut e)) => {
                e.attempts = n;
                Err(e)
            }
            Err(_) => {
                let mut e =
                    lock(&last).take().unwrap_or_else(|| TestbedError::new(call, Cause::Timeout, false));
                e.class = Class::Retryable;
                e.attempts = n;
                Err(e)
            }
        }
    }

    /// One XML-RPC request to `url`, classified but not retried.
    async fn post_xmlrpc(
        &self,
        method: &str,
        url: &str,
        params: Vec<Value>,
        per_node: bool,
    ) -> TestbedResult<Value> {
        let call_name = |m: &str| if per_node { format!("NodeManager.{m}@{url}") } else { m.to_owned() };
        let fail = |cause| TestbedError::new(call_name(method), cause, per_node);
        let body = MethodCall { name: method.into(), params }
            .to_xml()
            .map_err(|e| fail(Cause::Malformed(format!("cannot encode the call: {e}"))))?;
        let timeout =
            if per_node { self.settings.node_manager_timeout } else { self.settings.request_timeout };
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "text/xml")
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| fail(transport(&e)))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| fail(transport(&e)))?;
        if !status.is_success() {
            return Err(fail(Cause::Http(status.as_u16(), snippet(&text))));
        }
        if let Ok(answer) = MethodResponse::from_xml(&text) {
            return Ok(answer.value);
        }
        match FaultResponse::from_xml(&text) {
            Ok(f) => Err(fail(Cause::Fault(f.fault.code(), f.fault.string().to_owned()))),
            Err(_) => Err(fail(Cause::Malformed(format!("not an XML-RPC response: {}", snippet(&text))))),
        }
    }

    async fn get_structs(&self, method: &str, filter: Value, fields: &[&str]) -> TestbedResult<Vec<Struct>> {
        let fields = Value::Array(fields.iter().map(|f| string(*f)).collect());
        let answer = self.call(method, vec![filter, fields]).await?;
        Reader { call: method }.structs(answer)
    }

    /// The portal's own person id at the testbed.
    async fn own_person_id(&self) -> TestbedResult<i32> {
        if let Some(id) = *lock(&self.person_id) {
            return Ok(id);
        }
        let filter = structure(&[("email", string(&self.endpoint.username))]);
        let rows = self.get_structs("GetPersons", filter, &["person_id", "email"]).await?;
        let r = Reader { call: "GetPersons" };
        let row = rows.first().ok_or_else(|| r.bad("the portal's own account is not listed"))?;
        let id = r.int(row, "person_id")?;
        *lock(&self.person_id) = Some(id);
        Ok(id)
    }

    fn node_manager_url(&self, hostname: &str) -> String {
        format!("{}NodeManager/{hostname}/", self.base)
    }

    fn remember(&self, generation: Generation) {
        let mut seen = lock(&self.generation);
        if let Some(before) = *seen
            && before != generation
        {
            tracing::warn!(
                before = before.as_str(),
                now = generation.as_str(),
                "the testbed's API generation changed"
            );
        }
        *seen = Some(generation);
    }
}

type Struct = BTreeMap<String, Value>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn transport(e: &reqwest::Error) -> Cause {
    if e.is_timeout() {
        Cause::Timeout
    } else if e.is_decode() {
        Cause::Malformed(e.to_string())
    } else {
        Cause::Connection(e.to_string())
    }
}

/// The start of a body, for error messages (never a whole feed).
fn snippet(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &t[..cut]),
        None => t.to_owned(),
    }
}

const NODE_FIELDS: &[&str] =
    &["node_id", "hostname", "site_id", "boot_state", "ssh_rsa_key", "interface_ids", "last_contact"];

#[async_trait]
impl Testbed for Plc {
    fn location(&self) -> &str {
        &self.endpoint.url
    }

    async fn check_auth(&self) -> TestbedResult<()> {
        self.call("AuthCheck", Vec::new()).await.map(|_| ())
    }

    async fn generation(&self, probe: &str) -> TestbedResult<Generation> {
        let url = self.node_manager_url(probe);
        // An unknown method: a node manager answers with a fault; a testbed without them with a 404.
        let answer = self
            .retried("NodeManager probe", || self.post_xmlrpc("system.listMethods", &url, Vec::new(), true))
            .await;
        let generation = match answer {
            Ok(_) => Generation::NodeManager,
            Err(e) if matches!(e.cause, Cause::Fault(..)) => Generation::NodeManager,
            Err(e) if matches!(e.cause, Cause::Http(404, _)) => Generation::AsyncOnly,
            Err(e) => return Err(e),
        };
        self.remember(generation);
        Ok(generation)
    }

    fn last_generation(&self) -> Option<Generation> {
        *lock(&self.generation)
    }

    async fn sites(&self) -> TestbedResult<Vec<SiteRecord>> {
        let fields = ["site_id", "login_base", "name", "enabled", "max_slices", "latitude", "longitude"];
        let rows = self.get_structs("GetSites", Value::Nil, &fields).await?;
        let r = Reader { call: "GetSites" };
        rows.iter().map(|row| r.site(row)).collect()
    }

    async fn nodes(&self) -> TestbedResult<Vec<NodeRecord>> {
        let (nodes, interfaces, tags) = tokio::try_join!(
            self.get_structs("GetNodes", Value::Nil, NODE_FIELDS),
            self.get_structs("GetInterfaces", Value::Nil, &["interface_id", "ip"]),
            self.get_structs("GetNodeTags", Value::Nil, &["node_id", "tagname", "value"]),
        )?;
        let ri = Reader { call: "GetInterfaces" };
        let mut ips = HashMap::with_capacity(interfaces.len());
        for row in &interfaces {
            ips.insert(ri.int(row, "interface_id")?, ri.opt_text(row, "ip")?);
        }
        let rt = Reader { call: "GetNodeTags" };
        let mut tags_by_node: HashMap<i32, BTreeMap<String, String>> = HashMap::new();
        for row in &tags {
            let value = rt.opt_text(row, "value")?.unwrap_or_default();
            tags_by_node.entry(rt.int(row, "node_id")?).or_default().insert(rt.text(row, "tagname")?, value);
        }
        let r = Reader { call: "GetNodes" };
        nodes
            .iter()
            .map(|row| {
                let node_id = r.int(row, "node_id")?;
                let ip = r.ints(row, "interface_ids")?.first().and_then(|id| ips.get(id).cloned().flatten());
                Ok(NodeRecord {
                    node_id,
                    hostname: r.text(row, "hostname")?,
                    site_id: r.int(row, "site_id")?,
                    boot_state: r.opt_text(row, "boot_state")?.unwrap_or_default(),
                    ip,
                    host_key: r.opt_text(row, "ssh_rsa_key")?.filter(|k| !k.trim().is_empty()),
                    last_contact: r.opt_time(row, "last_contact")?,
                    tags: tags_by_node.remove(&node_id).unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn paths(&self) -> TestbedResult<Vec<PathRecord>> {
        let url = format!("{}sensor/paths.json", self.base);
        self.retried("sensor feed", || async {
            let fail = |cause| TestbedError::new("sensor feed", cause, false);
            let response = self
                .http
                .get(&url)
                .timeout(self.settings.request_timeout)
                .send()
                .await
                .map_err(|e| fail(transport(&e)))?;
            let status = response.status();
            if !status.is_success() {
                let text = response.text().await.unwrap_or_default();
                return Err(fail(Cause::Http(status.as_u16(), snippet(&text))));
            }
            let bytes = response.bytes().await.map_err(|e| fail(transport(&e)))?;
            serde_json::from_slice::<Vec<PathRecord>>(&bytes)
                .map_err(|e| fail(Cause::Malformed(format!("the feed is not a list of paths: {e}"))))
        })
        .await
    }

    async fn create_slice(&self, spec: &SliceSpec) -> TestbedResult<SliceRecord> {
        let fields = structure(&[
            ("name", string(&spec.name)),
            ("description", string(&spec.description)),
            ("url", string(&spec.url)),
            ("instantiation", string(&spec.instantiation)),
            ("max_nodes", Value::Integer(spec.max_nodes)),
        ]);
        match self.call("AddSlice", vec![fields]).await {
            Ok(_) => {}
            // "Slice name … already in use": ours (made by an earlier attempt whose answer came late), or
            // somebody else's.
            Err(e) if e.fault_code() == Some(fault::INVALID_ARGUMENT) => {
                let mine = self.own_person_id().await?;
                match self.slice(&spec.name).await? {
                    Some(existing) if existing.creator_person_id == Some(mine) => return Ok(existing),
                    _ => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        self.slice(&spec.name).await?.ok_or_else(|| {
            TestbedError::malformed("GetSlices", format!("slice {} is not listed after AddSlice", spec.name))
        })
    }

    async fn slice(&self, name: &str) -> TestbedResult<Option<SliceRecord>> {
        let fields = ["slice_id", "name", "expires", "node_ids", "person_ids", "creator_person_id"];
        let filter = structure(&[("name", string(name))]);
        let rows = self.get_structs("GetSlices", filter, &fields).await?;
        let r = Reader { call: "GetSlices" };
        rows.iter().map(|row| r.slice(row)).find(|s| s.as_ref().map_or(true, |s| s.name == name)).transpose()
    }

    async fn renew_slice(&self, name: &str, expires: DateTime<Utc>) -> TestbedResult<SliceRecord> {
        let fields = structure(&[("expires", Value::Long(expires.timestamp()))]);
        self.call("UpdateSlice", vec![string(name), fields]).await?;
        // What the testbed granted, which may differ from what was asked.
        self.slice(name).await?.ok_or_else(|| {
            TestbedError::new(
                "UpdateSlice",
                Cause::Fault(fault::INVALID_ARGUMENT, format!("No such slice {name}")),
                false,
            )
        })
    }

    async fn delete_slice(&self, name: &str) -> TestbedResult<()> {
        match self.call("DeleteSlice", vec![string(name)]).await {
            Ok(_) => Ok(()),
            // Gone already (perhaps by an earlier attempt whose answer came late): success.
            Err(e)
                if e.fault_code() == Some(fault::INVALID_ARGUMENT) && self.slice(name).await?.is_none() =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn add_person_to_slice(&self, email: &str, keys: &[String], slice: &str) -> TestbedResult<()> {
        let filter = structure(&[("email", string(email))]);
        let found = self.get_structs("GetPersons", filter.clone(), &["person_id", "key_ids"]).await?;
        if found.is_empty() {
            let fields = structure(&[
                ("email", string(email)),
                ("first_name", string("Portolan")),
                ("last_name", string("user")),
            ]);
            match self.call("AddPerson", vec![fields]).await {
                Ok(_) => {}
                // "already in use": made by an earlier attempt.
                Err(e) if e.fault_code() == Some(fault::INVALID_ARGUMENT) => {}
                Err(e) => return Err(e),
            }
        }
        let rows = self.get_structs("GetPersons", filter, &["person_id", "key_ids"]).await?;
        let r = Reader { call: "GetPersons" };
        let person = rows.first().ok_or_else(|| r.bad(format!("{email} is not listed after AddPerson")))?;
        let key_ids = r.ints(person, "key_ids")?;
        let have: Vec<String> = if key_ids.is_empty() {
            Vec::new()
        } else {
            let ids = Value::Array(key_ids.into_iter().map(Value::Integer).collect());
            let rk = Reader { call: "GetKeys" };
            self.get_structs("GetKeys", ids, &["key"])
                .await?
                .iter()
                .map(|row| rk.text(row, "key"))
                .collect::<TestbedResult<_>>()?
        };
        for key in keys.iter().filter(|k| !have.iter().any(|h| h.trim() == k.trim())) {
            let fields = structure(&[("key_type", string("ssh")), ("key", string(key))]);
            self.call("AddPersonKey", vec![string(email), fields]).await?;
        }
        self.call("AddPersonToSlice", vec![string(email), string(slice)]).await.map(|_| ())
    }

    async fn bind(&self, slice: &str, hostnames: &[String]) -> TestbedResult<()> {
        self.call("AddSliceToNodes", vec![string(slice), strings(hostnames)]).await.map(|_| ())
    }

    async fn unbind(&self, slice: &str, hostnames: &[String]) -> TestbedResult<()> {
        self.call("DeleteSliceFromNodes", vec![string(slice), strings(hostnames)]).await.map(|_| ())
    }

    async fn slivers(&self, hostname: &str) -> TestbedResult<Vec<SliverRecord>> {
        let answer = self.call("GetSlivers", vec![string(hostname)]).await?;
        let r = Reader { call: "GetSlivers" };
        let Value::Struct(top) = answer else { return Err(r.bad("expected a struct")) };
        let slivers = top.get("slivers").cloned().unwrap_or(Value::Array(Vec::new()));
        r.structs(slivers)?
            .iter()
            .map(|s| {
                let keys = s.get("keys").cloned().unwrap_or(Value::Array(Vec::new()));
                Ok(SliverRecord {
                    slice: r.text(s, "name")?,
                    expires: r.time(s, "expires")?,
                    keys: r.structs(keys)?.iter().map(|k| r.text(k, "key")).collect::<TestbedResult<_>>()?,
                })
            })
            .collect()
    }

    async fn node_manager(&self, hostname: &str, op: NodeOp, slice: &str) -> TestbedResult<()> {
        let url = self.node_manager_url(hostname);
        let answer = self
            .retried(op.method(), || async {
                let params = vec![string(slice), self.password_auth()];
                self.post_xmlrpc(op.method(), &url, params, true).await
            })
            .await;
        match answer {
            Ok(_) => {
                self.remember(Generation::NodeManager);
                Ok(())
            }
            Err(e) => {
                if matches!(e.cause, Cause::Http(404, _)) {
                    self.remember(Generation::AsyncOnly);
                }
                Err(e)
            }
        }
    }
}
