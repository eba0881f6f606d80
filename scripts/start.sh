#!/usr/bin/env bash
# Installs what is missing, builds EVOLVE Studio and starts it on the built-in model.
# Extra arguments go to `evolve start` (e.g. --model path/to/model.gguf).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
evolve_setup
# `cargo run` finds the binary wherever CARGO_TARGET_DIR puts it.
exec cargo run --quiet --release --bin evolve -- start "$@"
