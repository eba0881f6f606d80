//! `evolve serve`: the web UI and its API over HTTP + Server-Sent Events (docs/api.md), for a
//! browser on this machine or, through `ssh -L`, on another one. Every command goes to
//! [`evolve::api::Api`]; this module only moves bytes and checks the access token.

mod listener;
mod ticket;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use clap::Args;
use evolve::api::{Api, EventSink};
use evolve::core::DataDir;
use include_dir::{Dir, include_dir};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use ticket::{Tickets, new_token, same_token};
use tokio::sync::broadcast;

/// The built web UI (`scripts/build-ui.sh` writes it), embedded so the binary serves it anywhere.
static UI: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/ui/dist");

/// The page's policy: the desktop app's, with `connect-src 'self'` for the API (docs/api.md).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

#[derive(Args)]
pub struct ServeArgs {
    /// Port to listen on; 0 picks a free one (the URL printed says which)
    #[arg(long, default_value_t = 8765)]
    port: u16,
    /// Address to listen on: loopback only (127.0.0.1, ::1 or localhost); from another machine
    /// use `ssh -L 8765:127.0.0.1:8765 this-host`
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
}

#[derive(Clone)]
struct AppState {
    api: Api,
    token: Arc<str>,
    tickets: Arc<Tickets>,
    events: broadcast::Sender<(String, String)>,
}

/// The listening address, refusing anything but loopback: the token is the only protection, so
/// the port must never be reachable from the network.
fn loopback(host: &str) -> Result<IpAddr> {
    let ip = match host {
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        other => other
            .parse::<IpAddr>()
            .with_context(|| format!("--host {other} is not an IP address"))?,
    };
    if !ip.is_loopback() {
        bail!(
            "refusing to listen on {ip}: `evolve serve` binds to loopback only (127.0.0.1 or ::1), \
             since its access token is the only protection; from another machine use \
             `ssh -L 8765:127.0.0.1:8765 <this host>` and open the printed URL there"
        );
    }
    Ok(ip)
}

pub fn serve(args: ServeArgs, data_dir: DataDir) -> Result<()> {
    let ip = loopback(&args.host)?;
    if UI.get_file("index.html").is_none() {
        bail!(
            "this binary was built without the web UI: run scripts/build-ui.sh, then cargo build"
        );
    }
    let token = new_token()?;
    let (events, _) = broadcast::channel::<(String, String)>(4096);
    let sender = events.clone();
    let sink: EventSink = Arc::new(move |name: &str, payload: Value| {
        // No subscriber (no browser open) is fine: the event is simply not delivered.
        let _ = sender.send((name.to_string(), payload.to_string()));
    });
    let api = Api::open(data_dir, sink)?;
    let state = AppState {
        api: api.clone(),
        token: token.into(),
        tickets: Arc::default(),
        events,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, args.port))
            .await
            .with_context(|| format!("cannot listen on {ip}:{}", args.port))?;
        let addr = listener.local_addr()?;
        println!(
            "EVOLVE Studio (data: {}) — open this URL in a browser on this machine:",
            api.data_dir().root().display()
        );
        println!("http://{addr}/#token={}", state.token);
        let hosts: Arc<[String]> = allowed_hosts(addr).into();
        let app = Router::new()
            .route("/api/events", get(events_stream))
            .route("/api/events/ticket", axum::routing::post(events_ticket))
            .route("/api/{cmd}", any(command))
            .fallback(get(static_file))
            .with_state(state)
            .layer(axum::middleware::from_fn(move |req, next| {
                check_host(hosts.clone(), req, next)
            }));
        tokio::select! {
            served = listener::serve(listener, app) => served.context("the HTTP server stopped")?,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("stopping: pausing active runs (resume them later)");
                let api = api.clone();
                tokio::task::spawn_blocking(move || api.shutdown(Duration::from_secs(30))).await?;
            }
        }
        Ok(())
    })
}

/// The `Host` values a browser on this machine sends for `addr`. Anything else is refused: a
/// page on another site whose name a DNS trick points at 127.0.0.1 (DNS rebinding) would send
/// its own name.
fn allowed_hosts(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ];
    hosts.push(addr.to_string());
    hosts
}

async fn check_host(
    hosts: Arc<[String]>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        next.run(req).await
    } else {
        error(
            StatusCode::MISDIRECTED_REQUEST,
            "evolve serve answers to localhost only: open the URL it printed",
        )
    }
}

/// The largest command body: arguments are small JSON (paths, names, settings, an edited answer).
const MAX_BODY_BYTES: usize = 1 << 20;

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "access token missing or wrong")
}

/// A body must arrive within this once its headers have (a slow sender holds no worker longer).
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

fn has_token(headers: &HeaderMap, token: &str) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    same_token(bearer, token)
}

async fn command(
    State(state): State<AppState>,
    Path(cmd): Path<String>,
    method: axum::http::Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !has_token(&headers, &state.token) {
        return unauthorized();
    }
    if method != axum::http::Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    }
    // Read only now: a caller without the token never gets to send (or announce) a body; one
    // announced over the limit is refused before a byte of it is read.
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("{cmd}: the request body is over {MAX_BODY_BYTES} bytes"),
        )
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let body: Bytes = match tokio::time::timeout(
        BODY_TIMEOUT,
        axum::body::to_bytes(body, MAX_BODY_BYTES),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return too_large(),
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                &format!("{cmd}: the request body did not arrive within {BODY_TIMEOUT:?}"),
            );
        }
    };
    let args = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => v,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("{cmd}: body is not JSON: {e}"),
                );
            }
        }
    };
    // Commands block (SQLite, model loading, exports): off the async workers.
    let api = state.api.clone();
    match tokio::task::spawn_blocking(move || api.call(&cmd, args)).await {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(e)) => error(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            &e.message,
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the command crashed: {e}"),
        ),
    }
}

/// `POST /api/events/ticket` (with the token) → `{"ticket": …}` for one `GET /api/events?ticket=…`.
async fn events_ticket(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !has_token(&headers, &state.token) {
        return unauthorized();
    }
    match state.tickets.issue() {
        Ok(ticket) => axum::Json(json!({ "ticket": ticket })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn events_stream(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let given = query.get("ticket").map_or("", String::as_str);
    if !state.tickets.redeem(given) {
        return error(
            StatusCode::UNAUTHORIZED,
            "event stream ticket missing, used or expired: get one from POST /api/events/ticket",
        );
    }
    let rx = state.events.subscribe();
    let stream = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        if first {
            // An immediate comment, so the browser sees the stream open at once.
            return Some((
                Ok::<_, Infallible>(Event::default().comment("connected")),
                (rx, false),
            ));
        }
        loop {
            match rx.recv().await {
                Ok((name, data)) => {
                    return Some((Ok(Event::default().event(name).data(data)), (rx, false)));
                }
                // A slow reader misses events rather than stalling the workers; the UI reloads
                // state (run_status, run_metrics) when a page opens.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let mut response = Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .text("ping"),
        )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

async fn static_file(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let Some(file) = UI.get_file(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let mut response = Response::new(Body::from(file.contents()));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Hashed asset names never change content; the page itself must always be fresh.
    let cache = if path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_accepted() {
        assert!(loopback("127.0.0.1").is_ok());
        assert!(loopback("::1").is_ok());
        assert!(loopback("localhost").is_ok());
        for bad in ["0.0.0.0", "::", "192.168.1.10", "example.com"] {
            assert!(loopback(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn tokens_are_random_hex_and_compared_exactly() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(same_token(&a, &a));
        assert!(!same_token(&a[..63], &a));
        assert!(!same_token(&b, &a));
        assert!(!same_token("", &a));
    }
}
