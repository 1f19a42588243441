//! Session expiry on both databases: an idle session ends, an active one is kept alive by a write at most
//! every few minutes (not one per request), made-up cookies store nothing, and a save never brings back a
//! session that was deleted meanwhile.

mod common;

use common::TestApp;
use portolan_core::db::session_store::{DbSessionStore, EXPIRY_REFRESH};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Statement};
use time::OffsetDateTime;
use tower_sessions::{
    SessionStore,
    session::{Id, Record},
};

async fn expiries(app: &TestApp) -> Vec<i64> {
    let backend = app.db.get_database_backend();
    let rows = app
        .db
        .query_all_raw(Statement::from_string(backend, "SELECT expiry_date FROM sessions ORDER BY id"))
        .await
        .unwrap();
    rows.iter().map(|r| r.try_get::<i64>("", "expiry_date").unwrap()).collect()
}

async fn set_expiry(app: &TestApp, expiry: i64) {
    let backend = app.db.get_database_backend();
    app.db
        .execute_raw(Statement::from_string(backend, format!("UPDATE sessions SET expiry_date = {expiry}")))
        .await
        .unwrap();
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

async fn an_active_session_is_refreshed_at_most_every_few_minutes(app: TestApp) {
    let browser = app.user("active@example.org").await;
    let [first] = expiries(&app).await[..] else { panic!("one session row") };
    for _ in 0..5 {
        let response = browser.get(app.url("/")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.text().await.unwrap().contains("Your projects"), "logged in");
    }
    assert_eq!(expiries(&app).await, vec![first], "a page view wrote the session");

    // As if the last write were longer ago than the refresh interval: the next request pushes the expiry.
    let older = first - EXPIRY_REFRESH.whole_seconds() - 60;
    set_expiry(&app, older).await;
    let response = browser.get(app.url("/")).send().await.unwrap();
    assert!(response.headers().get("set-cookie").is_some(), "the cookie's lifetime is renewed too");
    let [pushed] = expiries(&app).await[..] else { panic!("one session row") };
    assert!(pushed >= first, "expiry not pushed: {pushed} < {first}");
    assert!(response.text().await.unwrap().contains("Your projects"));
}

async fn an_idle_session_ends(app: TestApp) {
    let browser = app.user("idle@example.org").await;
    set_expiry(&app, now() - 1).await;
    let (status, body) = app.call(&browser, "current_user", &[]).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, serde_json::Value::Null),
        "an expired session still logged in"
    );
    let page = browser.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("Your projects"));
    // The expired row is not revived by the requests that found it expired.
    assert!(expiries(&app).await.iter().all(|&e| e < now()));
}

async fn made_up_cookies_store_nothing(app: TestApp) {
    let client = app.browser();
    for path in ["/", "/login", "/profile", "/api/v1/projects"] {
        for _ in 0..5 {
            let forged = Id::default();
            client
                .get(app.url(path))
                .header("cookie", format!("portolan_session={forged}"))
                .send()
                .await
                .unwrap();
        }
    }
    assert_eq!(app.count("sessions").await, 0);
}

async fn a_save_never_revives_a_deleted_session(app: TestApp) {
    let store = DbSessionStore::new(app.db.clone());
    let mut record = Record {
        id: Id::default(),
        data: [("user_id".to_owned(), serde_json::json!(1))].into(),
        expiry_date: OffsetDateTime::now_utc() + time::Duration::days(7),
    };
    store.create(&mut record).await.unwrap();
    let loaded = store.load(&record.id).await.unwrap().expect("stored");
    // Unchanged and moved by less than the refresh interval: nothing is written.
    let mut later = loaded.clone();
    later.expiry_date += time::Duration::minutes(1);
    store.save(&later).await.unwrap();
    assert_eq!(expiries(&app).await, vec![record.expiry_date.unix_timestamp()]);
    // Moved by more: the expiry is written.
    later.expiry_date += EXPIRY_REFRESH;
    store.save(&later).await.unwrap();
    assert_eq!(expiries(&app).await, vec![later.expiry_date.unix_timestamp()]);
    // Logged out by one request while another still holds the record: the late save brings nothing back,
    // whether the record is unchanged or not.
    store.delete(&record.id).await.unwrap();
    store.save(&loaded).await.unwrap();
    let mut changed = loaded.clone();
    changed.data.insert("user_id".to_owned(), serde_json::json!(2));
    store.save(&changed).await.unwrap();
    assert_eq!(app.count("sessions").await, 0);
    assert!(store.load(&record.id).await.unwrap().is_none());
}

on_both_databases!(
    an_active_session_is_refreshed_at_most_every_few_minutes,
    an_idle_session_ends,
    made_up_cookies_store_nothing,
    a_save_never_revives_a_deleted_session,
);
