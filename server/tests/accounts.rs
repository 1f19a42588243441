//! Registration, log-in, sessions and log-out, over HTTP, on SQLite and PostgreSQL.

mod common;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::json;

fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("portolan_session=")?.split(';').next().map(str::to_owned))
}

async fn register_then_me(app: TestApp) {
    let browser = app.user("Ada@Example.org").await;
    let (status, me) = app.get(&browser, "/me", None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["email"], "ada@example.org", "emails are stored in lower case");
    assert_eq!(me["is_operator"], false);
    let hash: String = {
        use sea_orm::EntityTrait;
        portolan_core::db::entity::user::Entity::find().one(&app.db).await.unwrap().unwrap().password_hash
    };
    assert!(hash.starts_with("$argon2id$"), "passwords are hashed with argon2id");
    assert!(!hash.contains("correct horse"));
}

async fn bad_registrations_name_the_field_and_store_nothing(app: TestApp) {
    let _ada = app.user("ada@example.org").await;
    let client = app.browser();
    for (email, name, password, field) in [
        ("not-an-email", "Bob", "long enough pw", "email"),
        ("bob@example.org", "", "long enough pw", "name"),
        ("bob@example.org", "Bob", "short", "password"),
        ("ADA@example.org", "Ada again", "long enough pw", "email"),
    ] {
        let (status, body) =
            app.call(&client, "register", &[("email", email), ("name", name), ("password", password)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["code"], "invalid_input");
        assert_eq!(body["field"], field, "{body}");
    }
    assert_eq!(app.count("users").await, 1);
}

async fn login_cycles_the_session_id(app: TestApp) {
    let _ = app.user("ada@example.org").await;
    let browser = app.browser();
    let form = [("email", "ada@example.org"), ("password", "correct horse battery")];
    let first = browser.post(app.url("/sf/login")).form(&form).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first_id = session_cookie(&first).expect("a session cookie");
    let second = browser.post(app.url("/sf/login")).form(&form).send().await.unwrap();
    let second_id = session_cookie(&second).expect("a new session cookie");
    assert_ne!(first_id, second_id, "logging in must issue a fresh session id");

    // The old id is dead: a client presenting it is not logged in.
    let stale = reqwest::Client::new();
    let response = stale
        .get(app.url("/api/v1/me"))
        .header("cookie", format!("portolan_session={first_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = app.get(&browser, "/me", None).await;
    assert_eq!(status, StatusCode::OK);
}

async fn wrong_credentials_get_one_answer(app: TestApp) {
    let _ = app.user("ada@example.org").await;
    let client = app.browser();
    let (s1, wrong_pw) =
        app.call(&client, "login", &[("email", "ada@example.org"), ("password", "nope nope nope")]).await;
    let (s2, no_user) =
        app.call(&client, "login", &[("email", "eve@example.org"), ("password", "nope nope nope")]).await;
    assert_eq!(s1, StatusCode::UNAUTHORIZED);
    assert_eq!(s2, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_pw, no_user, "no hint whether the account exists");
    let (status, _) = app.get(&client, "/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(app.count("audit_log").await >= 3, "failed logins are audited");
}

async fn a_plain_form_post_that_fails_is_sent_back_with_its_error(app: TestApp) {
    // A browser without JavaScript posts the form and accepts HTML: it gets a redirect to the form's page
    // with the error in the URL (a 401 would not be followed and would show raw JSON).
    let response = app
        .browser()
        .post(app.url("/sf/login"))
        .header("accept", "text/html")
        .header("referer", app.url("/login"))
        .form(&[("email", "eve@example.org"), ("password", "nope nope nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&app.url("/login?")), "{location}");
    assert!(location.contains("__path=%2Fsf%2Flogin") && location.contains("__err="), "{location}");
    let page = app.browser().get(&location).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("wrong email or password"), "the login page shows the error");
}

async fn logout_ends_the_session(app: TestApp) {
    let browser = app.user("ada@example.org").await;
    let (status, _) = app.call(&browser, "logout", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app.get(&browser, "/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({ "error": { "code": "unauthenticated", "message": "log in or present a valid API token" } })
    );
}

async fn forged_session_cookies_are_strangers(app: TestApp) {
    let _ = app.user("ada@example.org").await;
    for forged in ["garbage", "AAAAAAAAAAAAAAAAAAAAAA", "1", ""] {
        let response = reqwest::Client::new()
            .get(app.url("/api/v1/me"))
            .header("cookie", format!("portolan_session={forged}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{forged}");
    }
}

async fn operators_are_made_on_the_command_line(app: TestApp) {
    let browser = app.user("ops@example.org").await;
    let user = portolan_core::accounts::set_operator(
        &app.db,
        &portolan_core::clock::Clock::real(),
        "OPS@example.org",
        true,
    )
    .await
    .unwrap();
    assert!(user.is_operator);
    let (_, me) = app.get(&browser, "/me", None).await;
    assert_eq!(me["is_operator"], true);
    let err = portolan_core::accounts::set_operator(
        &app.db,
        &portolan_core::clock::Clock::real(),
        "nobody@example.org",
        true,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, model::error::ErrorCode::NotFound);
}

/// Registration took passwords of up to 1024 bytes before new ones were bounded to 256: those accounts
/// still log in. Longer than any version stored is refused before hashing.
async fn a_password_longer_than_todays_limit_still_logs_in(app: TestApp) {
    use portolan_core::db::entity::user;
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};
    let _ = app.user("ada@example.org").await;
    let old_password = "an old, very long passphrase. ".repeat(20);
    assert_eq!(old_password.len(), 600);
    let ada = user::Entity::find().one(&app.db).await.unwrap().unwrap();
    let mut active: user::ActiveModel = ada.into();
    active.password_hash = Set(portolan_core::auth::hash_password(&old_password).await.unwrap());
    active.update(&app.db).await.unwrap();
    let client = app.browser();
    let (status, body) =
        app.call(&client, "login", &[("email", "ada@example.org"), ("password", &old_password)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) =
        app.call(&client, "login", &[("email", "ada@example.org"), ("password", &"x".repeat(1025))]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "password", "{body}");
}

/// The command line's email is checked like a typed one: a control character is bad input, on both
/// databases (PostgreSQL refused the NUL in the query: an internal error).
async fn make_operator_checks_the_email(app: TestApp) {
    let err = portolan_core::accounts::set_operator(
        &app.db,
        &portolan_core::clock::Clock::real(),
        "ops\u{0}@example.org",
        true,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, model::error::ErrorCode::InvalidInput, "{err:?}");
    assert_eq!(err.field.as_deref(), Some("email"));
}

on_both_databases!(
    register_then_me,
    bad_registrations_name_the_field_and_store_nothing,
    login_cycles_the_session_id,
    wrong_credentials_get_one_answer,
    a_plain_form_post_that_fails_is_sent_back_with_its_error,
    logout_ends_the_session,
    forged_session_cookies_are_strangers,
    operators_are_made_on_the_command_line,
    a_password_longer_than_todays_limit_still_logs_in,
    make_operator_checks_the_email,
);
