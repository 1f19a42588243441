//! `TestApp`: a real Portolan server on a random loopback port, on a fresh database (SQLite in a temporary
//! directory, or a new PostgreSQL database per test), driven over real HTTP.
//!
//! PostgreSQL: the server named by `DATABASE_URL` when it is a `postgres://` URL (it must allow
//! `CREATE DATABASE`), else `postgres://postgres@127.0.0.1:5432/postgres`. `scripts/test` installs and starts
//! one when none is running.

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]

pub mod slivers;

use reqwest::{Client, StatusCode};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};
use server::config::Config;
use std::net::SocketAddr;

pub struct TestApp {
    pub addr: SocketAddr,
    pub db: DatabaseConnection,
    pub backend: &'static str,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

pub fn postgres_admin_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => url,
        _ => "postgres://postgres@127.0.0.1:5432/postgres".to_owned(),
    }
}

/// Creates a new, empty PostgreSQL database `portolan_test_<uuid>` and returns its URL.
pub async fn fresh_postgres_database() -> String {
    let admin_url = postgres_admin_url();
    let admin = Database::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is needed for the postgres tests: {e}"));
    let name = format!("portolan_test_{}", uuid::Uuid::new_v4().simple());
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
    admin.close().await.unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

impl TestApp {
    pub async fn sqlite() -> Self {
        Self::sqlite_with(|_| {}).await
    }

    /// On SQLite, with settings changed by `configure` (timeouts, limits, `public_url`, …).
    pub async fn sqlite_with(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
        Self::start_with(dir, url, "sqlite", configure).await
    }

    pub async fn postgres() -> Self {
        Self::start(tempfile::tempdir().unwrap(), fresh_postgres_database().await, "postgres").await
    }

    async fn start(dir: tempfile::TempDir, url: String, backend: &'static str) -> Self {
        Self::start_with(dir, url, backend, |_| {}).await
    }

    /// On `backend` (`sqlite` or `postgres`), with settings changed by `configure`, the portal's clock
    /// `clock` (scaled, for tests of slivers and pools).
    pub async fn with_clock(
        backend: &'static str,
        configure: impl FnOnce(&mut Config),
        clock: portolan_core::clock::Clock,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = match backend {
            "sqlite" => format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display()),
            _ => fresh_postgres_database().await,
        };
        Self::start_full(dir, url, backend, configure, Some(clock)).await
    }

    async fn start_with(
        dir: tempfile::TempDir,
        url: String,
        backend: &'static str,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        Self::start_full(dir, url, backend, configure, None).await
    }

    async fn start_full(
        dir: tempfile::TempDir,
        url: String,
        backend: &'static str,
        configure: impl FnOnce(&mut Config),
        clock: Option<portolan_core::clock::Clock>,
    ) -> Self {
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_owned(),
            database_url: Some(url),
            db_max_connections: 5,
            ..Config::default()
        };
        configure(&mut config);
        let db = server::open_database(&config).await.unwrap();
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut state = server::app_state(&config, db.clone(), None);
        if let Some(clock) = clock {
            state.clock = clock;
        }
        let serving = tokio::spawn(async move {
            server::serve_state(&config, state, listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Self { addr, db, backend, _dir: dir, shutdown: Some(tx), served: Some(serving) }
    }

    /// Signals shutdown (as Ctrl-C does) and returns the task serving the portal, which ends once its
    /// open requests are answered.
    pub fn shut_down(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.served.take().expect("shut down once")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A client with its own cookie jar, like a browser.
    pub fn browser(&self) -> Client {
        Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
    }

    /// Calls a server function as the hydrated UI does (form-encoded POST to `/sf/<name>`).
    pub async fn call(&self, client: &Client, name: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = client.post(self.url(&format!("/sf/{name}"))).form(form).send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Registers a user and returns a browser logged in as them.
    pub async fn user(&self, email: &str) -> Client {
        let client = self.browser();
        let (status, body) = self
            .call(
                &client,
                "register",
                &[("email", email), ("name", email), ("password", "correct horse battery")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        client
    }

    /// A bearer token of `scope` created from a logged-in browser.
    pub async fn token(&self, browser: &Client, scope: &str) -> String {
        let (status, body) = self.call(browser, "create_token", &[("name", "test"), ("scope", scope)]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["secret"].as_str().unwrap().to_owned()
    }

    pub async fn api(
        &self,
        client: &Client,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = client.request(method, self.url(&format!("/api/v1{path}")));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, client: &Client, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.api(client, reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(
        &self,
        client: &Client,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        self.api(client, reqwest::Method::POST, path, token, Some(body)).await
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.scalar(&format!("SELECT COUNT(*) FROM {table}")).await
    }

    /// The one `BIGINT` value `sql` selects.
    pub async fn scalar(&self, sql: &str) -> i64 {
        scalar(&self.db, sql).await
    }

    pub async fn create_project(&self, browser: &Client, name: &str) -> Value {
        let (status, body) =
            self.call(browser, "create_project", &[("name", name), ("description", "test project")]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The one `BIGINT` value `sql` selects on `db`.
pub async fn scalar(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db.query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql.to_owned()));
    row.await.unwrap().unwrap().try_get_by_index::<i64>(0).unwrap()
}

pub fn no_body() -> Value {
    json!(null)
}

/// Runs each named `async fn(TestApp)` twice: on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name($crate::common::TestApp::sqlite().await).await
                }
                #[tokio::test]
                async fn postgres() {
                    super::$name($crate::common::TestApp::postgres().await).await
                }
            }
        )*
    };
}
