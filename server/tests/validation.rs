//! Every text a user types is checked for length and control characters before anything is stored, with
//! limits that fit the columns on both databases; passwords must be hard to guess; SSH keys must be of a
//! kind current OpenSSH accepts; the `Bearer` scheme is case-insensitive. On SQLite and PostgreSQL.

mod common;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

fn assert_invalid(status: StatusCode, body: &Value, field: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_input", "{body}");
    assert_eq!(body["field"], field, "{body}");
}

/// A valid address of exactly `len` characters (a local part of 64, labels of at most 63).
fn long_email(len: usize) -> String {
    let mut rest = len - 64 - 1 - 3; // the local part, `@` and the final `org`
    let mut domain = String::new();
    while rest > 0 {
        let piece = rest.min(64); // a label and its dot
        let piece = if rest - piece == 1 { piece - 1 } else { piece }; // never leave a lone dot
        domain.push_str(&"b".repeat(piece - 1));
        domain.push('.');
        rest -= piece;
    }
    let email = format!("{}@{domain}org", "a".repeat(64));
    assert_eq!(email.len(), len, "{email}");
    email
}

async fn register(app: &TestApp, email: &str, name: &str, password: &str) -> (StatusCode, Value) {
    let client = app.browser();
    app.call(&client, "register", &[("email", email), ("name", name), ("password", password)]).await
}

async fn oversized_and_control_inputs_are_refused_and_store_nothing(app: TestApp) {
    let huge = "x".repeat(200_000);
    let huge_email = format!("{huge}@example.org");
    let (status, body) = register(&app, &huge_email, "Eve", PASSWORD).await;
    assert_invalid(status, &body, "email");
    let (status, body) = register(&app, &long_email(255), "Eve", PASSWORD).await;
    assert_invalid(status, &body, "email");
    for name in ["x".repeat(101), "Eve\u{1b}[31m".to_owned(), "Eve\u{202E}gnp".to_owned(), "a\nb".to_owned()]
    {
        let (status, body) = register(&app, "eve@example.org", &name, PASSWORD).await;
        assert_invalid(status, &body, "name");
    }
    let (status, body) = register(&app, "eve@example.org", "Eve", &huge).await;
    assert_invalid(status, &body, "password");
    assert!(body["message"].as_str().unwrap().contains("at most"), "{body}");

    // Log-in: an oversized email or password is refused before any hashing, and the audit log stays empty.
    let client = app.browser();
    let (status, body) = app.call(&client, "login", &[("email", &huge_email), ("password", PASSWORD)]).await;
    assert_invalid(status, &body, "email");
    let (status, body) =
        app.call(&client, "login", &[("email", "eve@example.org"), ("password", &huge)]).await;
    assert_invalid(status, &body, "password");
    let (status, body) =
        app.call(&client, "login", &[("email", "eve\u{0}@example.org"), ("password", PASSWORD)]).await;
    assert_invalid(status, &body, "email");
    assert_eq!(app.count("users").await, 0);
    assert_eq!(app.count("audit_log").await, 0, "nothing is audited for refused input");
    assert_eq!(app.count("login_throttle").await, 0, "nor throttled");
}

async fn the_longest_valid_email_registers_and_logs_in(app: TestApp) {
    // 247 characters: PostgreSQL answered 500 here (audit target too long), yet kept the user.
    let email = long_email(247);
    let (status, body) = register(&app, &email, "Long Address", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let client = app.browser();
    let (status, body) = app.call(&client, "login", &[("email", &email), ("password", PASSWORD)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) =
        app.call(&client, "login", &[("email", &email), ("password", "not the password")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let email254 = long_email(254);
    let (status, body) = register(&app, &email254, "Longest", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The failed attempt is audited with the (valid, bounded) email as its target.
    let row = app
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            "SELECT target FROM audit_log WHERE action = 'login' AND actor_id IS NULL".to_owned(),
        ))
        .await
        .unwrap()
        .expect("a failed-login audit row");
    assert_eq!(row.try_get::<String>("", "target").unwrap(), email);
}

use sea_orm::ConnectionTrait;

async fn guessable_passwords_are_refused_with_reasons(app: TestApp) {
    for (password, needle) in [
        ("password12", "common password"),
        ("qwertyuiop", "common password"),
        ("1qaz2wsx3edc", "too easy to guess"),
        ("ada@example.org", "too easy to guess"),
        ("Ada Lovelace 1", "too easy to guess"),
        ("aaaaaaaaaaaaaaa", "Repeats"),
        ("1234567890", "too easy to guess"),
    ] {
        let (status, body) = register(&app, "ada@example.org", "Ada Lovelace", password).await;
        assert_invalid(status, &body, "password");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(needle), "{password:?}: {message}");
        assert!(message.contains("too easy to guess"), "{message}");
    }
    assert_eq!(app.count("users").await, 0);
    let (status, body) = register(&app, "ada@example.org", "Ada Lovelace", "trombone sunlit quarry").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn project_token_and_join_texts_are_bounded(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    let long = "d".repeat(1001);
    for (description, ok) in [(long.as_str(), false), ("bell\u{7}", false), ("two\nlines\tand a tab", true)] {
        let (status, body) =
            app.call(&ada, "create_project", &[("name", "wanlab"), ("description", description)]).await;
        if ok {
            assert_eq!(status, StatusCode::OK, "{body}");
        } else {
            assert_invalid(status, &body, "description");
        }
    }
    let bob = app.user("bob@example.org").await;
    let huge = "p".repeat(200_000);
    let (status, body) = app.call(&bob, "request_join", &[("project", &huge), ("message", "hi")]).await;
    assert_invalid(status, &body, "project");
    assert!(body["message"].as_str().unwrap().len() < 200, "the name is not echoed back");
    let (status, body) = app.call(&bob, "request_join", &[("project", "wanlab"), ("message", &long)]).await;
    assert_invalid(status, &body, "message");
    let (status, body) =
        app.call(&bob, "request_join", &[("project", "wanlab"), ("message", "esc\u{1b}[2J")]).await;
    assert_invalid(status, &body, "message");
    for name in ["n".repeat(101), "nul\u{0}".to_owned(), String::new()] {
        let (status, body) = app.call(&ada, "create_token", &[("name", &name), ("scope", "read")]).await;
        assert_invalid(status, &body, "name");
    }
    assert_eq!(app.count("join_requests").await, 0);
    assert_eq!(app.count("api_tokens").await, 0);
}

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/ssh/{name}.pub", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")).trim().to_owned()
}

async fn only_keys_openssh_accepts_are_stored(app: TestApp) {
    let browser = app.user("ada@example.org").await;
    let token = app.token(&browser, "write").await;
    for (name, algorithm) in [
        ("ed25519", "ssh-ed25519"),
        ("ecdsa-p256", "ecdsa-sha2-nistp256"),
        ("ecdsa-p384", "ecdsa-sha2-nistp384"),
        ("ecdsa-p521", "ecdsa-sha2-nistp521"),
        ("sk-ed25519", "sk-ssh-ed25519@openssh.com"),
        ("rsa-2048", "ssh-rsa"),
        ("rsa-2048-e3", "ssh-rsa"),
        ("rsa-4096", "ssh-rsa"),
        ("rsa-16384", "ssh-rsa"),
    ] {
        let (status, body) =
            app.post(&browser, "/keys", Some(&token), json!({ "public_key": fixture(name) })).await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
        assert_eq!(body["algorithm"], algorithm, "{name}");
    }
    for (name, needle) in [
        ("dsa", "DSA"),
        ("rsa-1024", "at least 2048 bits; this one has 1024"),
        ("rsa-2047", "this one has 2047"),
        ("rsa-16385", "at most 16384 bits"),
        ("rsa-40000", "at most 16384 bits; this one has 40000"),
        ("rsa-2048-e1", "exponent"),
        ("rsa-2048-e65536", "exponent"),
        ("rsa-2048-e2pow32plus1", "exponent"),
        ("rsa-2048-ehuge", "exponent"),
    ] {
        let (status, body) =
            app.post(&browser, "/keys", Some(&token), json!({ "public_key": fixture(name) })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        assert_eq!(body["error"]["field"], "public_key", "{name}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{name}: {message}");
    }
    let oversized = format!("ssh-ed25519 {}", "A".repeat(9000));
    let (status, body) = app.post(&browser, "/keys", Some(&token), json!({ "public_key": oversized })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let comment = format!("{} {}", fixture("ed25519").rsplit_once(' ').unwrap().0, "c".repeat(201));
    let (status, body) = app.post(&browser, "/keys", Some(&token), json!({ "public_key": comment })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(app.count("ssh_keys").await, 9);
}

async fn the_bearer_scheme_is_case_insensitive(app: TestApp) {
    let browser = app.user("ada@example.org").await;
    let token = app.token(&browser, "read").await;
    let client = reqwest::Client::new();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = client
            .get(app.url("/api/v1/me"))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
    for value in [format!("Basic {token}"), format!("Bearer{token}"), "Bearer ".to_owned()] {
        let response =
            client.get(app.url("/api/v1/me")).header("authorization", value.clone()).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{value}");
    }
}

/// A project name that cannot be one (a NUL, an overlong one) is simply not found, on both databases
/// (PostgreSQL refuses a NUL in a query's text: that was a 500).
async fn impossible_project_names_are_not_found(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    app.create_project(&ada, "wanlab").await;
    let long = "w".repeat(10_000);
    for name in ["wan\u{0}lab", long.as_str()] {
        let (status, body) = app.call(&ada, "get_project", &[("name", name)]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["code"], "not_found", "{body}");
        assert!(body["message"].as_str().unwrap().len() < 200, "the name is not echoed back: {body}");
    }
    for path in ["/projects/wan%00lab", "/projects/wan%00lab/members", "/projects/wan%00lab/join-requests"] {
        let (status, body) = app.get(&ada, path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
    let (status, body) =
        app.call(&ada, "request_join", &[("project", "wan\u{0}lab"), ("message", "hi")]).await;
    assert_invalid(status, &body, "project");
}

on_both_databases!(
    oversized_and_control_inputs_are_refused_and_store_nothing,
    the_longest_valid_email_registers_and_logs_in,
    guessable_passwords_are_refused_with_reasons,
    project_token_and_join_texts_are_bounded,
    only_keys_openssh_accepts_are_stored,
    the_bearer_scheme_is_case_insensitive,
    impossible_project_names_are_not_found,
);
