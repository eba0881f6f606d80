#!/usr/bin/env bash
# Builds llama.cpp reference tools for `evolve bench sample` and the remote-generator tests, from
# the llama.cpp source that the llama-cpp-sys-2 crate vendors (never downloads anything), into
# ${CARGO_TARGET_DIR:-target}/llama-tools/ with the binaries in .../llama-tools/bin/.
#
#   - llama-server and llama-batched-bench, when the source has tools/server and
#     tools/batched-bench (a full llama.cpp checkout: set LLAMA_CPP_SRC=/path/to/llama.cpp);
#   - evolve-batched-bench always (scripts/llama-tools/batched-bench.cpp: batched-bench's loop on
#     llama.h), because the crate's copy ships without the tools' sources.
#
# Idempotent: cmake and ccache make a re-run with nothing changed take seconds.
# Exit status 0 when everything the source allows was built (a missing tools/server is a note).
# --server-only: only the upstream tools; exits 3 at once when the source lacks them (the
# remote-generator test asks this way, so a plain `cargo test` never builds what it cannot use).
set -euo pipefail
server_only=0
[[ "${1:-}" == "--server-only" ]] && server_only=1

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

src="${LLAMA_CPP_SRC:-}"
if [[ -z "$src" ]]; then
    # The llama-cpp-sys-2 package the lock file resolves, wherever cargo unpacked it.
    manifest="$(cargo metadata --format-version 1 --locked --filter-platform "$(rustc -vV | sed -n "s/^host: //p")" 2>/dev/null |
        grep -o '"manifest_path":"[^"]*/llama-cpp-sys-2-[0-9][^"/]*/Cargo.toml"' | head -n1 | cut -d'"' -f4 || true)"
    src="${manifest:+$(dirname "$manifest")/llama.cpp}"
fi
if [[ -z "$src" || ! -f "$src/CMakeLists.txt" || ! -f "$src/include/llama.h" ]]; then
    echo "error: no llama.cpp source found (cargo metadata gave '${src}'); run 'cargo fetch' or set LLAMA_CPP_SRC" >&2
    exit 2
fi

out="${CARGO_TARGET_DIR:-$repo/target}/llama-tools"
mkdir -p "$out/bin"

launcher=()
if command -v ccache >/dev/null; then
    export CCACHE_BASEDIR=/ CCACHE_NOHASHDIR=1
    launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
# Release, portable x86-64-v3 (ggml's default with GGML_NATIVE=OFF), as llama-cpp-sys-2 builds it.
common=(-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF "${launcher[@]}")
jobs="$(nproc)"

status=0
if [[ -f "$src/tools/server/CMakeLists.txt" && -f "$src/tools/batched-bench/CMakeLists.txt" ]]; then
    # LLAMA_CURL is deprecated in this llama.cpp (downloads are built in); the server needs
    # common + tools + server, and no web UI build (LLAMA_BUILD_UI is off by default).
    cmake -S "$src" -B "$out/upstream" "${common[@]}" -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON \
        -DLLAMA_BUILD_SERVER=ON >"$out/upstream-configure.log"
    cmake --build "$out/upstream" --target llama-server llama-batched-bench -j"$jobs"
    for t in llama-server llama-batched-bench; do
        cp -p "$out/upstream/bin/$t" "$out/bin/$t.tmp" && mv "$out/bin/$t.tmp" "$out/bin/$t"
    done
else
    echo "note: $src has no tools/server or tools/batched-bench sources (the crate ships without them);" >&2
    echo "      llama-server is not built. Point LLAMA_CPP_SRC at a full llama.cpp checkout to build it." >&2
    status=3
fi
if [[ $server_only == 1 ]]; then
    exit "$status"
fi

cmake -S "$repo/scripts/llama-tools" -B "$out/evolve" "${common[@]}" -DLLAMA_BUILD_COMMON=OFF \
    -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CPP_SRC="$src" >"$out/evolve-configure.log"
cmake --build "$out/evolve" --target evolve-batched-bench -j"$jobs"
cp -p "$out/evolve/bin/evolve-batched-bench" "$out/bin/evolve-batched-bench.tmp"
mv "$out/bin/evolve-batched-bench.tmp" "$out/bin/evolve-batched-bench"

echo "llama tools in $out/bin:"
ls -1 "$out/bin" | sed 's/^/  /'
