//! The real desktop window under Xvfb, driven over WebDriver (tauri-driver + WebKitWebDriver):
//! it opens on a data directory with the tiny model, a chat message gets an answer with its
//! refinement cards, and a screenshot goes to `<target>/desktop-screenshots/`.
//!
//! Needs `tauri-driver` (`cargo install --locked tauri-driver`) and Debian's `webkit2gtk-driver`
//! and `xvfb`; it fails, naming what is missing (scripts/test.sh installs them).

use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Kills the process (Xvfb, tauri-driver) when the test ends, however it ends — with its whole
/// process group, since tauri-driver's WebKitWebDriver child would otherwise outlive it.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        // SIGTERM first: a killed Xvfb leaves its lock behind.
        evolve_testkit::terminate(&mut self.0, true);
    }
}

/// Starts `cmd` as the leader of a new process group (see [`Guard`]).
fn spawn_group(cmd: &mut Command) -> Child {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0).spawn().expect("start process")
}

fn find_tool(name: &str, install: &str) -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let dirs = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    dirs.unwrap_or_default()
        .into_iter()
        .chain([home.join(".cargo/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is missing: {install} (scripts/test.sh does)"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Xvfb on the first free display from :95 up.
fn start_xvfb(xvfb: &Path) -> (Guard, String) {
    for n in 95..140 {
        if !evolve_testkit::x_display_is_free(n) {
            continue;
        }
        let child = spawn_group(
            Command::new(xvfb)
                .args([
                    &format!(":{n}"),
                    "-screen",
                    "0",
                    "1280x860x24",
                    "-nolisten",
                    "tcp",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let mut guard = Guard(child);
        let socket = format!("/tmp/.X11-unix/X{n}");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if Path::new(&socket).exists() {
                return (guard, format!(":{n}"));
            }
            if guard.0.try_wait().unwrap().is_some() {
                break; // lost a race for this display: try the next
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("no free X display between :95 and :139");
}

struct WebDriver {
    base: String,
    session: String,
}

impl WebDriver {
    fn send(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        eprintln!("[desktop] {method} {path}");
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .new_agent();
        let mut res = match (method, body) {
            ("GET", _) => agent.get(&url).call(),
            ("DELETE", _) => agent.delete(&url).call(),
            (_, b) => agent.post(&url).send_json(b.unwrap_or(json!({}))),
        }
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let v: Value = res.body_mut().read_json().unwrap_or(Value::Null);
        v["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Waits up to `secs` for an element matching `css`.
    fn wait_for(&self, css: &str, secs: u64) -> String {
        let started = Instant::now();
        loop {
            let v = self.send(
                "POST",
                &self.session_path("/element"),
                Some(json!({"using": "css selector", "value": css})),
            );
            if let Some(id) = v.get(ELEMENT).and_then(Value::as_str) {
                return id.to_string();
            }
            if started.elapsed() > Duration::from_secs(secs) {
                panic!("no element {css} after {secs} s: {v}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

#[test]
fn the_desktop_window_opens_and_answers_a_chat_message() {
    let xvfb = find_tool("Xvfb", "apt-get install -y xvfb");
    let driver = find_tool("tauri-driver", "cargo install --locked tauri-driver");
    let native = find_tool("WebKitWebDriver", "apt-get install -y webkit2gtk-driver");

    // A data directory with the tiny random model registered, so the chat screen opens at once.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let service = evolve::Service::open(evolve::core::DataDir::new(&data)).unwrap();
    service.default_model().unwrap();
    drop(service);
    // Short answers: the random-weight model never stops by itself, and WebKit renders every token.
    let api = evolve::api::Api::open(
        evolve::core::DataDir::new(&data),
        std::sync::Arc::new(|_: &str, _| {}),
    )
    .unwrap();
    let mut settings = api.call("settings_get", json!({})).unwrap();
    settings["sampler"]["max_tokens"] = json!(24);
    api.call("settings_set", json!({"settings": settings}))
        .unwrap();
    drop(api);

    let (_xvfb, display) = start_xvfb(&xvfb);
    let (port, native_port) = (free_port(), free_port());
    let _driver = Guard(spawn_group(
        Command::new(&driver)
            .args([
                "--port",
                &port.to_string(),
                "--native-port",
                &native_port.to_string(),
            ])
            .arg("--native-driver")
            .arg(&native)
            .env("DISPLAY", &display)
            .env("EVOLVE_DATA_DIR", &data)
            // WebKitGTK in a container: no GPU, and its bubblewrap sandbox needs user namespaces.
            .env("LIBGL_ALWAYS_SOFTWARE", "1")
            .env("WEBKIT_DISABLE_COMPOSITING_MODE", "1")
            .env("WEBKIT_DISABLE_SANDBOX_THIS_IS_DANGEROUS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    ));
    let mut wd = WebDriver {
        base: format!("http://127.0.0.1:{port}"),
        session: String::new(),
    };
    let started = Instant::now();
    while wd.send_status().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "tauri-driver did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let app = env!("CARGO_BIN_EXE_evolve-studio");
    let created = wd.send(
        "POST",
        "/session",
        Some(json!({"capabilities": {"alwaysMatch": {"tauri:options": {"application": app}}}})),
    );
    wd.session = created["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
        .to_string();

    let input = wd.wait_for("[data-testid=chat-input]", 60);
    wd.send(
        "POST",
        &wd.session_path(&format!("/element/{input}/value")),
        Some(json!({"text": "What is 2 + 3?"})),
    );
    let send = wd.wait_for("[data-testid=chat-send]", 10);
    wd.send(
        "POST",
        &wd.session_path(&format!("/element/{send}/click")),
        None,
    );
    wd.wait_for("[data-testid=answer][data-done=true]", 120);
    wd.wait_for("[data-testid=refine-step-2][data-done=true]", 120);
    let title = wd.send("GET", &wd.session_path("/title"), None);
    assert_eq!(title, "EVOLVE Studio");
    // Only the app's command and events are granted (capabilities/default.json): Tauri's own
    // APIs that `core:default` would allow are refused in the running window.
    let refused = wd.send(
        "POST",
        &wd.session_path("/execute/async"),
        Some(json!({"args": [], "script": r#"
            const done = arguments[arguments.length - 1];
            const t = window.__TAURI__;
            Promise.allSettled([
              t.core.invoke("plugin:app|version"),
              t.core.invoke("plugin:window|title", { label: "main" }),
              t.core.invoke("api", { cmd: "status", args: {} }),
            ]).then((r) => done(r.map((x) => x.status === "fulfilled" ? "ok" : String(x.reason))));
        "#})),
    );
    let verdicts = refused.as_array().unwrap_or_else(|| panic!("{refused}"));
    for v in &verdicts[..2] {
        assert!(v.as_str().unwrap().contains("not allowed"), "{refused}");
    }
    assert_eq!(verdicts[2], "ok", "{refused}");
    std::thread::sleep(Duration::from_millis(500));
    // WebKitWebDriver's own screenshot hangs under Xvfb without compositing, so the X server's
    // screen is captured instead (ImageMagick's `import`): the real window, as a user sees it.
    let import = find_tool("import", "apt-get install imagemagick");
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_evolve-studio"));
    let dir = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("desktop-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("chat.png");
    let status = Command::new(import)
        .args([
            "-display",
            &display,
            "-window",
            "root",
            png.to_str().unwrap(),
        ])
        .status()
        .expect("run import");
    assert!(status.success(), "import could not capture {display}");
    let size = std::fs::metadata(&png).unwrap().len();
    assert!(size > 20_000, "a {size}-byte screenshot is a blank screen");
    wd.send("DELETE", &wd.session_path(""), None);
}

impl WebDriver {
    fn send_status(&self) -> Option<Value> {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .new_agent();
        let mut res = agent.get(&format!("{}/status", self.base)).call().ok()?;
        res.body_mut().read_json().ok()
    }
}
