#!/usr/bin/env bash
# Builds the web UI (ui/) into ui/dist/, which the Tauri build embeds at compile time
# (src-tauri/tauri.conf.json: frontendDist = ../ui/dist), so run it before `cargo build`.
#
#   scripts/build-ui.sh          npm ci when needed, then type-check and bundle
#   scripts/build-ui.sh --test   ... regenerate the protocol's TypeScript types from the Rust
#                                types (ts-rs, ui/src/bindings), type-check against them, fail
#                                when the checked-in ones are stale; run the UI's unit tests
#
# Or source it and call build_ui / build_ui_and_test. `npm ci` runs only when ui/node_modules is
# missing or ui/package-lock.json changed since the last install (stamp in node_modules/).
set -euo pipefail

_ui_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/ui"

_ui_need_node() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "error: building the UI needs Node.js 20+ and npm (Debian: apt-get install -y nodejs npm," >&2
        echo "       or https://nodejs.org); they are not on PATH" >&2
        return 1
    fi
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    if ((major < 20)); then
        echo "error: building the UI needs Node.js 20+, found $(node --version)" >&2
        return 1
    fi
}

_ui_install() {
    local stamp="$_ui_dir/node_modules/.evolve-lock.sha256" want
    want="$(sha256sum "$_ui_dir/package-lock.json" | cut -d' ' -f1)"
    if [[ ! -d "$_ui_dir/node_modules" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
        (cd "$_ui_dir" && npm ci --no-audit --no-fund)
        echo "$want" >"$stamp"
    fi
}

build_ui() {
    _ui_need_node
    _ui_install
    (cd "$_ui_dir" && npm run --silent build)
}

# The bindings are written by `cargo test` (the `export_bindings_*` tests ts-rs derives, into
# TS_RS_EXPORT_DIR, see .cargo/config.toml). Same package selection as every other build, so
# llama.cpp is not rebuilt; ui/dist must exist first (the binary embeds it), hence after build_ui.
check_bindings() {
    local root before after
    root="$(dirname "$_ui_dir")"
    before="$(_ui_bindings_digest)"
    (cd "$root" && cargo test --workspace --all-targets --quiet export_bindings >/dev/null)
    after="$(_ui_bindings_digest)"
    (cd "$_ui_dir" && npx tsc --noEmit)
    if [[ "$before" != "$after" ]]; then
        echo "error: the Rust types of the protocol changed, so ui/src/bindings was regenerated;" >&2
        echo "       the UI type-checks against them: review and commit ui/src/bindings" >&2
        return 1
    fi
}

_ui_bindings_digest() {
    (cd "$_ui_dir/src/bindings" 2>/dev/null && find . -type f -name '*.ts' | sort | xargs -r sha256sum) | sha256sum
}

build_ui_and_test() {
    build_ui
    check_bindings
    (cd "$_ui_dir" && npm test --silent)
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    case "${1:-}" in
        --test) build_ui_and_test ;;
        "") build_ui ;;
        *) echo "usage: $0 [--test]" >&2; exit 2 ;;
    esac
fi
