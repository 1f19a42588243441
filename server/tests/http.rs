//! The HTTP layer: framework errors in the JSON shape, the OpenAPI document against the routes, server
//! functions' statuses, slow clients and the in-flight limit, and the security headers.

mod common;

use common::TestApp;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use std::{collections::BTreeSet, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{Instant, timeout},
};

async fn json_of(response: reqwest::Response) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: not JSON: {text:?}"));
    (status, headers, body)
}

// ---- 1. Framework-made errors of the API are JSON ----

#[tokio::test]
async fn a_wrong_method_on_an_api_path_is_405_json() {
    let app = TestApp::sqlite().await;
    let response = Client::new().put(app.url("/api/v1/keys")).send().await.unwrap();
    let (status, headers, body) = json_of(response).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    assert!(body["error"]["message"].is_string());
    let allow = headers["allow"].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");

    let response = Client::new().delete(app.url("/api/v1/me")).send().await.unwrap();
    let (status, _, body) = json_of(response).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn a_malformed_path_id_is_400_json() {
    let app = TestApp::sqlite().await;
    let ada = app.user("ada@example.org").await;
    let token = app.token(&ada, "write").await;
    for path in ["/api/v1/keys/abc", "/api/v1/tokens/1.5", "/api/v1/keys/99999999999"] {
        let response = Client::new().delete(app.url(path)).bearer_auth(&token).send().await.unwrap();
        let (status, headers, body) = json_of(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_input", "{path}: {body}");
        assert!(headers["content-type"].to_str().unwrap().starts_with("application/json"));
    }
    let response = Client::new().post(app.url("/api/v1/join-requests/x/approve")).bearer_auth(&token).send();
    let (status, _, body) = json_of(response.await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_input");
}

#[tokio::test]
async fn unknown_api_paths_are_404_json_for_every_method() {
    let app = TestApp::sqlite().await;
    for (method, path) in
        [(Method::GET, "/api/v1"), (Method::POST, "/api/v1/nope"), (Method::PATCH, "/api/v1/a/b/c")]
    {
        let response = Client::new().request(method.clone(), app.url(path)).send().await.unwrap();
        let (status, _, body) = json_of(response).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(body["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn an_api_body_that_is_not_json_is_415_json() {
    let app = TestApp::sqlite().await;
    let ada = app.user("ada@example.org").await;
    let token = app.token(&ada, "write").await;
    for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let mut request =
            Client::new().post(app.url("/api/v1/projects")).bearer_auth(&token).body("{\"name\":\"p\"}");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let (status, _, body) = json_of(request.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type:?}: {body}");
        assert_eq!(body["error"]["code"], "unsupported_media_type", "{body}");
    }
    assert_eq!(app.count("projects").await, 0);
}

// ---- 2. The OpenAPI document is generated from the routes, and covers all of them ----

/// The API's paths as the router holds them, read from the router's own description (axum's `Debug`
/// lists each route's path), so that a route added by hand beside `routes!` is found too.
fn routed_paths() -> BTreeSet<String> {
    let description = format!("{:?}", server::api::stateless_router());
    let paths: BTreeSet<String> = description
        .split('"')
        .filter(|part| part.starts_with("/api/v1/") && !part.contains("{*"))
        .map(str::to_owned)
        .collect();
    assert!(
        paths.contains("/api/v1/me") && paths.contains("/api/v1/keys/{id}"),
        "could not read the routes from the router's description; has axum's Debug changed? {paths:?}"
    );
    paths
}

#[tokio::test]
async fn every_route_is_documented() {
    let app = TestApp::sqlite().await;
    let (status, doc) = app.get(&Client::new(), "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let methods = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];
    let mut served = BTreeSet::new();
    for path in routed_paths() {
        let concrete = path.replace("{id}", "1").replace("{name}", "x");
        for method in &methods {
            let response = Client::new().request(method.clone(), app.url(&concrete)).send().await.unwrap();
            if response.status() != StatusCode::METHOD_NOT_ALLOWED {
                served.insert((path.clone(), method.as_str().to_lowercase()));
            }
        }
    }
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((path.clone(), method.clone()));
        }
    }
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(undocumented.is_empty(), "served but not in openapi.json: {undocumented:?}");
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(unserved.is_empty(), "in openapi.json but not served: {unserved:?}");
    assert!(served.len() >= 16, "{served:?}");
    assert!(documented.contains(&("/api/v1/keys/{id}".to_owned(), "delete".to_owned())));
}

// ---- 3. Server functions answer 400/404/405/413/415 ----

#[tokio::test]
async fn server_function_errors_have_their_status() {
    let app = TestApp::sqlite().await;
    let ada = app.user("ada@example.org").await;

    // Missing, duplicate and bad arguments: 400.
    let (status, body) = app.call(&ada, "create_project", &[("description", "no name")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_input", "{body}");
    let (status, body) =
        app.call(&ada, "create_project", &[("name", "a"), ("name", "b"), ("description", "")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_input", "{body}");
    let (status, body) = app.call(&ada, "create_token", &[("name", "t"), ("scope", "everything")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_input", "{body}");
    let (status, body) = app.call(&ada, "delete_key", &[("id", "abc")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let response = ada
        .post(app.url("/sf/create_project"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0xff, 0xfe, b'=', 0xff])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Not a form: 415.
    let response =
        ada.post(app.url("/sf/create_project")).json(&json!({ "name": "p" })).send().await.unwrap();
    let (status, _, body) = json_of(response).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(body["code"], "unsupported_media_type");
    let response = ada.post(app.url("/sf/logout")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Too large: 413, with or without a Content-Length.
    let huge = "a".repeat(server::web::MAX_BODY + 1);
    let (status, body) = app.call(&ada, "add_key", &[("public_key", &huge)]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["code"], "too_large");
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /sf/add_key HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        app.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("2000\r\n{}\r\n", "a".repeat(0x2000));
    for _ in 0..(server::web::MAX_BODY / 0x2000 + 1) {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break; // refused midway
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = vec![0u8; 12];
    timeout(Duration::from_secs(5), stream.read_exact(&mut answer)).await.unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&answer), "HTTP/1.1 413", "a chunked body without Content-Length");

    // Unknown name (an empty one too): 404; GET: 405.
    for name in ["no_such_function", ""] {
        let (status, body) = app.call(&ada, name, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name:?}: {body}");
        assert_eq!(body["code"], "not_found", "{name:?}: {body}");
    }
    let response = ada.post(app.url("/sf")).form(&[("a", "b")]).send().await.unwrap();
    let (status, _, body) = json_of(response).await;
    assert_eq!((status, &body["code"]), (StatusCode::NOT_FOUND, &json!("not_found")), "/sf: {body}");
    let response = ada.get(app.url("/sf/create_project?name=x")).send().await.unwrap();
    let (status, headers, body) = json_of(response).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(headers["allow"], "POST");

    // The service's own errors keep their status, and nothing was stored.
    let (status, body) = app.call(&ada, "create_project", &[("name", "x y"), ("description", "")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(app.count("projects").await, 0);
    assert_eq!(app.count("ssh_keys").await, 0);
}

#[tokio::test]
async fn a_plain_form_post_refused_before_dispatch_is_sent_back_with_its_error() {
    let app = TestApp::sqlite().await;
    let ada = app.user("ada@example.org").await;
    let huge = "a".repeat(server::web::MAX_BODY + 1);
    let response = ada
        .post(app.url("/sf/add_key"))
        .header("accept", "text/html")
        .header("referer", app.url("/profile"))
        .form(&[("public_key", huge.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(&app.url("/profile?")), "{location}");
    assert!(location.contains("__path=%2Fsf%2Fadd_key") && location.contains("__err="), "{location}");
}

// ---- 4. Slow clients ----

/// Reads until the server closes the connection; true if it did within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn half_sent_requests_are_closed_after_the_header_timeout() {
    let app = TestApp::sqlite_with(|c| c.header_timeout_s = 1.0).await;
    let mut slow = Vec::new();
    for i in 0..50 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        let partial: &[u8] = match i % 5 {
            0 => b"",                                       // nothing at all
            1 => b"GET /login HT",                          // half a request line
            2 => b"P",                                      // one byte of either protocol's start
            3 => b"PRI * HTTP/2.0\r\n",                     // half the HTTP/2 preface
            _ => b"GET /login HTTP/1.1\r\nHost: x\r\nX-A:", // half the headers
        };
        stream.write_all(partial).await.unwrap();
        slow.push(stream);
    }
    let started = Instant::now();
    // Meanwhile a normal request is served at once.
    let response = Client::new().get(app.url("/login")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    for (i, stream) in slow.iter_mut().enumerate() {
        assert!(closed_within(stream, Duration::from_secs(5)).await, "connection {i} still open");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "closed before the timeout: {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_stalled_body_is_refused_after_the_body_timeout() {
    let app = TestApp::sqlite_with(|c| c.body_timeout_s = 1.0).await;
    let mut stalled = Vec::new();
    for path in ["/sf/login", "/api/v1/keys"] {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Authorization: Bearer x\r\nContent-Length: 100\r\n\r\nemail=a",
            app.addr
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stalled.push((path, stream));
    }
    let started = Instant::now();
    let response = Client::new().get(app.url("/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "served meanwhile");
    for (path, stream) in &mut stalled {
        let mut answer = Vec::new();
        let read = timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(read.is_ok(), "{path}: still open after 5 s");
        if *path == "/sf/login" {
            // The server function reads the body before anything else: 400.
            assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        } else {
            // The API authenticates first: the bad token is refused without waiting for the body.
            assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer}");
        }
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn requests_beyond_the_in_flight_limit_are_503_json() {
    let app = TestApp::sqlite_with(|c| {
        c.max_in_flight = 2;
        c.body_timeout_s = 2.0;
    })
    .await;
    // Two requests in flight: server functions waiting for the rest of their bodies.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
            "POST /sf/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: 100\r\n\r\nemail=a",
            app.addr
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        held.push(stream);
    }
    // Once the server has read both heads, the next request is refused at once (bounded polling, well
    // within the body timeout that ends the two).
    let polled = Instant::now();
    let (status, headers, body) = loop {
        let response = Client::new().get(app.url("/api/v1/openapi.json")).send().await.unwrap();
        let answer = json_of(response).await;
        if answer.0 != StatusCode::OK || polled.elapsed() > Duration::from_secs(1) {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(headers["x-content-type-options"], "nosniff", "a refusal is an answer like any other");
    assert!(headers.contains_key("content-security-policy"), "{headers:?}");
    // Once they time out, the portal answers again.
    for stream in &mut held {
        assert!(closed_within(stream, Duration::from_secs(5)).await);
    }
    let response = Client::new().get(app.url("/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

// ---- 5. Headers ----

#[tokio::test]
async fn pages_carry_a_content_security_policy_with_their_scripts_nonce() {
    let app = TestApp::sqlite().await;
    let response = Client::new().get(app.url("/login")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
    let page = response.text().await.unwrap();
    assert!(!csp.contains("unsafe-inline") && !csp.contains("'unsafe-eval'"), "{csp}");
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let nonce = csp.split("'nonce-").nth(1).and_then(|rest| rest.split('\'').next()).expect(&csp);
    assert!(nonce.len() >= 16, "{nonce}");
    assert!(page.contains(&format!("nonce=\"{nonce}\"")), "the hydration script carries the nonce");
    for script in page.split("<script").skip(1) {
        assert!(script.contains(&format!("nonce=\"{nonce}\"")), "a script without the nonce: {script:.200}");
    }
    // A fresh nonce each time.
    let again = Client::new().get(app.url("/login")).send().await.unwrap();
    assert_ne!(again.headers()["content-security-policy"].to_str().unwrap(), csp);
    // Other answers get the policy without a nonce.
    let response = Client::new().get(app.url("/api/v1/openapi.json")).send().await.unwrap();
    let csp = response.headers()["content-security-policy"].to_str().unwrap();
    assert!(!csp.contains("nonce") && csp.contains("script-src 'self'"), "{csp}");
}

#[tokio::test]
async fn authenticated_answers_are_not_stored() {
    let app = TestApp::sqlite().await;
    let anonymous = Client::new().get(app.url("/login")).send().await.unwrap();
    assert!(anonymous.headers().get("cache-control").is_none(), "a public page may be cached");

    // The log-in's answer sets the session cookie.
    let ada = app.browser();
    let response = ada
        .post(app.url("/sf/register"))
        .form(&[("email", "ada@example.org"), ("name", "Ada"), ("password", "correct horse battery")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");

    // A page and a server function in the session.
    let page = ada.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.headers()["cache-control"], "no-store");
    // Above all the answer that carries a new token's secret, from both doors.
    let response = ada
        .post(app.url("/sf/create_token"))
        .form(&[("name", "t"), ("scope", "write")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    let token: Value = response.json().await.unwrap();
    let response = ada
        .post(app.url("/api/v1/tokens"))
        .json(&json!({ "name": "t2", "scope": "read" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["cache-control"], "no-store");

    // A bearer call, and its errors too.
    let secret = token["secret"].as_str().unwrap();
    for path in ["/api/v1/me", "/api/v1/keys/abc"] {
        let response = Client::new().get(app.url(path)).bearer_auth(secret).send().await.unwrap();
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
    }
}

#[tokio::test]
async fn the_bundle_stays_cacheable_and_carries_no_cookie() {
    let site = tempfile::tempdir().unwrap();
    std::fs::create_dir(site.path().join("pkg")).unwrap();
    std::fs::write(site.path().join("pkg/portolan.js"), "export default function() {}").unwrap();
    let root = site.path().to_owned();
    let app = TestApp::sqlite_with(|c| c.site_root = root).await;
    let ada = app.user("ada@example.org").await;
    let asset = ada.get(app.url("/pkg/portolan.js")).send().await.unwrap();
    assert_eq!(asset.status(), StatusCode::OK);
    // A cache may keep it (it is the same for everyone), so it must not carry the session cookie.
    assert!(asset.headers().get("set-cookie").is_none(), "{:?}", asset.headers());
    assert!(asset.headers().get("cache-control").is_none_or(|v| v != "no-store"), "{:?}", asset.headers());
    // The session still works afterwards.
    assert_eq!(ada.get(app.url("/api/v1/me")).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn hsts_only_when_the_public_url_is_https() {
    let plain = TestApp::sqlite().await;
    let response = Client::new().get(plain.url("/login")).send().await.unwrap();
    assert!(response.headers().get("strict-transport-security").is_none());

    let tls = TestApp::sqlite_with(|c| c.public_url = Some("https://portolan.example.org".to_owned())).await;
    for path in ["/login", "/api/v1/me", "/no/such/page"] {
        let response = Client::new().get(tls.url(path)).send().await.unwrap();
        let hsts =
            response.headers().get("strict-transport-security").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(hsts.as_deref(), Some("max-age=31536000"), "{path}");
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let app = TestApp::sqlite_with(|c| c.header_timeout_s = 1.0).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let request = format!("GET /api/v1/openapi.json HTTP/1.1\r\nHost: {}\r\n\r\n", app.addr);
    stream.write_all(request.as_bytes()).await.unwrap();
    // Read the whole answer (its length is known), leaving the connection idle and open.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
        })
        .expect(&head);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    let idle = Instant::now();
    assert!(
        closed_within(&mut stream, Duration::from_secs(3)).await,
        "an idle keep-alive connection stayed open"
    );
    // The timer started when the answer was written, a little before `idle`: room for a loaded machine.
    assert!(idle.elapsed() >= Duration::from_millis(500), "closed before the timeout: {:?}", idle.elapsed());
}

#[tokio::test]
async fn shutdown_closes_idle_connections_at_once_and_lets_open_requests_finish() {
    let mut app = TestApp::sqlite_with(|c| c.header_timeout_s = 30.0).await;
    // An idle keep-alive connection (a request answered) and a request in flight (half its body sent).
    let idle = Client::new();
    assert_eq!(idle.get(app.url("/login")).send().await.unwrap().status(), StatusCode::OK);
    let mut open = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /sf/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: 32\r\n\r\nemail=a%40example.org",
        app.addr
    );
    open.write_all(head.as_bytes()).await.unwrap();
    let mut quiet = TcpStream::connect(app.addr).await.unwrap(); // opened, nothing sent
    tokio::time::sleep(Duration::from_millis(200)).await; // let the server pick them up

    let served = app.shut_down();
    let started = Instant::now();
    assert!(closed_within(&mut quiet, Duration::from_secs(5)).await, "a connection that sent nothing");
    assert!(started.elapsed() < Duration::from_secs(5), "closed by the shutdown, not by a timeout");
    assert!(!served.is_finished(), "a request is still open");
    open.write_all(b"&password=x").await.unwrap();
    let mut answer = Vec::new();
    timeout(Duration::from_secs(10), open.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 401"), "the open request was answered: {answer}");
    timeout(Duration::from_secs(5), served).await.expect("serve ends after the last answer").unwrap();
    assert!(TcpStream::connect(app.addr).await.is_err(), "no longer listening");
    drop(idle);
}

/// Sends `head`, then the body a byte every 100 ms (never stalling long), and returns the answer and when
/// it came.
async fn drip(app: &TestApp, head: String, body: &'static [u8]) -> (String, Duration) {
    let stream = TcpStream::connect(app.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let dripping = tokio::spawn(async move {
        for byte in body {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    timeout(Duration::from_secs(6), read.read_to_end(&mut answer)).await.expect("no answer").unwrap();
    dripping.abort();
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

#[tokio::test]
async fn a_dripped_body_is_refused_at_the_body_deadline() {
    let app = TestApp::sqlite_with(|c| c.body_timeout_s = 1.0).await;
    let ada = app.user("ada@example.org").await;
    let token = app.token(&ada, "write").await;
    // 60 bytes at 10 a second would take 6 s; no gap is longer than 100 ms.
    const FORM: &[u8] = b"email=ada%40example.org&password=correct+horse+battery+staple";
    const JSON: &[u8] = b"{\"public_key\": \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPI+DjeF\"}";
    let cases = [
        ("/sf/login", "application/x-www-form-urlencoded", "", FORM),
        ("/api/v1/keys", "application/json", token.as_str(), JSON),
    ];
    for (path, content_type, token, body) in cases {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\n\
             Authorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
            app.addr,
            body.len()
        );
        let (answer, elapsed) = drip(&app, head, body).await;
        assert!(answer.starts_with("HTTP/1.1 400 Bad Request"), "{path}: {answer}");
        assert!(answer.contains("\"code\":\"invalid_input\""), "{path}: {answer}");
        assert!(elapsed >= Duration::from_millis(900), "{path}: refused before the deadline: {elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{path}: {elapsed:?}");
    }
    assert_eq!(app.count("ssh_keys").await, 0);
}

// ---- 6. The client's address behind a reverse proxy ----

/// Fails log-ins "from" `client` (an `X-Forwarded-For` value) on fresh accounts, so that only the
/// per-client budget runs down, until one is refused 429; returns how many were answered 401 first.
async fn failures_until_throttled(app: &TestApp, client: &str, tag: &str) -> u32 {
    let browser = app.browser();
    for i in 0..40 {
        let email = format!("{tag}{i}@example.org");
        let response = browser
            .post(app.url("/sf/login"))
            .header("x-forwarded-for", client)
            .form(&[("email", email.as_str()), ("password", "a guess of mine")])
            .send()
            .await
            .unwrap();
        match response.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => return i,
            status => panic!("{client}: attempt {i}: {status}"),
        }
    }
    panic!("{client}: never throttled")
}

async fn login_status(app: &TestApp, client: &str) -> StatusCode {
    let response = app
        .browser()
        .post(app.url("/sf/login"))
        .header("x-forwarded-for", client)
        .form(&[("email", "nobody@example.org"), ("password", "a guess of mine")])
        .send()
        .await
        .unwrap();
    response.status()
}

#[tokio::test]
async fn behind_a_trusted_proxy_clients_are_throttled_apart() {
    // The test's connections come from 127.0.0.1: the proxy.
    let app = TestApp::sqlite_with(|c| c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]).await;
    let free = failures_until_throttled(&app, "203.0.113.1", "a").await;
    assert_eq!(free, 20, "the per-client budget (core::throttle::CLIENT.free)");
    // Another client behind the same proxy is not affected...
    assert_eq!(login_status(&app, "203.0.113.2").await, StatusCode::UNAUTHORIZED);
    // ...but the throttled one cannot get out by claiming another address left of the proxy's entry.
    assert_eq!(login_status(&app, "198.51.100.9, 203.0.113.1").await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn without_a_trusted_proxy_x_forwarded_for_is_ignored() {
    let app = TestApp::sqlite().await;
    let free = failures_until_throttled(&app, "203.0.113.1", "a").await;
    assert_eq!(free, 20);
    // Claiming to be someone else changes nothing: the peer address is throttled.
    assert_eq!(login_status(&app, "203.0.113.2").await, StatusCode::TOO_MANY_REQUESTS);
    // And a proxy list that does not name the peer is no better.
    let app = TestApp::sqlite_with(|c| c.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()]).await;
    failures_until_throttled(&app, "203.0.113.1", "b").await;
    assert_eq!(login_status(&app, "203.0.113.2").await, StatusCode::TOO_MANY_REQUESTS);
}
