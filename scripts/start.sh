#!/usr/bin/env bash
# Installs what is missing, builds EVOLVE Studio and opens the desktop app.
#
#   scripts/start.sh            the desktop app (Tauri window)
#   scripts/start.sh --cli ...  `evolve start ...` in this terminal instead (e.g. --model m.gguf)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
evolve_setup
# cargo embeds the built web UI (ui/dist) in both binaries.
bash scripts/build-ui.sh
# Every binary in one selection: `-p evolve-studio` alone would unify features differently and
# rebuild llama.cpp's C++.
cargo build --release --workspace --bins
target="${CARGO_TARGET_DIR:-target}/release"
if [[ "${1:-}" == "--cli" ]]; then
  shift
  exec "$target/evolve" start "$@"
fi
if [[ -z "${DISPLAY:-}" && -z "${WAYLAND_DISPLAY:-}" ]]; then
  echo "error: no display for the desktop app; use scripts/start.sh --cli, or" >&2
  echo "       $target/evolve serve (then open the printed URL, e.g. through ssh -L)" >&2
  exit 1
fi
exec "$target/evolve-studio" "$@"
