//! Test support shared by the crates that speak HTTP to an OpenAI-compatible server (the remote
//! generator, the remote judge): a scripted server on loopback, so their tests check the wire
//! traffic without llama-server. Dev-dependency only.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

/// (path, JSON body) → (status, content type, body chunks).
pub type Script = fn(path: &str, body: &Value) -> (u16, &'static str, Vec<String>);

/// One request as the server saw it: (path, JSON body, `Authorization` header).
pub type Seen = (String, Value, String);

/// Serves `max_conns` connections (all, when `None`) one at a time on 127.0.0.1, answering each
/// by `script`, and returns the base URL and the requests it saw. Chunks are flushed one by one,
/// 5 ms apart, so a client can cancel between them; a client that hangs up ends the answer.
pub fn serve(max_conns: Option<usize>, script: Script) -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max_conns.unwrap_or(usize::MAX)) {
            let Ok(mut stream) = stream else { break };
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let (path, auth, body) = read_request(&stream);
            let (status, ctype, chunks) = script(&path, &body);
            let _ = tx.send((path, body, auth));
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nConnection: close\r\n\r\n"
            );
            for c in chunks {
                if stream
                    .write_all(c.as_bytes())
                    .and_then(|_| stream.flush())
                    .is_err()
                {
                    break; // the client hung up (cancellation)
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    (base, rx)
}

/// Reads one HTTP/1.1 request: (path, `Authorization` header, JSON body or `Null`).
pub fn read_request(stream: &TcpStream) -> (String, String, Value) {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let (mut len, mut auth) = (0, String::new());
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap_or((l, ""));
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().unwrap(),
            "authorization" => auth = v.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    (
        path,
        auth,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// One server-sent event of an OpenAI completions stream.
pub fn completion_event(text: &str, finish: Option<&str>) -> String {
    format!(
        "data: {}\n\n",
        serde_json::json!({"choices":[{"text":text,"index":0,"finish_reason":finish}]})
    )
}
