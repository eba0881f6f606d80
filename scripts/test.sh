#!/usr/bin/env bash
# Installs what is missing and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
evolve_setup
# Always the same package/target selection: another one re-unifies features and rebuilds llama.cpp.
cargo test --workspace --all-targets "$@"
