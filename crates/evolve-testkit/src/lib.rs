//! Test support shared by the crates that speak HTTP to an OpenAI-compatible server (the remote
//! generator, the remote judge): a scripted server on loopback, so their tests check the wire
//! traffic without llama-server; and a check for a free X display, for the tests that open a
//! window under Xvfb; a recorded run for the monitor (`recorded_run`); where the fetched
//! real-model fixtures are (`real_models`), and real vocabularies as GGUFs (`vocab_gguf`).
//! Dev-dependency only.

pub mod real_models;
pub mod recorded_run;
pub mod vocab_gguf;

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

/// Whether X display `:n` can be given to a new Xvfb. A lock file whose server is gone (a test
/// killed with its Xvfb) is removed with its socket, as Xvfb itself would: otherwise such
/// leftovers pile up until no display in a test's range looks free.
pub fn x_display_is_free(n: u32) -> bool {
    let lock = std::path::PathBuf::from(format!("/tmp/.X{n}-lock"));
    let socket = std::path::PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
    match std::fs::read_to_string(&lock) {
        Ok(text) => {
            let alive = text
                .trim()
                .parse::<u32>()
                .is_ok_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
            if alive {
                return false;
            }
            let _ = std::fs::remove_file(&lock);
            let _ = std::fs::remove_file(&socket);
            !lock.exists() && !socket.exists()
        }
        // No lock: free unless a server without one holds the socket.
        Err(_) => !socket.exists(),
    }
}

/// Stops a test's helper process (and its process group, when it leads one): SIGTERM first, so
/// that Xvfb removes its lock and socket, SIGKILL after 3 s if it is still there.
pub fn terminate(child: &mut std::process::Child, whole_group: bool) {
    let target = if whole_group {
        format!("-{}", child.id())
    } else {
        child.id().to_string()
    };
    let signal = |sig: &str| {
        let _ = std::process::Command::new("kill")
            .args([sig, "--", &target])
            .stderr(std::process::Stdio::null())
            .status();
    };
    signal("-TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The rest of the group (WebKitWebDriver under tauri-driver) may outlive its leader.
    signal("-KILL");
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminate_lets_a_process_end_on_sigterm_and_reaps_it() {
        // `trap` makes the shell write a file on SIGTERM: it got the polite signal first.
        let dir = std::env::temp_dir().join(format!("evolve-testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let flag = dir.join("term");
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "trap 'touch {}; exit 0' TERM; while :; do sleep 0.05; done",
                flag.display()
            ))
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        terminate(&mut child, false);
        assert!(flag.exists(), "SIGTERM came first");
        assert!(child.try_wait().unwrap().is_some(), "reaped");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_stale_x_lock_is_cleared_and_a_live_one_is_respected() {
        // Displays far above any a test uses, so a real server is never touched.
        let (live, stale) = (4711, 4712);
        let lock = |n: u32| format!("/tmp/.X{n}-lock");
        std::fs::write(lock(live), format!("{:>10}\n", std::process::id())).unwrap();
        std::fs::write(lock(stale), format!("{:>10}\n", u32::MAX - 1)).unwrap();
        assert!(!x_display_is_free(live), "this process holds it");
        assert!(x_display_is_free(stale), "its server is gone");
        assert!(!std::path::Path::new(&lock(stale)).exists());
        std::fs::remove_file(lock(live)).unwrap();
        assert!(x_display_is_free(live));
    }
}
