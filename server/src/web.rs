//! The HTTP application: Leptos pages and server functions, the REST API, static files, and the layers every
//! request passes (sessions, CSRF check, body limit, security headers, tracing).

use crate::{
    api,
    config::{Config, IpNet},
    csrf,
};
use app::{App, accounts::ClientAddr, shell};
use axum::{
    Router,
    body::Body,
    error_handling::HandleErrorLayer,
    extract::{ConnectInfo, DefaultBodyLimit, Request},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::post,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use leptos::{
    nonce::use_nonce,
    prelude::*,
    server_fn::{self, error::ServerFnUrlError},
};
use leptos_axum::{
    AxumRouteListing, LeptosRoutes, ResponseOptions, generate_route_list_with_exclusions,
    handle_server_fns_with_context,
};
use model::error::{AppError, ErrorCode};
use portolan_core::{db::session_store::DbSessionStore, state::AppState};
use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::OnceLock,
    task::{Context, Poll},
    time::Duration,
};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt, limit::GlobalConcurrencyLimitLayer, load_shed::error::Overloaded};
use tower_http::{set_header::SetResponseHeaderLayer, trace::TraceLayer};
use tower_sessions::{Expiry, SessionManagerLayer, cookie::SameSite};

/// The largest request body accepted anywhere (keys and topologies are far smaller).
pub const MAX_BODY: usize = 256 * 1024;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "portolan_session";

pub fn leptos_options(config: &Config) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("portolan")
        .site_root(config.site_root.to_string_lossy().into_owned())
        .site_pkg_dir("pkg")
        .site_addr(config.listen)
        .build()
}

/// Builds the whole application around `state`.
pub fn router(state: AppState, config: &Config) -> Router {
    let options = leptos_options(config);
    let routes = route_list();
    let context = {
        let state = state.clone();
        move || {
            provide_context(state.clone());
            // A page render: leptos_axum has provided this request's nonce, which the hydration script
            // and streamed chunks carry; the policy names it.
            if let (Some(nonce), Some(response)) = (use_nonce(), use_context::<ResponseOptions>()) {
                response.insert_header(header::CONTENT_SECURITY_POLICY, page_csp(&nonce));
            }
        }
    };
    let server_fns = {
        let context = context.clone();
        move |request: Request<Body>| server_fn_call(context.clone(), request)
    };
    let site = Router::new()
        .route("/sf/{*fn_name}", post(server_fns.clone()).fallback(sf_method_not_allowed))
        // `{*fn_name}` matches no empty name: these are unknown names too (404 JSON), not pages.
        .route("/sf", post(server_fns.clone()).fallback(sf_method_not_allowed))
        .route("/sf/", post(server_fns).fallback(sf_method_not_allowed))
        .leptos_routes_with_context(&options, routes, context.clone(), {
            let options = options.clone();
            move || shell(options.clone())
        })
        // Unknown paths render the app's "not found" page, which needs the same context as every page.
        .fallback(leptos_axum::file_and_error_handler_with_context(context, shell))
        .with_state(options);

    let sessions = SessionManagerLayer::new(DbSessionStore::new(state.db.clone()))
        .with_name(SESSION_COOKIE)
        .with_secure(config.secure_cookies())
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_expiry(Expiry::OnInactivity(time::Duration::days(i64::from(config.session_days))))
        // Without it an unchanged session is never saved, so its idle expiry never moves; the store writes
        // an unchanged session's expiry at most every few minutes (core/src/db/session_store.rs).
        .with_always_save(true);

    let hsts = config.secure_cookies().then(|| {
        SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        )
    });

    // The agents' endpoints take none of the portal's session, CSRF or body layers (see crate::agent).
    // They have a concurrency limit of their own (a flood of heartbeats never starves the pages, nor the
    // pages the agents).
    let agents = crate::agent::router(&state)
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(config.max_in_flight)),
        )
        .layer(TraceLayer::new_for_http());
    let portal = Router::new()
        .merge(api::router(state))
        .merge(site)
        .layer(axum::middleware::from_fn(csrf::check))
        .layer(axum::middleware::map_request(resolve_client(config.trusted_proxies.clone())))
        .layer(sessions)
        .layer(axum::middleware::map_request(assets_without_cookies))
        .layer(axum::middleware::from_fn(no_store_when_authenticated))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_request(body_deadline(config.body_timeout())))
        // One semaphore for all routes (`Router::layer` wraps each route on its own, so the plain
        // `ConcurrencyLimitLayer` would give each route its own limit). Inside the header layers, so
        // that a 503 carries them too.
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(config.max_in_flight)),
        )
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DEFAULT_CSP),
        ))
        .layer(header("x-content-type-options", "nosniff"))
        .layer(header("x-frame-options", "DENY"))
        .layer(header("referrer-policy", "same-origin"))
        .layer(tower::util::option_layer(hsts))
        .layer(TraceLayer::new_for_http());
    Router::new().merge(agents).merge(portal)
}

/// The policy of every answer that is not a rendered page (JSON, files, errors): nothing inline runs.
const DEFAULT_CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; \
    frame-ancestors 'none'";

/// The Content-Security-Policy of a page: [`DEFAULT_CSP`] with the page's nonce among the script sources.
/// Scripts: the bundle from this origin, WebAssembly compilation (`'wasm-unsafe-eval'`, which allows no
/// JavaScript eval), and the inline hydration script and streamed resource chunks, which carry this
/// response's nonce. Styles: the stylesheet only.
fn page_csp(nonce: &str) -> HeaderValue {
    let policy = DEFAULT_CSP.replacen("script-src 'self'", &format!("script-src 'self' 'nonce-{nonce}'"), 1);
    HeaderValue::try_from(policy).unwrap_or_else(|_| HeaderValue::from_static(DEFAULT_CSP))
}

/// The bundle's files (`/pkg/…`): the same for everyone, so caches may keep them.
fn is_asset(request: &Request) -> bool {
    request.uri().path().starts_with("/pkg/")
}

/// The bundle's files are served without the request's cookies, so that the session layer neither loads
/// nor refreshes a session for them: otherwise their cacheable answers carried the session cookie
/// (`Set-Cookie`), which a shared cache would hand to everyone.
async fn assets_without_cookies(mut request: Request) -> Request {
    if is_asset(&request) {
        request.headers_mut().remove(header::COOKIE);
    }
    request
}

/// An answer to a request that carries credentials (a session cookie or an `Authorization` header), or
/// that sets a cookie (a log-in), may hold one person's data, or a new token's secret: no cache keeps
/// it. The bundle's files are the same for everyone and stay cacheable.
async fn no_store_when_authenticated(request: Request, next: Next) -> Response {
    let credentials = request.headers().contains_key(header::AUTHORIZATION)
        || request
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|c| c.to_str().ok())
            .flat_map(|c| c.split(';'))
            .any(|c| {
                c.trim_start().starts_with(SESSION_COOKIE)
                    && c.trim_start()[SESSION_COOKIE.len()..].starts_with('=')
            });
    let asset = is_asset(&request);
    let mut response = next.run(request).await;
    if !asset && (credentials || response.headers().contains_key(header::SET_COOKIE)) {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Sets each request's [`ClientAddr`], the address its per-client limits (log-in and registration
/// throttling) count against: see [`client_address`].
fn resolve_client(
    trusted: Vec<IpNet>,
) -> impl Fn(Request) -> std::future::Ready<Request> + Clone + Send + Sync + 'static {
    let trusted: std::sync::Arc<[IpNet]> = trusted.into();
    move |mut request: Request| {
        if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
            let client = client_address(peer.ip(), request.headers(), &trusted);
            request.extensions_mut().insert(ClientAddr(client));
        }
        std::future::ready(request)
    }
}

/// The client a request comes from. The peer, unless the peer is a trusted proxy (`trusted_proxies`):
/// then the right-most address in `X-Forwarded-For` (all its lines, in order) that is not a trusted
/// proxy, since every proxy appends the address it was reached from and everything left of the first
/// untrusted hop may be made up by the client. When every listed hop is trusted, the left-most; when the
/// header is missing or the address found is not one, the peer. IPv4-mapped IPv6 addresses are taken
/// as IPv4.
pub fn client_address(peer: IpAddr, headers: &axum::http::HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("").split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // Some proxies write `ip:port` or `[v6]:port`.
        let Some(ip) = hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
        else {
            return peer;
        };
        client = ip.to_canonical();
        if !is_trusted(client) {
            break;
        }
    }
    client
}

/// Gives every request body a deadline: it must have been read whole `limit` after its request's head
/// arrived (`body_timeout_s`), however steadily it trickles in. A reader past the deadline gets an error,
/// which the API's extractors and the server-function handler answer 400; hyper then closes the
/// connection, since the body was not read to its end.
fn body_deadline(
    limit: Duration,
) -> impl Fn(Request) -> std::future::Ready<Request> + Clone + Send + Sync + 'static {
    move |request: Request| {
        std::future::ready(if hyper::body::Body::is_end_stream(request.body()) {
            request
        } else {
            request.map(|body| Body::new(DeadlineBody::new(body, limit)))
        })
    }
}

/// A body that fails once its deadline has passed.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl DeadlineBody {
    fn new(inner: Body, limit: Duration) -> Self {
        Self { inner, deadline: Box::pin(tokio::time::sleep(limit)), limit }
    }
}

/// The error of a body read past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not sent within {0:?}")]
struct BodyDeadlineError(Duration);

impl hyper::body::Body for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        // The deadline first: a body whose bytes are always ready is not late, and one that is late is
        // refused even when its next bytes are there.
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(BodyDeadlineError(self.limit)))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

async fn overloaded(error: tower::BoxError) -> Response {
    if error.is::<Overloaded>() {
        AppError::new(ErrorCode::Unavailable, "the portal is busy; try again shortly").into_response()
    } else {
        AppError::internal(error).into_response()
    }
}

/// A server function called with another method than POST (they never change state on GET).
async fn sf_method_not_allowed(request: Request) -> Response {
    let error = api::method_not_allowed().await;
    let path = request.uri().path().to_owned();
    let mut response = sf_error(&request, &path, error);
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// A server-function call. Before dispatch: an unknown name is 404, a body that is not a form (every
/// server function here takes `application/x-www-form-urlencoded`) 415, one over [`MAX_BODY`] 413, one
/// that cannot be read (not sent by its deadline) 400. After: server_fn answers every error it finds (bad, missing or
/// duplicate arguments) with 500 and the error as the body; the status is set from the error's code.
/// Errors are the `AppError` object server_fn's client decodes (`{"code","message","field"?}`); a plain
/// form post (no JavaScript) is instead sent back to its page with the error in the URL, as leptos does.
async fn server_fn_call(context: impl Fn() + Clone + Send + 'static, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    if server_fn::axum::get_server_fn_service(&path, Method::POST).is_none() {
        return sf_error(&request, &path, AppError::not_found("server function"));
    }
    let form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !form {
        let error = AppError::new(
            ErrorCode::UnsupportedMediaType,
            "send the arguments as a form (Content-Type: application/x-www-form-urlencoded)",
        );
        return sf_error(&request, &path, error);
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let request = Request::from_parts(parts, Body::empty());
            let too_large =
                std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            let error = if too_large {
                AppError::new(ErrorCode::TooLarge, "the request body is too large")
            } else {
                AppError::bad_request(format!("could not read the request body: {e}"))
            };
            return sf_error(&request, &path, error);
        }
    };
    let response = handle_server_fns_with_context(context, Request::from_parts(parts, Body::from(bytes)))
        .await
        .into_response();
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !response.headers().contains_key(server_fn::error::SERVER_FN_ERROR_HEADER)
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.unwrap_or_default();
    if let Ok(error) = serde_json::from_slice::<AppError>(&bytes) {
        parts.status = error.code.status();
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// A server-function error found before dispatch, answered as server_fn answers its own errors.
fn sf_error(request: &Request, path: &str, error: AppError) -> Response {
    let plain_form = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let referer = request.headers().get(header::REFERER).and_then(|r| r.to_str().ok());
    if plain_form
        && let Some(referer) = referer
        && let Ok(url) = ServerFnUrlError::new(path, error.clone()).to_url(referer)
        && let Ok(location) = HeaderValue::try_from(url.as_str())
    {
        return (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
    }
    let status = error.code.status();
    (
        status,
        [(
            HeaderName::from_static(server_fn::error::SERVER_FN_ERROR_HEADER),
            HeaderValue::from_str(path).unwrap_or(HeaderValue::from_static("/sf")),
        )],
        axum::Json(error),
    )
        .into_response()
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish (idle
/// connections are closed at once). HTTP/1.1 only (TLS and HTTP/2 belong to the proxy in front).
///
/// Each connection must send a request's whole head within `header_timeout` of being ready for one, else
/// it is closed: hyper's HTTP/1 header read timeout, which `axum::serve` does not set. hyper starts that
/// timer when the connection opens and again when an answer is done, so it bounds a connection that
/// sends nothing, half a head, or nothing after its last answer (an idle keep-alive connection) alike.
/// hyper's own HTTP/1 connection is served, not hyper-util's `auto` one: that one first reads enough
/// bytes to tell HTTP/1 from HTTP/2 with no timer running, so a client that sent `P` and stalled was
/// never closed.
///
/// Requests carry `ConnectInfo<SocketAddr>` as with `axum::serve(…into_make_service_with_connect_info)`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(remote));
            app.clone().oneshot(request.map(Body::new))
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %remote, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The app's routes, generated once per process. Generating them runs the app with resource loading
/// suppressed process-wide, so a page rendered meanwhile by another router in the same process (tests
/// build one per test, in parallel) would wait forever on its first resource (leptos-rs/leptos#4773;
/// seen here as a hung integration test).
fn route_list() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES
        .get_or_init(|| {
            // leptos_axum would route each server function to its own handler, ahead of `/sf/{*fn_name}`
            // and its checks; excluded here, they all go through `server_fn_call`.
            let server_fns = server_fn::axum::server_fn_paths().map(|(path, _)| path.to_owned()).collect();
            generate_route_list_with_exclusions(App, Some(server_fns))
        })
        .clone()
}

fn header(name: &'static str, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(HeaderName::from_static(name), HeaderValue::from_static(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(values: &[&str]) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_hop_behind_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        let proxy = ip("10.0.0.2");
        let resolve = |peer, values: &[&str]| client_address(peer, &xff(values), &trusted);
        // An untrusted peer: the header is ignored, whatever it says.
        assert_eq!(resolve(ip("203.0.113.5"), &["198.51.100.1"]), ip("203.0.113.5"));
        // Through the proxy: the address it appended; what the client wrote left of it does not count.
        assert_eq!(resolve(proxy, &["203.0.113.5"]), ip("203.0.113.5"));
        assert_eq!(resolve(proxy, &["1.2.3.4, 203.0.113.5"]), ip("203.0.113.5"));
        assert_eq!(resolve(proxy, &["1.2.3.4", "203.0.113.5"]), ip("203.0.113.5"), "several lines");
        // Through two proxies.
        assert_eq!(resolve(proxy, &["1.2.3.4, 203.0.113.5, 10.9.9.9"]), ip("203.0.113.5"));
        assert_eq!(resolve(proxy, &["203.0.113.5:4711, [fd00::1]:443"]), ip("203.0.113.5"), "with ports");
        // Every hop trusted: the farthest; no header, or garbage where the client should be: the peer.
        assert_eq!(resolve(proxy, &["10.1.1.1, 10.2.2.2"]), ip("10.1.1.1"));
        assert_eq!(resolve(proxy, &[]), proxy);
        assert_eq!(resolve(proxy, &[""]), proxy);
        assert_eq!(resolve(proxy, &["1.2.3.4, not-an-address"]), proxy);
        // A dual-stack listener's IPv4-mapped peer is the IPv4 proxy; mapped clients are IPv4.
        assert_eq!(resolve(ip("::ffff:10.0.0.2"), &["::ffff:203.0.113.5"]), ip("203.0.113.5"));
        assert_eq!(resolve(ip("::ffff:203.0.113.5"), &["1.2.3.4"]), ip("203.0.113.5"));
        // No trusted proxies (the default): always the peer.
        assert_eq!(client_address(proxy, &xff(&["203.0.113.5"]), &[]), proxy);
    }
}
