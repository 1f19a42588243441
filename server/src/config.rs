//! Portolan's configuration: one typed value, read at start from defaults, an optional TOML file and the
//! environment (in that order, later wins), and validated at once so that a bad setting stops the start with
//! a message naming it.
//!
//! | setting | environment | default | meaning |
//! |---|---|---|---|
//! | (file) | `PORTOLAN_CONFIG` | `portolan.toml` if it exists | path of a TOML file with the settings below |
//! | `listen` | `PORTOLAN_LISTEN` | `127.0.0.1:3000` | address and port the portal listens on |
//! | `data_dir` | `PORTOLAN_DATA_DIR` | `./portolan-data` | where the embedded SQLite database lives |
//! | `database_url` | `DATABASE_URL` or `PORTOLAN_DATABASE_URL` | `sqlite://<data_dir>/portolan.db` | `sqlite://…` or `postgres://…` |
//! | `db_max_connections` | `PORTOLAN_DB_MAX_CONNECTIONS` | `10` | size of the database pool |
//! | `site_root` | `PORTOLAN_SITE_ROOT` | `target/site` | the built browser bundle and CSS (`pkg/`) |
//! | `public_url` | `PORTOLAN_PUBLIC_URL` | none | the URL users reach the portal at; `https://…` makes session cookies `Secure` |
//! | `session_days` | `PORTOLAN_SESSION_DAYS` | `7` | a session ends after this many days without use |
//! | `log` | `PORTOLAN_LOG` | `info` | a tracing filter, e.g. `info,server=debug` |
//! | `testbed_url` | `PORTOLAN_TESTBED_URL` | none | a PLCAPI URL; unset, `serve` runs the reference testbed in-process |
//! | `testbed_listen` | `PORTOLAN_TESTBED_LISTEN` | `127.0.0.1:3001` | where the in-process reference testbed listens |
//! | `testbed_ssh_listen` | `PORTOLAN_TESTBED_SSH_LISTEN` | `0.0.0.0:0` (a free port) | where the in-process testbed's slivers answer SSH: node *i* at 127.64.0.0 + *i* + 1 on this port (loopback only: connections to any other address are closed at once) |
//! | `testbed_profile` | `PORTOLAN_TESTBED_PROFILE` | `mild` | its profile: `mild`, `paper`, `harsh` or a TOML file |
//! | `testbed_seed` | `PORTOLAN_TESTBED_SEED` | `1` | its seed |
//! | `testbed_time_scale` | `PORTOLAN_TESTBED_TIME_SCALE` | `1` | testbed seconds per real second; the portal's own clock follows it when the testbed is embedded |
//! | `testbed_user` | `PORTOLAN_TESTBED_USER` | none | the portal's account at the testbed of `testbed_url` (an e-mail address; the embedded testbed makes its own) |
//! | `testbed_password` | `PORTOLAN_TESTBED_PASSWORD` | none | its password (never logged) |
//! | `testbed_timeout_s` | `PORTOLAN_TESTBED_TIMEOUT_S` | `30` | one attempt of a testbed call; retryable failures are retried for up to 4× this |
//! | `discovery_nodes_s` | `PORTOLAN_DISCOVERY_NODES_S` | `300` | seconds between readings of the testbed's sites and nodes (10 to 86400) |
//! | `discovery_paths_s` | `PORTOLAN_DISCOVERY_PATHS_S` | `900` | seconds between readings of the sensor's path feed (10 to 86400) |
//! | `agent_url` | `PORTOLAN_AGENT_URL` | `public_url`, else `http://<listen>` (`127.0.0.1` for an unspecified address) | the portal's URL as slivers reach it: agents heartbeat there and fetch their binary there |
//! | `agent_binary` | `PORTOLAN_AGENT_BINARY` | the running `portolan` | the binary bring-up installs in slivers (Linux x86-64, like the slivers), served at `/agent/v1/portolan/<sha256>` |
//! | `heartbeat_s` | `PORTOLAN_HEARTBEAT_S` | `30` | seconds between an agent's heartbeats (1 to 3600) |
//! | `silence_s` | `PORTOLAN_SILENCE_S` | `120` | a sliver silent this long is down (more than `heartbeat_s`, at most 86400) |
//! | `bringup_concurrency` | `PORTOLAN_BRINGUP_CONCURRENCY` | `128` | SSH bring-ups at once per process (1–1024); steps that wait on the testbed (a node manager's `Create`) may run four times as many |
//! | `liveness_batch` | `PORTOLAN_LIVENESS_BATCH` | `64` | nodes (re-)tested per liveness pass, every 5 s (1 to 10000) |
//! | `service_slice` | `PORTOLAN_SERVICE_SLICE` | `<first site's login base>_portolan` | the name of Portolan's own slice, with a sliver on every node |
//! | `header_timeout_s` | `PORTOLAN_HEADER_TIMEOUT_S` | `10` | a connection that has not sent a request's whole head (request line and headers) this many seconds after it opened, or after its last answer (an idle keep-alive connection), is closed; fractions allowed (0 < s ≤ 3600) |
//! | `body_timeout_s` | `PORTOLAN_BODY_TIMEOUT_S` | `30` | a request's whole body must have arrived this many seconds after its head, however steadily it trickles in, else the request is answered 400 (JSON) and its connection closed; fractions allowed (0 < s ≤ 3600) |
//! | `max_in_flight` | `PORTOLAN_MAX_IN_FLIGHT` | `512` | requests handled at once; beyond it a request is answered 503 (JSON) at once instead of queueing |
//! | `trusted_proxies` | `PORTOLAN_TRUSTED_PROXIES` | none | addresses or CIDR blocks of the reverse proxies in front (TOML: a list, `["10.0.0.2", "fd00::/8"]`; environment: comma-separated, `10.0.0.2,fd00::/8`). Only a request whose peer is one of them has its client address (for per-client throttling of log-ins and registrations) read from `X-Forwarded-For`: the right-most entry that is not a trusted proxy. From any other peer the header is ignored |

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    str::FromStr,
    time::Duration,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub db_max_connections: u32,
    pub site_root: PathBuf,
    pub public_url: Option<String>,
    pub session_days: u32,
    pub log: String,
    pub testbed_url: Option<String>,
    pub testbed_listen: SocketAddr,
    pub testbed_ssh_listen: SocketAddr,
    pub testbed_profile: String,
    pub testbed_seed: u64,
    pub testbed_time_scale: f64,
    pub testbed_user: Option<String>,
    pub testbed_password: Option<Secret>,
    pub testbed_timeout_s: f64,
    pub discovery_nodes_s: f64,
    pub discovery_paths_s: f64,
    pub agent_url: Option<String>,
    pub agent_binary: Option<PathBuf>,
    pub heartbeat_s: f64,
    pub silence_s: f64,
    pub bringup_concurrency: usize,
    pub liveness_batch: u32,
    pub service_slice: Option<String>,
    pub header_timeout_s: f64,
    pub body_timeout_s: f64,
    pub max_in_flight: usize,
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            data_dir: PathBuf::from("portolan-data"),
            database_url: None,
            db_max_connections: 10,
            site_root: PathBuf::from("target/site"),
            public_url: None,
            session_days: 7,
            log: "info".to_owned(),
            testbed_url: None,
            testbed_listen: SocketAddr::from(([127, 0, 0, 1], 3001)),
            testbed_ssh_listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            testbed_profile: "mild".to_owned(),
            testbed_seed: 1,
            testbed_time_scale: 1.0,
            testbed_user: None,
            testbed_password: None,
            testbed_timeout_s: 30.0,
            discovery_nodes_s: 300.0,
            discovery_paths_s: 900.0,
            agent_url: None,
            agent_binary: None,
            heartbeat_s: 30.0,
            silence_s: 120.0,
            bringup_concurrency: 128,
            liveness_batch: 64,
            service_slice: None,
            header_timeout_s: 10.0,
            body_timeout_s: 30.0,
            max_in_flight: 512,
            trusted_proxies: Vec::new(),
        }
    }
}

/// A setting that must never reach a log: `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Figment(String),
    #[error("configuration: PORTOLAN_CONFIG names {0}, which does not exist")]
    MissingFile(PathBuf),
    #[error("configuration: {setting} is invalid: {why}")]
    Invalid { setting: &'static str, why: String },
}

impl Config {
    /// Reads the configuration from the defaults, the file and the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        let mut figment = Figment::new().merge(Serialized::defaults(Config::default()));
        match std::env::var_os("PORTOLAN_CONFIG") {
            Some(path) => {
                let path = PathBuf::from(path);
                if !path.exists() {
                    return Err(ConfigError::MissingFile(path));
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None if std::path::Path::new("portolan.toml").exists() => {
                figment = figment.merge(Toml::file_exact("portolan.toml"));
            }
            None => {}
        }
        figment = figment
            .merge(Env::prefixed("PORTOLAN_").ignore(&["config"]))
            .merge(Env::raw().only(&["DATABASE_URL"]));
        let config: Config = figment.extract().map_err(|e| ConfigError::Figment(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid {
                setting: "database_url (DATABASE_URL)",
                why: "expected sqlite://… or postgres://…".to_owned(),
            });
        }
        http_url(&self.public_url, "public_url (PORTOLAN_PUBLIC_URL)")?;
        if self.db_max_connections == 0 {
            return Err(ConfigError::Invalid {
                setting: "db_max_connections (PORTOLAN_DB_MAX_CONNECTIONS)",
                why: "must be at least 1".to_owned(),
            });
        }
        if self.session_days == 0 || self.session_days > 365 {
            return Err(ConfigError::Invalid {
                setting: "session_days (PORTOLAN_SESSION_DAYS)",
                why: "must be from 1 to 365".to_owned(),
            });
        }
        if !(self.testbed_time_scale > 0.0 && self.testbed_time_scale.is_finite()) {
            return Err(ConfigError::Invalid {
                setting: "testbed_time_scale (PORTOLAN_TESTBED_TIME_SCALE)",
                why: "must be a positive number".to_owned(),
            });
        }
        http_url(&self.testbed_url, "testbed_url (PORTOLAN_TESTBED_URL)")?;
        if self.testbed_url.is_some() && (self.testbed_user.is_none() || self.testbed_password.is_none()) {
            return Err(ConfigError::Invalid {
                setting: "testbed_user and testbed_password (PORTOLAN_TESTBED_USER, PORTOLAN_TESTBED_PASSWORD)",
                why: "a testbed URL needs the portal's account there".to_owned(),
            });
        }
        seconds(self.testbed_timeout_s, "testbed_timeout_s (PORTOLAN_TESTBED_TIMEOUT_S)")?;
        for (value, setting) in [
            (self.discovery_nodes_s, "discovery_nodes_s (PORTOLAN_DISCOVERY_NODES_S)"),
            (self.discovery_paths_s, "discovery_paths_s (PORTOLAN_DISCOVERY_PATHS_S)"),
        ] {
            if !(10.0..=86_400.0).contains(&value) {
                return Err(ConfigError::Invalid {
                    setting,
                    why: format!("must be from 10 to 86400 seconds, not {value}"),
                });
            }
        }
        self.validate_slivers()?;
        seconds(self.header_timeout_s, "header_timeout_s (PORTOLAN_HEADER_TIMEOUT_S)")?;
        seconds(self.body_timeout_s, "body_timeout_s (PORTOLAN_BODY_TIMEOUT_S)")?;
        if self.max_in_flight == 0 {
            return Err(ConfigError::Invalid {
                setting: "max_in_flight (PORTOLAN_MAX_IN_FLIGHT)",
                why: "must be at least 1".to_owned(),
            });
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return Err(ConfigError::Invalid { setting: "log (PORTOLAN_LOG)", why: e.to_string() });
        }
        Ok(())
    }

    fn validate_slivers(&self) -> Result<(), ConfigError> {
        http_url(&self.agent_url, "agent_url (PORTOLAN_AGENT_URL)")?;
        if let Some(url) = &self.agent_url
            && !portolan_agent::bringup::is_safe_url(url)
        {
            return Err(ConfigError::Invalid {
                setting: "agent_url (PORTOLAN_AGENT_URL)",
                why: "must be a plain http(s) URL without quotes or spaces".to_owned(),
            });
        }
        let invalid = |setting, why: String| Err(ConfigError::Invalid { setting, why });
        if !(1.0..=3600.0).contains(&self.heartbeat_s) {
            return invalid(
                "heartbeat_s (PORTOLAN_HEARTBEAT_S)",
                format!("must be from 1 to 3600, not {}", self.heartbeat_s),
            );
        }
        if !(self.silence_s > self.heartbeat_s && self.silence_s <= 86_400.0) {
            return invalid(
                "silence_s (PORTOLAN_SILENCE_S)",
                format!(
                    "must be more than heartbeat_s ({}) and at most 86400, not {}",
                    self.heartbeat_s, self.silence_s
                ),
            );
        }
        if !(1..=1024).contains(&self.bringup_concurrency) {
            return invalid(
                "bringup_concurrency (PORTOLAN_BRINGUP_CONCURRENCY)",
                "must be from 1 to 1024".to_owned(),
            );
        }
        if !(1..=10_000).contains(&self.liveness_batch) {
            return invalid("liveness_batch (PORTOLAN_LIVENESS_BATCH)", "must be from 1 to 10000".to_owned());
        }
        if let Some(name) = &self.service_slice {
            let valid = name.len() <= 64
                && name.split_once('_').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return invalid(
                    "service_slice (PORTOLAN_SERVICE_SLICE)",
                    format!(
                        "{name:?} is no slice name: <login_base>_<name>, lower-case letters, digits and _"
                    ),
                );
            }
        }
        Ok(())
    }

    /// Where slivers reach the portal, which listens on `bound`.
    pub fn agent_url(&self, bound: SocketAddr) -> String {
        if let Some(url) = self.agent_url.as_ref().or(self.public_url.as_ref()) {
            return url.trim_end_matches('/').to_owned();
        }
        let ip = match bound.ip() {
            ip if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, bound.port()))
    }

    /// The database to use: the configured URL, or the embedded SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join("portolan.db").display()),
        }
    }

    /// How long a connection may take to send a request's head (`header_timeout_s`).
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.header_timeout_s)
    }

    /// How long after its head a request's whole body must have arrived (`body_timeout_s`).
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.body_timeout_s)
    }

    /// Session cookies are `Secure` (and HSTS is sent) when the portal is served over TLS.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }
}

/// An IP address or a CIDR block (`10.0.0.0/8`, `fd00::/8`; a bare address is a block of one), as
/// `trusted_proxies` holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    network: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies in this block. An IPv4-mapped IPv6 address (`::ffff:10.0.0.2`, as a dual-stack
    /// listener sees IPv4 peers) is taken as the IPv4 address it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network = address
            .parse::<IpAddr>()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?
            .to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Serialize for IpNet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A list of blocks, from a TOML list or from one comma-separated string (how an environment variable
/// gives it; figment would otherwise read `10.0.0.2` alone as a string, not a list).
fn list_or_comma_separated<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<IpNet>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        List(Vec<String>),
        One(String),
    }
    let items = match Given::deserialize(deserializer)? {
        Given::List(items) => items,
        Given::One(text) => text.split(',').map(str::to_owned).collect(),
    };
    items
        .iter()
        .map(|item| item.trim())
        .filter(|item| !item.is_empty())
        .map(|item| item.parse().map_err(serde::de::Error::custom))
        .collect()
}

/// A timeout in seconds: positive, finite, at most an hour (fractions allowed, for tests).
fn seconds(value: f64, setting: &'static str) -> Result<(), ConfigError> {
    if value > 0.0 && value <= 3600.0 {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            setting,
            why: "must be a number of seconds above 0 and at most 3600".to_owned(),
        })
    }
}

/// An optional setting that, when given, must be an http(s) URL.
fn http_url(value: &Option<String>, setting: &'static str) -> Result<(), ConfigError> {
    match value {
        Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
            Err(ConfigError::Invalid { setting, why: "expected http://… or https://…".to_owned() })
        }
        _ => Ok(()),
    }
}

/// One line per problem, naming the setting and where it came from (`PORTOLAN_LISTEN`, the file, …).
fn describe(errors: figment::Error) -> String {
    errors
        .into_iter()
        .map(|e| {
            let key = e.path.last().map(|k| k.to_lowercase()).unwrap_or_default();
            let source = match e.metadata.as_ref().map(|m| m.name.as_ref()) {
                Some(name) if name.contains("environment") && key == "database_url" => {
                    "DATABASE_URL".to_owned()
                }
                Some(name) if name.contains("environment") => {
                    format!("PORTOLAN_{}", key.to_uppercase())
                }
                Some(name) => format!("{key} in {name}"),
                None => key.clone(),
            };
            format!("{source} ({key}): {}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
#[expect(
    clippy::result_large_err,
    reason = "figment::Jail's closures must return figment::Error, which is large"
)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load_err(jail: &mut Jail, key: &str, value: &str) -> String {
        jail.set_env(key, value);
        let err = Config::load().unwrap_err().to_string();
        jail.clear_env();
        err
    }

    #[test]
    fn defaults_are_the_embedded_ones() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let config = Config::load().unwrap();
            assert_eq!(config.listen.to_string(), "127.0.0.1:3000");
            assert_eq!(config.database_url(), "sqlite://portolan-data/portolan.db?mode=rwc");
            assert!(!config.secure_cookies());
            Ok(())
        });
    }

    #[test]
    fn environment_overrides() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("PORTOLAN_LISTEN", "0.0.0.0:8080");
            jail.set_env("PORTOLAN_SESSION_DAYS", "3");
            jail.set_env("DATABASE_URL", "postgres://u@h/db");
            jail.set_env("PORTOLAN_PUBLIC_URL", "https://portolan.example.org");
            let config = Config::load().unwrap();
            assert_eq!(config.listen.port(), 8080);
            assert_eq!(config.session_days, 3);
            assert_eq!(config.database_url(), "postgres://u@h/db");
            assert!(config.secure_cookies());
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_setting() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let err = load_err(jail, "PORTOLAN_LISTEN", "nowhere");
            assert!(err.contains("PORTOLAN_LISTEN"), "{err}");
            let err = load_err(jail, "DATABASE_URL", "mysql://x");
            assert!(err.contains("DATABASE_URL"), "{err}");
            let err = load_err(jail, "PORTOLAN_CONFIG", "/no/such/file.toml");
            assert!(err.contains("PORTOLAN_CONFIG"), "{err}");
            let err = load_err(jail, "PORTOLAN_SESSION_DAYS", "0");
            assert!(err.contains("PORTOLAN_SESSION_DAYS"), "{err}");
            let err = load_err(jail, "PORTOLAN_TESTBED_URL", "ftp://plc");
            assert!(err.contains("PORTOLAN_TESTBED_URL"), "{err}");
            let err = load_err(jail, "PORTOLAN_SESSION_DAYS", "many");
            assert!(err.contains("PORTOLAN_SESSION_DAYS"), "{err}");
            for bad in ["0", "-1", "NaN", "inf", "3601"] {
                let err = load_err(jail, "PORTOLAN_HEADER_TIMEOUT_S", bad);
                assert!(err.contains("PORTOLAN_HEADER_TIMEOUT_S"), "{bad}: {err}");
                let err = load_err(jail, "PORTOLAN_BODY_TIMEOUT_S", bad);
                assert!(err.contains("PORTOLAN_BODY_TIMEOUT_S"), "{bad}: {err}");
            }
            let err = load_err(jail, "PORTOLAN_MAX_IN_FLIGHT", "0");
            assert!(err.contains("PORTOLAN_MAX_IN_FLIGHT"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn trusted_proxies_from_the_file_or_the_environment() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            assert!(Config::load().unwrap().trusted_proxies.is_empty(), "none by default");
            jail.set_env("PORTOLAN_TRUSTED_PROXIES", "10.0.0.2, fd00::/8");
            let proxies = Config::load().unwrap().trusted_proxies;
            assert_eq!(proxies, vec!["10.0.0.2/32".parse().unwrap(), "fd00::/8".parse().unwrap()]);
            jail.set_env("PORTOLAN_TRUSTED_PROXIES", "192.168.1.1");
            assert_eq!(Config::load().unwrap().trusted_proxies.len(), 1);
            jail.clear_env();
            jail.create_file("p.toml", "trusted_proxies = [\"172.16.0.0/12\", \"::1\"]\n")?;
            jail.set_env("PORTOLAN_CONFIG", "p.toml");
            let proxies = Config::load().unwrap().trusted_proxies;
            assert_eq!(proxies.len(), 2);
            assert!(proxies[0].contains("172.31.255.1".parse().unwrap()));
            assert!(!proxies[0].contains("172.32.0.1".parse().unwrap()));
            jail.clear_env();
            for bad in ["10.0.0.300", "10.0.0.0/33", "fd00::/129", "proxy.internal", "10.0.0.0/"] {
                let err = load_err(jail, "PORTOLAN_TRUSTED_PROXIES", bad);
                assert!(err.contains("PORTOLAN_TRUSTED_PROXIES"), "{bad}: {err}");
            }
            Ok(())
        });
    }

    #[test]
    fn ip_blocks_contain_their_addresses() {
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(net("10.0.0.0/8").contains(ip("10.255.0.1")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("10.0.0.2").contains(ip("10.0.0.2")) && !net("10.0.0.2").contains(ip("10.0.0.3")));
        assert!(net("10.0.0.2").contains(ip("::ffff:10.0.0.2")), "IPv4-mapped peers");
        assert!(net("::ffff:10.0.0.2").contains(ip("10.0.0.2")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")) && !net("0.0.0.0/0").contains(ip("::1")));
        assert!(net("fd00::/8").contains(ip("fd12::1")) && !net("fd00::/8").contains(ip("fe80::1")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
        assert_eq!(net("10.1.2.3/8").to_string(), "10.1.2.3/8");
    }

    #[test]
    fn file_then_environment() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("p.toml", "listen = \"127.0.0.1:4000\"\nsession_days = 2\n")?;
            jail.set_env("PORTOLAN_CONFIG", "p.toml");
            jail.set_env("PORTOLAN_SESSION_DAYS", "5");
            let config = Config::load().unwrap();
            assert_eq!(config.listen.port(), 4000);
            assert_eq!(config.session_days, 5);
            Ok(())
        });
    }
}
