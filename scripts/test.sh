#!/usr/bin/env bash
# Installs what is missing and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
evolve_setup
# The browser and desktop tests need Chromium, WebKitWebDriver, Xvfb and tauri-driver.
evolve_test_setup
# The UI first: cargo embeds ui/dist (the app and `evolve serve`), and its unit tests run here.
bash scripts/build-ui.sh --test
# Always the same package/target selection: another one re-unifies features and rebuilds llama.cpp.
cargo test --workspace --all-targets "$@"
