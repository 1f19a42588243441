//! Integrity under concurrency and at the schema: join requests decided once and asked once, limits that
//! hold against parallel requests, what deleting a user does, checked role/status/scope columns, changes
//! that commit with their audit row, and services that read the portal's clock.

mod common;

use common::TestApp;
use portolan_core::{
    auth::{Caller, Via},
    clock::Clock,
};
use reqwest::{RequestBuilder, StatusCode};
use sea_orm::{ConnectionTrait, DbErr};
use serde_json::json;

/// Sends every request at once and returns the statuses, in order.
async fn all_at_once(requests: Vec<RequestBuilder>) -> Vec<StatusCode> {
    let mut set = tokio::task::JoinSet::new();
    for (i, request) in requests.into_iter().enumerate() {
        set.spawn(async move { (i, request.send().await.unwrap().status()) });
    }
    let mut statuses = vec![StatusCode::OK; set.len()];
    while let Some(done) = set.join_next().await {
        let (i, status) = done.unwrap();
        statuses[i] = status;
    }
    statuses
}

fn tally(statuses: &[StatusCode], status: StatusCode) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

async fn exec(app: &TestApp, sql: &str) -> Result<(), DbErr> {
    app.db.execute_unprepared(sql).await.map(|_| ())
}

async fn user_id(app: &TestApp, email: &str) -> i32 {
    app.scalar(&format!("SELECT CAST(id AS BIGINT) FROM users WHERE email = '{email}'")).await as i32
}

fn session_caller(user_id: i32) -> Caller {
    Caller { user_id, operator: false, via: Via::Session }
}

/// A distinct, well-formed ed25519 public key line per `n`.
fn key_line(n: usize) -> String {
    let mut bytes = [7u8; 32];
    bytes[..8].copy_from_slice(&(n as u64).to_le_bytes());
    let key = ssh_key::PublicKey::new(
        ssh_key::public::KeyData::Ed25519(ssh_key::public::Ed25519PublicKey(bytes)),
        format!("key{n}@lab"),
    );
    key.to_openssh().unwrap()
}

async fn concurrent_decisions_have_one_winner(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    let bob = app.user("bob@example.org").await;
    app.create_project(&ada, "wanlab").await;
    let (_, request) = app.call(&bob, "request_join", &[("project", "wanlab"), ("message", "")]).await;
    let id = request["id"].as_i64().unwrap();
    let statuses = all_at_once(
        (0..20)
            .map(|i| {
                let verb = if i % 2 == 0 { "approve" } else { "reject" };
                ada.post(app.url(&format!("/api/v1/join-requests/{id}/{verb}"))).json(&json!({}))
            })
            .collect(),
    )
    .await;
    assert_eq!(tally(&statuses, StatusCode::OK), 1, "{statuses:?}");
    assert_eq!(tally(&statuses, StatusCode::CONFLICT), 19, "{statuses:?}");
    let winner = statuses.iter().position(|s| *s == StatusCode::OK).unwrap();
    let approved = winner % 2 == 0;
    let (_, mine) = app.call(&bob, "my_join_requests", &[]).await;
    assert_eq!(mine[0]["status"], if approved { "approved" } else { "rejected" });
    assert_eq!(app.count("memberships").await, if approved { 2 } else { 1 });
    assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'project.join_decision'").await, 1);
    // And later decisions are conflicts too, sequentially.
    let (status, body) = app.post(&ada, &format!("/join-requests/{id}/reject"), None, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
}

async fn concurrent_asks_store_one_request(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    let bob = app.user("bob@example.org").await;
    app.create_project(&ada, "wanlab").await;
    let statuses = all_at_once(
        (0..20)
            .map(|_| {
                bob.post(app.url("/api/v1/projects/wanlab/join-requests")).json(&json!({ "message": "hi" }))
            })
            .collect(),
    )
    .await;
    assert_eq!(tally(&statuses, StatusCode::CREATED), 1, "{statuses:?}");
    assert_eq!(tally(&statuses, StatusCode::CONFLICT), 19, "{statuses:?}");
    assert_eq!(app.count("join_requests").await, 1);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'project.join_request'").await, 1);

    // The database itself holds one pending request per user and project, and keeps decided ones.
    let (project, bob_id) =
        (app.scalar("SELECT CAST(id AS BIGINT) FROM projects").await, user_id(&app, "bob@example.org").await);
    let insert = format!(
        "INSERT INTO join_requests (project_id, user_id, message, status, created_at)
         VALUES ({project}, {bob_id}, 'raw', 'pending', CURRENT_TIMESTAMP)"
    );
    assert!(exec(&app, &insert).await.is_err(), "a second pending request is refused");
    let (_, pending) = app.get(&ada, "/projects/wanlab/join-requests", None).await;
    let id = pending[0]["id"].as_i64().unwrap();
    let (status, _) = app.post(&ada, &format!("/join-requests/{id}/reject"), None, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) =
        app.post(&bob, "/projects/wanlab/join-requests", None, json!({ "message": "again" })).await;
    assert_eq!(status, StatusCode::CREATED, "after a rejection one may ask again: {body}");
    assert_eq!(app.count("join_requests").await, 2);
}

async fn deleting_a_creator_is_refused_and_loses_nothing(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    let bob = app.user("bob@example.org").await;
    let ops = app.user("ops@example.org").await;
    portolan_core::accounts::set_operator(&app.db, &Clock::real(), "ops@example.org", true).await.unwrap();
    app.create_project(&ada, "wanlab").await;
    app.call(&ada, "add_key", &[("public_key", &key_line(1))]).await;
    app.token(&ada, "read").await;
    let (_, request) = app.call(&bob, "request_join", &[("project", "wanlab"), ("message", "")]).await;
    let (status, _) =
        app.post(&ops, &format!("/join-requests/{}/approve", request["id"]), None, json!({})).await;
    assert_eq!(status, StatusCode::OK);

    let tables = ["users", "projects", "memberships", "join_requests", "ssh_keys", "api_tokens"];
    let mut before = Vec::new();
    for table in tables {
        before.push(app.count(table).await);
    }
    let ada_id = user_id(&app, "ada@example.org").await;
    let err = exec(&app, &format!("DELETE FROM users WHERE id = {ada_id}")).await.unwrap_err();
    assert!(err.to_string().to_lowercase().contains("foreign key"), "{err}");
    for (table, n) in tables.iter().zip(&before) {
        assert_eq!(app.count(table).await, *n, "{table} lost rows");
    }
    let (status, detail) = app.get(&ada, "/projects/wanlab", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["members"].as_array().unwrap().len(), 2);

    // Deleting the operator who decided keeps the decision and forgets the decider (set null).
    let ops_id = user_id(&app, "ops@example.org").await;
    exec(&app, &format!("DELETE FROM users WHERE id = {ops_id}")).await.unwrap();
    assert_eq!(app.count("join_requests").await, 1);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM join_requests WHERE decided_by IS NULL").await, 1);
    // A member who created nothing can go; their membership and request go with them.
    let bob_id = user_id(&app, "bob@example.org").await;
    exec(&app, &format!("DELETE FROM users WHERE id = {bob_id}")).await.unwrap();
    assert_eq!(app.count("memberships").await, 1);
    assert_eq!(app.count("join_requests").await, 0);
    assert_eq!(app.count("projects").await, 1);
    // decided_by must name a user.
    let project = app.scalar("SELECT CAST(id AS BIGINT) FROM projects").await;
    let insert = format!(
        "INSERT INTO join_requests (project_id, user_id, message, status, created_at, decided_by)
         VALUES ({project}, {ada_id}, '', 'rejected', CURRENT_TIMESTAMP, 999999)"
    );
    assert!(exec(&app, &insert).await.is_err());
}

async fn unknown_values_are_refused_by_the_database(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    app.create_project(&ada, "wanlab").await;
    app.token(&ada, "read").await;
    let bob = app.user("bob@example.org").await;
    app.call(&bob, "request_join", &[("project", "wanlab"), ("message", "")]).await;
    let (project, ada_id) =
        (app.scalar("SELECT CAST(id AS BIGINT) FROM projects").await, user_id(&app, "ada@example.org").await);
    for bad in [
        "UPDATE memberships SET role = 'owner'".to_owned(),
        "UPDATE join_requests SET status = 'withdrawn'".to_owned(),
        "UPDATE api_tokens SET scopes = 'admin'".to_owned(),
        "UPDATE api_tokens SET scopes = 'write'".to_owned(),
        format!(
            "INSERT INTO join_requests (project_id, user_id, message, status, created_at)
             VALUES ({project}, {ada_id}, '', 'maybe', CURRENT_TIMESTAMP)"
        ),
    ] {
        let err = exec(&app, &bad).await.expect_err(&bad);
        assert!(err.to_string().to_lowercase().contains("check"), "{bad}: {err}");
    }
    for good in [
        "UPDATE memberships SET role = 'member'",
        "UPDATE join_requests SET status = 'rejected'",
        "UPDATE api_tokens SET scopes = 'read,write'",
    ] {
        exec(&app, good).await.unwrap();
    }
}

/// With the database's checks removed, code that reads an unknown value fails instead of guessing (a token
/// with unknown scopes used to be taken for a read token, an unknown role was skipped).
async fn unknown_stored_values_are_errors_not_guesses(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    app.create_project(&ada, "wanlab").await;
    let token = app.token(&ada, "read").await;
    if app.backend == "postgres" {
        exec(&app, "ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_scopes_check").await.unwrap();
        exec(&app, "ALTER TABLE memberships DROP CONSTRAINT memberships_role_check").await.unwrap();
    } else {
        exec(&app, "DROP TRIGGER api_tokens_scopes_check_update").await.unwrap();
        exec(&app, "DROP TRIGGER memberships_role_check_update").await.unwrap();
    }
    exec(&app, "UPDATE api_tokens SET scopes = 'admin'").await.unwrap();
    let (status, body) = app.get(&reqwest::Client::new(), "/me", Some(&token)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["error"]["code"], "internal");
    let (status, _) = app.get(&ada, "/tokens", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

    exec(&app, "UPDATE memberships SET role = 'owner'").await.unwrap();
    for path in ["/projects", "/projects/wanlab", "/projects/wanlab/members"] {
        let (status, body) = app.get(&ada, path, None).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}: {body}");
    }
}

async fn key_limit_holds_under_parallel_requests(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    let statuses = all_at_once(
        (0..80)
            .map(|n| ada.post(app.url("/api/v1/keys")).json(&json!({ "public_key": key_line(n) })))
            .collect(),
    )
    .await;
    let limit = portolan_core::keys::MAX_KEYS_PER_USER as usize;
    assert_eq!(tally(&statuses, StatusCode::CREATED), limit, "{statuses:?}");
    assert_eq!(tally(&statuses, StatusCode::BAD_REQUEST), 80 - limit, "{statuses:?}");
    assert_eq!(app.count("ssh_keys").await, limit as i64);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'key.add'").await, limit as i64);
}

async fn token_limit_holds_under_parallel_requests(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    let ada_id = user_id(&app, "ada@example.org").await;
    let limit = portolan_core::tokens::MAX_TOKENS_PER_USER as usize;
    let stored = limit - 40;
    for n in 0..stored {
        exec(
            &app,
            &format!(
                "INSERT INTO api_tokens (user_id, name, scopes, token_hash, created_at)
                 VALUES ({ada_id}, 'stored', 'read', '{n:064}', CURRENT_TIMESTAMP)"
            ),
        )
        .await
        .unwrap();
    }
    // A revoked token does not count against the limit.
    exec(
        &app,
        &format!("UPDATE api_tokens SET revoked_at = CURRENT_TIMESTAMP WHERE token_hash = '{:064}'", 0),
    )
    .await
    .unwrap();
    let room = limit - (stored - 1);
    let statuses = all_at_once(
        (0..80)
            .map(|_| ada.post(app.url("/sf/create_token")).form(&[("name", "parallel"), ("scope", "read")]))
            .collect(),
    )
    .await;
    assert_eq!(tally(&statuses, StatusCode::OK), room, "{statuses:?}");
    assert_eq!(tally(&statuses, StatusCode::CONFLICT), 80 - room, "{statuses:?}");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM api_tokens WHERE revoked_at IS NULL").await,
        limit as i64,
        "live tokens"
    );
}

/// Parallel deletes: each of the caller's keys goes once, with one audit row; deleting one key twice at once
/// answers 204 once and 404 otherwise (on SQLite a transaction that read before writing failed with
/// SQLITE_BUSY_SNAPSHOT when another writer committed in between: a 500).
async fn parallel_deletes_answer_204_or_404(app: TestApp) {
    use portolan_core::keys;
    let browser = app.user("ada@example.org").await;
    let ada = session_caller(user_id(&app, "ada@example.org").await);
    let mut ids = Vec::new();
    for n in 0..24 {
        ids.push(keys::add(&app.db, &Clock::real(), &ada, &key_line(n)).await.unwrap().id);
    }
    let delete = |id: i32| browser.delete(app.url(&format!("/api/v1/keys/{id}")));
    let mut requests: Vec<_> = ids[..20].iter().map(|id| delete(*id)).collect();
    requests.extend((0..8).map(|_| delete(ids[20])));
    let statuses = all_at_once(requests).await;
    assert_eq!(tally(&statuses, StatusCode::NO_CONTENT), 21, "{statuses:?}");
    assert_eq!(tally(&statuses, StatusCode::NOT_FOUND), 7, "{statuses:?}");
    assert_eq!(app.count("ssh_keys").await, 3);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'key.delete'").await, 21);
}

/// A change and its audit row commit together: with the audit table unwritable, nothing is stored.
async fn changes_commit_with_their_audit_row(app: TestApp) {
    let ada = app.user("ada@example.org").await;
    app.create_project(&ada, "wanlab").await;
    let token = app.token(&ada, "read").await;
    let (before_users, before_keys, before_tokens) =
        (app.count("users").await, app.count("ssh_keys").await, app.count("api_tokens").await);
    exec(&app, "ALTER TABLE audit_log RENAME TO audit_log_away").await.unwrap();

    let (status, body) = app
        .call(
            &app.browser(),
            "register",
            &[("email", "bob@example.org"), ("name", "Bob"), ("password", "correct horse battery")],
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let (status, _) = app.call(&ada, "add_key", &[("public_key", &key_line(1))]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let (status, _) = app.call(&ada, "create_token", &[("name", "t"), ("scope", "read")]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let (status, _) = app.call(&ada, "create_project", &[("name", "second"), ("description", "")]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let err = portolan_core::accounts::set_operator(&app.db, &Clock::real(), "ada@example.org", true).await;
    assert!(err.is_err());

    exec(&app, "ALTER TABLE audit_log_away RENAME TO audit_log").await.unwrap();
    assert_eq!(app.count("users").await, before_users, "no user without its audit row");
    assert_eq!(app.count("ssh_keys").await, before_keys);
    assert_eq!(app.count("api_tokens").await, before_tokens);
    assert_eq!(app.count("projects").await, 1);
    let (_, me) = app.get(&reqwest::Client::new(), "/me", Some(&token)).await;
    assert_eq!(me["is_operator"], false);
}

/// Services stamp rows and audit entries with the clock they are given, not the system's.
async fn services_read_the_given_clock(app: TestApp) {
    use portolan_core::{keys, projects, tokens};
    app.user("ada@example.org").await;
    let ada = session_caller(user_id(&app, "ada@example.org").await);
    let at = chrono::DateTime::from_timestamp(1_900_000_000, 0).unwrap();
    let clock = Clock::manual(at);
    let project = projects::create(&app.db, &clock, &ada, "timelab", "").await.unwrap();
    assert_eq!(project.created_at, at);
    let key = keys::add(&app.db, &clock, &ada, &key_line(3)).await.unwrap();
    assert_eq!(key.created_at, at);
    clock.advance(chrono::TimeDelta::hours(1));
    let token = tokens::create(&app.db, &clock, &ada, "clocked", model::tokens::Scope::Read).await.unwrap();
    assert_eq!(token.token.created_at, at + chrono::TimeDelta::hours(1));
    tokens::revoke(&app.db, &clock, &ada, token.token.id).await.unwrap();
    let listed = tokens::list(&app.db, &ada).await.unwrap();
    assert_eq!(
        listed.iter().find(|t| t.id == token.token.id).unwrap().revoked_at,
        Some(at + chrono::TimeDelta::hours(1))
    );
    let stamped = app.scalar(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE action IN ('project.create', 'key.add', 'token.create', 'token.revoke')
             AND actor_id = {}",
            ada.user_id
        ),
    )
    .await;
    assert_eq!(stamped, 4);
    use portolan_core::db::entity::audit;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let rows = audit::Entity::find()
        .filter(audit::Column::ActorId.eq(ada.user_id))
        .order_by_asc(audit::Column::Id)
        .all(&app.db)
        .await
        .unwrap();
    let times: Vec<_> =
        rows.iter().filter(|r| r.action != "user.create" && r.action != "login").map(|r| r.at).collect();
    assert_eq!(times, vec![at, at, at + chrono::TimeDelta::hours(1), at + chrono::TimeDelta::hours(1)]);
}

/// `projects::members` answers only those who may see the project.
async fn members_are_scoped_to_the_caller(app: TestApp) {
    use portolan_core::projects;
    let ada = app.user("ada@example.org").await;
    app.user("carol@example.org").await;
    app.create_project(&ada, "secretlab").await;
    let ada = session_caller(user_id(&app, "ada@example.org").await);
    let carol = session_caller(user_id(&app, "carol@example.org").await);
    let members = projects::members(&app.db, &ada, "secretlab").await.unwrap();
    assert_eq!(members.len(), 1);
    let err = projects::members(&app.db, &carol, "secretlab").await.unwrap_err();
    assert_eq!(err.code, model::error::ErrorCode::NotFound);
    let operator = Caller { operator: true, ..carol };
    assert_eq!(projects::members(&app.db, &operator, "secretlab").await.unwrap().len(), 1);
}

on_both_databases!(
    concurrent_decisions_have_one_winner,
    concurrent_asks_store_one_request,
    deleting_a_creator_is_refused_and_loses_nothing,
    unknown_values_are_refused_by_the_database,
    unknown_stored_values_are_errors_not_guesses,
    key_limit_holds_under_parallel_requests,
    token_limit_holds_under_parallel_requests,
    changes_commit_with_their_audit_row,
    services_read_the_given_clock,
    members_are_scoped_to_the_caller,
    parallel_deletes_answer_204_or_404,
);
