//! The accept loop of `evolve serve`: HTTP/1.1 connections with a header deadline and a cap on
//! how many are open, so idle or slow clients (another user on a shared machine, a slowloris
//! script) can neither exhaust file descriptors nor lock the browser out.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// A request's headers must arrive within this; it also closes a keep-alive connection that
/// stays idle this long between requests (hyper restarts the deadline while it waits).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections at most. A browser uses about six; the rest is headroom for several tabs.
pub const MAX_CONNECTIONS: usize = 256;

/// One open connection as the cap sees it.
struct Conn {
    /// Set once a complete request head arrived: such a client speaks HTTP. Connections that
    /// never sent one are the first to go when the cap is reached.
    spoke: Arc<AtomicBool>,
    close: Arc<Notify>,
}

#[derive(Default)]
struct Conns {
    next: u64,
    open: BTreeMap<u64, Conn>,
}

impl Conns {
    /// Makes room for a new connection: at the cap, the oldest one that never completed a
    /// request head is closed. `false` when every open connection is a real client (then the
    /// new one is turned away instead).
    fn make_room(&mut self) -> bool {
        if self.open.len() < MAX_CONNECTIONS {
            return true;
        }
        let silent = self
            .open
            .iter()
            .find(|(_, c)| !c.spoke.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        match silent.and_then(|id| self.open.remove(&id)) {
            Some(conn) => {
                conn.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Serves `app` on `listener` until the future is dropped.
pub async fn serve(listener: TcpListener, app: Router) -> std::io::Result<()> {
    let conns = Arc::new(Mutex::new(Conns::default()));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors or a connection reset before accept: wait a moment, go on.
            Err(e) if is_transient(&e) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let (id, spoke, close) = {
            let mut c = conns.lock().unwrap_or_else(|p| p.into_inner());
            if !c.make_room() {
                continue; // dropping the stream closes it
            }
            let (spoke, close) = (Arc::new(AtomicBool::new(false)), Arc::new(Notify::new()));
            let id = c.next;
            c.next += 1;
            c.open.insert(
                id,
                Conn {
                    spoke: spoke.clone(),
                    close: close.clone(),
                },
            );
            (id, spoke, close)
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let marked = hyper::service::service_fn(move |req| {
            spoke.store(true, Ordering::Relaxed);
            hyper::service::Service::call(&service, req)
        });
        let conns = conns.clone();
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), marked);
            tokio::select! {
                _ = connection => {}
                _ = close.notified() => {} // evicted: dropping the connection closes it
            }
            conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .open
                .remove(&id);
        });
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || matches!(e.raw_os_error(), Some(23 | 24)) // ENFILE, EMFILE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(spoke: bool) -> Conn {
        Conn {
            spoke: Arc::new(AtomicBool::new(spoke)),
            close: Arc::new(Notify::new()),
        }
    }

    #[test]
    fn at_the_cap_the_oldest_silent_connection_goes_and_real_clients_stay() {
        let mut c = Conns::default();
        for id in 0..MAX_CONNECTIONS as u64 {
            // Every third connection has sent a request.
            c.open.insert(id, conn(id % 3 == 0));
        }
        assert!(c.make_room());
        assert!(c.open.contains_key(&0), "a client that spoke is kept");
        assert!(!c.open.contains_key(&1), "the oldest silent one is closed");
        assert!(c.open.contains_key(&2));
        c.open.insert(1000, conn(true));
        assert!(c.make_room());
        assert!(!c.open.contains_key(&2));

        let mut full = Conns::default();
        for id in 0..MAX_CONNECTIONS as u64 {
            full.open.insert(id, conn(true));
        }
        assert!(!full.make_room(), "no silent one: the newcomer is refused");
        assert_eq!(full.open.len(), MAX_CONNECTIONS);
    }
}
