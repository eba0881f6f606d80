#!/usr/bin/env bash
# Retrains the built-in task model with `evolve fixture task` (the defaults) and checks that it
# is byte for byte the file checked in as models/tiny-task.gguf. The slow path of the fixture
# (about 20 min on 2 cores), so it is not part of every CI run; docs/demo.md records its runs.
#
#   scripts/check-fixture.sh            build (release), retrain, compare
#   scripts/check-fixture.sh --keep F   also keep the retrained file as F
set -euo pipefail
cd "$(dirname "$0")/.."
keep=""
if [[ "${1:-}" == "--keep" ]]; then
    keep="${2:?--keep needs a file name}"
fi
source scripts/setup.sh
evolve_setup
bash scripts/build-ui.sh
cargo build --release --workspace --bins
evolve="${CARGO_TARGET_DIR:-target}/release/evolve"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
start=$(date +%s)
# Training is deterministic for a given seed; the thread count is pinned anyway.
RAYON_NUM_THREADS=2 "$evolve" fixture task --out "$out/tiny-task.gguf" --eval none
echo "retrained in $(( $(date +%s) - start )) s"
want="$(sha256sum models/tiny-task.gguf | cut -d' ' -f1)"
got="$(sha256sum "$out/tiny-task.gguf" | cut -d' ' -f1)"
[[ -n "$keep" ]] && cp "$out/tiny-task.gguf" "$keep"
echo "checked in: $want"
echo "retrained:  $got"
if [[ "$want" != "$got" ]]; then
    echo "error: evolve fixture task no longer reproduces models/tiny-task.gguf" >&2
    exit 1
fi
echo "ok: models/tiny-task.gguf is reproduced byte for byte"
