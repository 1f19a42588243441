//! Log-in abuse: per-account and per-client throttling with `Retry-After`, over HTTP and (for the waits, on a
//! manual clock) through the service. On SQLite and PostgreSQL (the flood test is `login_flood.rs`).

mod common;

use chrono::TimeDelta;
use common::TestApp;
use portolan_core::{accounts, clock::Clock, throttle};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};

const PASSWORD: &str = "correct horse battery";

/// A browser-like client whose connections come from `127.0.0.<n>` (Linux routes all of 127/8 to loopback).
fn client_from(n: u8) -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
        .build()
        .unwrap()
}

/// Sends `request`: its status, `Retry-After` (seconds) and body.
async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Option<u64>, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse::<u64>().expect("Retry-After in seconds"));
    let text = response.text().await.unwrap();
    (status, retry_after, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn login_request(app: &TestApp, client: &Client, email: &str, password: &str) -> reqwest::RequestBuilder {
    client.post(app.url("/sf/login")).form(&[("email", email), ("password", password)])
}

async fn login(
    app: &TestApp,
    client: &Client,
    email: &str,
    password: &str,
) -> (StatusCode, Option<u64>, Value) {
    answer(login_request(app, client, email, password)).await
}

async fn wrong_passwords_lock_the_account_for_every_client(app: TestApp) {
    let _ = app.user("ada@example.org").await;
    let _ = app.user("bob@example.org").await;
    let attacker = client_from(2);
    for i in 0..throttle::ACCOUNT.free {
        let (status, _, body) = login(&app, &attacker, "ada@example.org", "not her password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}: {body}");
    }
    let (status, retry_after, body) = login(&app, &attacker, "ada@example.org", "not her password").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "too_many_requests");
    let retry_after = retry_after.expect("a Retry-After header");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // The right password is refused while the account is locked, from any client...
    let (status, _, _) = login(&app, &attacker, "ada@example.org", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let ada = client_from(3);
    let (status, header, _) = login(&app, &ada, "ada@example.org", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(header.is_some());
    // ...but another account is not affected, not even from the attacking client.
    let (status, _, body) = login(&app, &attacker, "bob@example.org", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // An unknown email is throttled exactly like a known one (no enumeration through 429s).
    for _ in 0..throttle::ACCOUNT.free {
        let (status, _, _) = login(&app, &attacker, "nobody@example.org", "whatever it is").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, retry_after, _) = login(&app, &attacker, "nobody@example.org", "whatever it is").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after.is_some());
}

async fn parallel_guesses_cannot_overtake_the_count(app: TestApp) {
    let _ = app.user("ada@example.org").await;
    let client = client_from(4);
    let guesses: Vec<_> = (0..30)
        .map(|_| tokio::spawn(answer(login_request(&app, &client, "ada@example.org", "a guess"))))
        .collect();
    let mut answers = Vec::new();
    for guess in guesses {
        answers.push(guess.await.unwrap());
    }
    let checked = answers.iter().filter(|(status, _, _)| *status == StatusCode::UNAUTHORIZED).count();
    let refused = answers.iter().filter(|(status, _, _)| *status == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(checked, throttle::ACCOUNT.free as usize, "{answers:?}");
    assert_eq!(refused, 30 - checked);
}

async fn one_client_guessing_many_accounts_is_throttled_alone(app: TestApp) {
    let _ = app.user("ada@example.org").await;
    let attacker = client_from(5);
    // Few guesses per account, so only the client's budget runs out.
    for i in 0..throttle::CLIENT.free {
        let email = format!("user{i}@example.org");
        let (status, _, body) = login(&app, &attacker, &email, "a guess of mine").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}: {body}");
    }
    let (status, retry_after, _) = login(&app, &attacker, "someone@example.org", "a guess of mine").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after.is_some_and(|s| (1..=60).contains(&s)), "{retry_after:?}");
    let (status, _, _) = login(&app, &attacker, "ada@example.org", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the client is locked, whatever it tries");
    // Another client logs in to an account the attacker did not touch... and to any.
    let other = client_from(6);
    let (status, _, body) = login(&app, &other, "ada@example.org", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn successes_do_not_count_against_a_client(app: TestApp) {
    // Many people behind one address log in every morning.
    let _ = app.user("ada@example.org").await;
    let office = client_from(7);
    for _ in 0..throttle::CLIENT.free + 5 {
        let (status, _, body) = login(&app, &office, "ada@example.org", PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

/// The waits, on a manual clock through the service (the HTTP server runs on the real clock).
async fn locks_end_after_their_backoff_and_a_success_forgets_the_failures(app: TestApp) {
    let _ = app.user("ada@example.org").await;
    let clock = Clock::manual(chrono::Utc::now());
    let client = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    let attempt = |password: &'static str| {
        let (db, clock) = (app.db.clone(), clock.clone());
        async move { accounts::authenticate(&db, &clock, "ada@example.org", password, client).await }
    };
    for _ in 0..throttle::ACCOUNT.free {
        assert_eq!(
            attempt("wrong wrong wrong").await.unwrap_err().code,
            model::error::ErrorCode::Unauthenticated
        );
    }
    let err = attempt(PASSWORD).await.unwrap_err();
    assert_eq!(err.retry_after_s, Some(60), "{err:?}");
    clock.advance(TimeDelta::seconds(59));
    assert_eq!(attempt(PASSWORD).await.unwrap_err().retry_after_s, Some(1), "one second to go");
    clock.advance(TimeDelta::seconds(1));
    // The lock has run out: one more wrong password doubles it...
    assert_eq!(
        attempt("wrong wrong wrong").await.unwrap_err().code,
        model::error::ErrorCode::Unauthenticated
    );
    assert_eq!(attempt(PASSWORD).await.unwrap_err().retry_after_s, Some(120));
    clock.advance(TimeDelta::seconds(120));
    // ...and after it the right password works, and forgets the failures.
    let user = attempt(PASSWORD).await.unwrap();
    assert_eq!(user.email, "ada@example.org");
    for _ in 0..throttle::ACCOUNT.free - 1 {
        assert!(attempt("wrong wrong wrong").await.unwrap_err().retry_after_s.is_none());
    }
    attempt(PASSWORD).await.unwrap();
    // A day without failures forgets them too.
    for _ in 0..throttle::ACCOUNT.free {
        let _ = attempt("wrong wrong wrong").await;
    }
    clock.advance(TimeDelta::seconds(throttle::ACCOUNT.reset_s + 1));
    for _ in 0..throttle::ACCOUNT.free - 1 {
        assert!(attempt("wrong wrong wrong").await.unwrap_err().retry_after_s.is_none());
    }
    attempt(PASSWORD).await.unwrap();
}

/// Case, surrounding white space and Unicode case variants of one address share its count: they are the
/// same account (the key is taken from the normalised email, the one the account is looked up by).
async fn spelling_variants_share_the_account_count(app: TestApp) {
    let _ = app.user("kim@example.org").await;
    let clock = Clock::manual(chrono::Utc::now());
    let variants = [
        "KIM@example.org",
        " kim@Example.ORG\t",
        "\u{212A}im@example.org",
        "kIm@EXAMPLE.org",
        "kim@example.org",
    ];
    assert_eq!(variants.len(), throttle::ACCOUNT.free as usize);
    for (n, email) in variants.into_iter().enumerate() {
        // A new client each time: only the account's count can add up.
        let client = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10 + n as u8)));
        let err =
            accounts::authenticate(&app.db, &clock, email, "wrong wrong wrong", client).await.unwrap_err();
        assert_eq!(err.code, model::error::ErrorCode::Unauthenticated, "{email:?}: {err:?}");
    }
    let client = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99)));
    let err = accounts::authenticate(&app.db, &clock, "KIM@EXAMPLE.ORG", PASSWORD, client).await.unwrap_err();
    assert_eq!(err.retry_after_s, Some(60), "{err:?}");
}

async fn register(app: &TestApp, client: &Client, email: &str) -> (StatusCode, Option<u64>, Value) {
    let form = [("email", email), ("name", "Reg"), ("password", PASSWORD)];
    answer(client.post(app.url("/sf/register")).form(&form)).await
}

/// A script making accounts from one address is stopped; another address still registers, and the refused
/// attempt stores nothing.
async fn registrations_are_throttled_per_client(app: TestApp) {
    let script = client_from(8);
    for i in 0..throttle::REGISTRATIONS.free {
        let (status, _, body) = register(&app, &script, &format!("made{i}@example.org")).await;
        assert_eq!(status, StatusCode::OK, "registration {i}: {body}");
    }
    let (status, retry_after, body) = register(&app, &script, "one-more@example.org").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "too_many_requests", "{body}");
    assert!(body["message"].as_str().unwrap().contains("registrations"), "{body}");
    assert!(retry_after.is_some_and(|s| (1..=300).contains(&s)), "{retry_after:?}");
    let (status, _, body) = login(&app, &client_from(9), "one-more@example.org", PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the refused registration stored a user: {body}");
    let (status, _, body) = register(&app, &client_from(9), "elsewhere@example.org").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

on_both_databases!(
    registrations_are_throttled_per_client,
    wrong_passwords_lock_the_account_for_every_client,
    parallel_guesses_cannot_overtake_the_count,
    one_client_guessing_many_accounts_is_throttled_alone,
    successes_do_not_count_against_a_client,
    locks_end_after_their_backoff_and_a_success_forgets_the_failures,
    spelling_variants_share_the_account_count,
);
