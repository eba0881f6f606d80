//! Renders the monitor on a recorded run under Xvfb and checks that the screenshot shows data.
//! The PNG is kept at `<target>/monitor-screenshots/monitor.png` for a human to look at.

use evolve_monitor::plots;
use evolve_store::Store;
use image::{Rgb, RgbImage};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The X server the test started; killed however the test ends.
struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start() -> Xvfb {
        let missing = Command::new("Xvfb")
            .arg("-help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err();
        assert!(
            !missing,
            "Xvfb is not installed: install the apt package `xvfb` (scripts/setup.sh lists it)"
        );
        for n in 90..200 {
            if !evolve_testkit::x_display_is_free(n) {
                continue;
            }
            let display = format!(":{n}");
            let mut child = Command::new("Xvfb")
                .args([&display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting Xvfb");
            let socket = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break; // lost a race for this display number; try the next
                }
                if socket.exists() {
                    return Xvfb { child, display };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start Xvfb on any display :90..:199");
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        // SIGTERM, so that Xvfb removes its lock file (a killed one leaves it behind).
        evolve_testkit::terminate(&mut self.child, false);
    }
}

fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from)
        && dir.is_absolute()
    {
        return dir;
    }
    // The test runs as <target>/<profile>/deps/screenshot-<hash>.
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// Pixels within `tol` (per channel) of `color` inside `[x0, x1) × [y0, y1)`.
fn count_near(img: &RgbImage, area: [u32; 4], color: eframe::egui::Color32, tol: i32) -> usize {
    let [x0, y0, x1, y1] = area;
    let want = [color.r(), color.g(), color.b()];
    (y0..y1.min(img.height()))
        .flat_map(|y| (x0..x1.min(img.width())).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let Rgb(p) = img.get_pixel(x, y);
            p.iter()
                .zip(want)
                .all(|(&a, b)| (a as i32 - b as i32).abs() <= tol)
        })
        .count()
}

#[test]
fn monitor_window_renders_curves_and_bars_of_a_recorded_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("evolve.sqlite");
    let run = evolve_testkit::recorded_run::record_demo_run(&Store::open(&db).unwrap()).unwrap();
    let shot = target_dir().join("monitor-screenshots").join("monitor.png");
    let _ = std::fs::remove_file(&shot);

    let xvfb = Xvfb::start();
    let log = dir.path().join("monitor.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_evolve-monitor"))
        .arg(&db)
        .arg(run.0.to_string())
        .arg("--screenshot")
        .arg(&shot)
        .env("DISPLAY", &xvfb.display)
        .env_remove("WAYLAND_DISPLAY")
        // Mesa's software rasteriser: there is no GPU behind Xvfb.
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(xvfb);
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("monitor did not exit within 120 s:\n{stderr}"));
    assert!(status.success(), "monitor failed ({status}):\n{stderr}");

    let img = image::open(&shot)
        .unwrap_or_else(|e| panic!("reading {}: {e}", shot.display()))
        .to_rgb8();
    println!("screenshot: {}", shot.display());
    let (w, h) = img.dimensions();
    assert!(w >= 1000 && h >= 600, "screenshot is {w}x{h}");

    // Left: the training grid; right: the round panel (430 px wide).
    let curves = [0, 40, w - 450, h];
    let rounds = [w - 430, 40, w, h];
    for (name, color) in [
        ("loss", plots::LOSS),
        ("rewards/margins", plots::MARGINS),
        ("rewards/accuracies", plots::ACCURACY),
        ("rewards/rejected", plots::REJECTED),
        ("grad_norm", plots::GRAD_NORM),
        ("learning_rate", plots::LEARNING_RATE),
        ("tokens_per_second", plots::TOKENS_PER_SECOND),
    ] {
        let n = count_near(&img, curves, color, 12);
        assert!(n >= 150, "{name} curve: only {n} pixels of its colour");
    }
    for (name, color) in [
        ("direct bars", plots::DIRECT),
        ("refined bars", plots::REFINED),
        ("sampled bars", plots::SAMPLED),
        ("vs-base bars", plots::GAIN),
        ("right-to-wrong bars", plots::LOSS_BAR),
        ("win-rate bars", plots::WIN_RATE),
        ("tokens/s bars", plots::TOKENS_PER_SECOND),
    ] {
        let n = count_near(&img, rounds, color, 4);
        assert!(n >= 800, "{name}: only {n} pixels of their colour");
    }
    // Text, grid and antialiased lines: a blank or single-colour window has a handful.
    let distinct: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(
        distinct.len() >= 300,
        "only {} distinct colours",
        distinct.len()
    );
}
