//! `evolve serve` security: every API call needs the token, the page carries the strict CSP, and
//! the listener is reachable on loopback only.

mod support;

use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;
use support::{Server, http};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

#[test]
fn the_api_needs_the_token_and_the_page_has_the_csp() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    assert_eq!(server.token.len(), 64, "32 random bytes in hex");
    let port = server.port;
    let json = [("Content-Type", "application/json")];

    let none = http(port, "POST", "/api/status", &json, "{}");
    assert_eq!(none.status, 401, "{}", none.body);
    let wrong_token = "0".repeat(64);
    let wrong = format!("Bearer {wrong_token}");
    let r = http(
        port,
        "POST",
        "/api/status",
        &[json[0], ("Authorization", &wrong)],
        "{}",
    );
    assert_eq!(r.status, 401);
    let short = format!("Bearer {}", &server.token[..63]);
    assert_eq!(
        http(
            port,
            "POST",
            "/api/status",
            &[("Authorization", &short)],
            ""
        )
        .status,
        401
    );

    let bearer = format!("Bearer {}", server.token);
    let auth = [json[0], ("Authorization", bearer.as_str())];
    let ok = http(port, "POST", "/api/status", &auth, "{}");
    assert_eq!(ok.status, 200, "{}", ok.body);
    // Only localhost names: a rebinding site's own name is refused, even with the token.
    let localhost = format!("localhost:{port}");
    for (host, status) in [
        ("evil.example:80", 421),
        ("127.0.0.1.nip.io", 421),
        (localhost.as_str(), 200),
    ] {
        let r = http(
            port,
            "POST",
            "/api/status",
            &[json[0], ("Authorization", bearer.as_str()), ("Host", host)],
            "{}",
        );
        assert_eq!(r.status, status, "Host {host}: {}", r.body);
    }
    let page = http(port, "GET", "/", &[("Host", "evil.example")], "");
    assert_eq!(page.status, 421);
    let status: serde_json::Value = serde_json::from_str(&ok.body).unwrap();
    assert_eq!(status["models"], serde_json::json!([]));
    // An empty body counts as no arguments.
    assert_eq!(
        http(port, "POST", "/api/models_list", &auth, "").status,
        200
    );
    let unknown = http(port, "POST", "/api/nope", &auth, "{}");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body, r#"{"error":"unknown command nope"}"#);
    let bad = http(
        port,
        "POST",
        "/api/models_add",
        &auth,
        r#"{"path": "/no/such.gguf"}"#,
    );
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("\"error\""), "{}", bad.body);
    assert_eq!(http(port, "GET", "/api/status", &auth, "").status, 405);

    // The event stream takes a single-use ticket from an authenticated POST, never the token
    // in its URL.
    assert_eq!(http(port, "GET", "/api/events", &[], "").status, 401);
    let token_in_url = format!("/api/events?token={}", server.token);
    assert_eq!(http(port, "GET", &token_in_url, &[], "").status, 401);
    assert_eq!(
        http(port, "POST", "/api/events/ticket", &[], "").status,
        401
    );
    let issued = http(port, "POST", "/api/events/ticket", &auth, "");
    assert_eq!(issued.status, 200, "{}", issued.body);
    let ticket: serde_json::Value = serde_json::from_str(&issued.body).unwrap();
    let ticket = ticket["ticket"].as_str().unwrap().to_string();
    assert_ne!(ticket, server.token);
    let wrong_events = format!("/api/events?ticket={wrong_token}");
    assert_eq!(http(port, "GET", &wrong_events, &[], "").status, 401);
    let with_ticket = format!("/api/events?ticket={ticket}");
    let events = http(port, "GET", &with_ticket, &[], "");
    assert_eq!(events.status, 200);
    assert!(
        events
            .header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let again = http(port, "GET", &with_ticket, &[], "");
    assert_eq!(again.status, 401, "a ticket works once");

    let page = http(port, "GET", "/", &[], "");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-security-policy"), Some(CSP));
    assert!(
        page.body.contains("<script type=\"module\""),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains(&server.token),
        "the page must not carry the token"
    );
    assert_eq!(http(port, "GET", "/nope.js", &[], "").status, 404);
}

#[test]
fn a_non_loopback_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for host in ["0.0.0.0", "::"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_evolve"))
            .args(["serve", "--port", "0", "--host", host])
            .env("EVOLVE_DATA_DIR", dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "--host {host} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("loopback") && err.contains("ssh -L"), "{err}");
    }
}

/// The machine's address on its default route, found without sending a packet.
fn outward_address() -> Option<IpAddr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("10.255.255.255:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn the_listener_is_not_reachable_from_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    assert!(TcpStream::connect(("127.0.0.1", server.port)).is_ok());
    match outward_address() {
        Some(ip) => {
            let addr = SocketAddr::new(ip, server.port);
            let r = TcpStream::connect_timeout(&addr, Duration::from_secs(2));
            assert!(r.is_err(), "evolve serve answered on {addr}");
        }
        None => eprintln!("no non-loopback address on this machine: only loopback checked"),
    }
}

#[test]
fn the_token_is_checked_before_any_body_is_read_and_bodies_are_capped() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let port = server.port;
    // A wrong token announcing a 100 MB body it never sends: refused at once, not waited for.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /api/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {}\r\n\
         Content-Length: 100000000\r\n\r\n",
        "0".repeat(64)
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    assert!(line.contains(" 401 "), "{line:?}");

    // With the token, a body announced over 1 MiB is refused before it is read.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /api/models_add HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {}\r\n\r\n",
        server.token,
        2 << 20
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    assert!(line.contains(" 413 "), "{line:?}");
}

/// Another local user holding 1,000 idle connections and a slowloris client (a header line every
/// 300 ms, never finished) cannot lock the page out; once the header deadline passes, all of
/// their sockets are closed and the server's descriptors are back where they started.
#[test]
fn idle_and_slow_clients_cannot_lock_the_page_out() {
    use std::io::{ErrorKind, Read, Write};
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let port = server.port;
    let baseline = server.open_fds();
    assert!(baseline > 0, "cannot read the server's /proc/<pid>/fd");

    let slowloris = {
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .unwrap();
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(300));
                if s.write_all(b"X-Slow: 1\r\n").is_err() {
                    return Some(t.elapsed());
                }
            }
            None
        })
    };
    let idle: Vec<TcpStream> = (0..1000)
        .map(|i| {
            TcpStream::connect(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"))
        })
        .collect();
    let connected = Instant::now();
    std::thread::sleep(Duration::from_millis(200));

    let bearer = format!("Bearer {}", server.token);
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        let t = Instant::now();
        let page = http(port, "GET", "/", &[], "");
        let status = http(
            port,
            "POST",
            "/api/status",
            &[("Authorization", &bearer)],
            "",
        );
        let took = t.elapsed();
        assert_eq!((page.status, status.status), (200, 200), "{}", status.body);
        assert!(
            took < Duration::from_secs(1),
            "the page took {took:?} under load"
        );
        slowest = slowest.max(took);
    }
    eprintln!("under load: page + status in at most {slowest:?}");

    // Within the header deadline (10 s, plus slack for this busy 2-core machine) of the last
    // connect, every idle socket has been closed by the server.
    let mut open: Vec<TcpStream> = idle;
    for s in &open {
        s.set_nonblocking(true).unwrap();
    }
    while !open.is_empty() && connected.elapsed() < Duration::from_secs(13) {
        std::thread::sleep(Duration::from_millis(250));
        open.retain_mut(|s| match s.read(&mut [0u8; 16]) {
            Ok(0) => false,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => false,
            _ => true,
        });
    }
    assert_eq!(
        open.len(),
        0,
        "idle connections still open 13 s after connecting"
    );
    let cut = slowloris.join().unwrap();
    let cut = cut.expect("the slowloris connection was never closed");
    assert!(
        cut < Duration::from_secs(12),
        "slowloris held on for {cut:?}"
    );
    let fds = server.open_fds();
    assert!(
        fds <= baseline + 4,
        "{fds} descriptors open, {baseline} before"
    );
    assert_eq!(
        http(
            port,
            "POST",
            "/api/status",
            &[("Authorization", &bearer)],
            ""
        )
        .status,
        200
    );
}
