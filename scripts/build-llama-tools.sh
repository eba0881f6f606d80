#!/usr/bin/env bash
# Builds llama.cpp reference tools for `evolve bench sample` and the llama-server test into
# ${CARGO_TARGET_DIR:-target}/llama-tools/ with the binaries in .../llama-tools/bin/:
#
#   - evolve-batched-bench (unless --upstream-only): batched-bench's loop on llama.h
#     (scripts/llama-tools/batched-bench.cpp), built from the very llama.cpp source that the
#     llama-cpp-sys-2 crate vendors, i.e. the same llama.cpp version as our engine;
#   - llama-server and llama-batched-bench (upstream's own), from a full llama.cpp tree. The
#     crate's copy ships without tools/server and tools/batched-bench, so the tree comes from
#     LLAMA_CPP_SRC=/path/to/llama.cpp, or with --fetch from the llama-cpp-python source
#     archive on PyPI (pinned version and sha256 below; it vendors a complete llama.cpp).
#
# Idempotent: cmake and ccache make a re-run with nothing changed take seconds.
# Exit status 0 when everything was built; 3 when upstream's tools were skipped because no
# full tree was available (a note says how to get one).
set -euo pipefail
fetch=0
fetch_only=0
upstream_only=0
for arg in "$@"; do
    case "$arg" in
        --fetch) fetch=1 ;;
        --fetch-only) fetch=1; fetch_only=1 ;;  # only download and unpack the full tree
        --upstream-only) upstream_only=1 ;;     # skip evolve-batched-bench (the tests need none)
        *) echo "usage: $0 [--fetch | --fetch-only] [--upstream-only]" >&2; exit 2 ;;
    esac
done

# llama-cpp-python 0.3.36's sdist: vendor/llama.cpp is a full llama.cpp checkout.
SDIST_VERSION=0.3.36
SDIST_URL="https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-${SDIST_VERSION}.tar.gz"
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# The llama-cpp-sys-2 package the lock file resolves, wherever cargo unpacked it.
manifest="$(cargo metadata --format-version 1 --locked --filter-platform "$(rustc -vV | sed -n "s/^host: //p")" 2>/dev/null |
    grep -o '"manifest_path":"[^"]*/llama-cpp-sys-2-[0-9][^"/]*/Cargo.toml"' | head -n1 | cut -d'"' -f4 || true)"
src="${manifest:+$(dirname "$manifest")/llama.cpp}"
if [[ -z "$src" || ! -f "$src/CMakeLists.txt" || ! -f "$src/include/llama.h" ]]; then
    echo "error: no llama.cpp source found (cargo metadata gave '${src}'); run 'cargo fetch'" >&2
    exit 2
fi

# A full tree for upstream's tools: LLAMA_CPP_SRC, the crate's own if it were complete, or the
# sdist (downloaded once into the cache, checked against its sha256).
has_tools() { [[ -f "$1/tools/server/CMakeLists.txt" && -f "$1/tools/batched-bench/CMakeLists.txt" ]]; }
full="${LLAMA_CPP_SRC:-}"
if [[ -z "$full" ]] && has_tools "$src"; then
    full="$src"
fi
cache="${XDG_CACHE_HOME:-$HOME/.cache}/evolve-studio"
sdist_tree="$cache/llama-cpp-python-$SDIST_VERSION/vendor/llama.cpp"
if [[ -z "$full" ]] && has_tools "$sdist_tree"; then
    full="$sdist_tree"
fi
if [[ -z "$full" && $fetch == 1 ]]; then
    mkdir -p "$cache"
    archive="$cache/llama_cpp_python-$SDIST_VERSION.tar.gz"
    if ! echo "$SDIST_SHA256  $archive" | sha256sum -c --status 2>/dev/null; then
        echo "fetching llama-cpp-python $SDIST_VERSION source archive from PyPI (76 MB)…" >&2
        if ! curl -fsSL --retry 3 -o "$archive.part" "$SDIST_URL"; then
            # Through pip's own index settings (a mirror, a proxy) when the direct URL fails.
            pip download --quiet --no-deps --no-binary :all: -d "$cache/pip" \
                "llama-cpp-python==$SDIST_VERSION"
            mv "$cache/pip/llama_cpp_python-$SDIST_VERSION.tar.gz" "$archive.part"
        fi
        echo "$SDIST_SHA256  $archive.part" | sha256sum -c --status || {
            echo "error: $archive.part does not have the expected sha256" >&2
            exit 2
        }
        mv "$archive.part" "$archive"
    fi
    rm -rf "$cache/llama-cpp-python-$SDIST_VERSION"
    tar -xzf "$archive" -C "$cache" "llama_cpp_python-$SDIST_VERSION/vendor/llama.cpp"
    mv "$cache/llama_cpp_python-$SDIST_VERSION" "$cache/llama-cpp-python-$SDIST_VERSION"
    full="$sdist_tree"
fi
if [[ $fetch_only == 1 ]]; then
    echo "${full:-no full llama.cpp tree}"
    [[ -n "$full" ]] && exit 0 || exit 3
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
if [[ -n "$full" ]] && has_tools "$full"; then
    # LLAMA_CURL is deprecated in this llama.cpp (downloads are built in); the server needs
    # common + tools + server, and no web UI build (LLAMA_BUILD_UI is off by default).
    echo "building llama-server and llama-batched-bench from $full" >&2
    # A build directory configured for another tree cannot be reused (cmake refuses).
    if [[ -f "$out/upstream/CMakeCache.txt" ]] &&
        ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$full" "$out/upstream/CMakeCache.txt"; then
        rm -rf "$out/upstream"
    fi
    # No web UI: the server's tests need only its API, and fetching prebuilt UI assets would
    # reach for huggingface.co.
    cmake -S "$full" -B "$out/upstream" "${common[@]}" -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON \
        -DLLAMA_BUILD_SERVER=ON -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
        >"$out/upstream-configure.log"
    cmake --build "$out/upstream" --target llama-server llama-batched-bench -j"$jobs"
    for t in llama-server llama-batched-bench; do
        cp -p "$out/upstream/bin/$t" "$out/bin/$t.tmp" && mv "$out/bin/$t.tmp" "$out/bin/$t"
    done
else
    echo "note: no llama.cpp tree with tools/server and tools/batched-bench (the crate ships without" >&2
    echo "      them); llama-server is not built. Run with --fetch, or set LLAMA_CPP_SRC." >&2
    status=3
fi

if [[ $upstream_only == 1 ]]; then
    exit "$status"
fi
cmake -S "$repo/scripts/llama-tools" -B "$out/evolve" "${common[@]}" -DLLAMA_BUILD_COMMON=OFF \
    -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CPP_SRC="$src" >"$out/evolve-configure.log"
cmake --build "$out/evolve" --target evolve-batched-bench -j"$jobs"
cp -p "$out/evolve/bin/evolve-batched-bench" "$out/bin/evolve-batched-bench.tmp"
mv "$out/bin/evolve-batched-bench.tmp" "$out/bin/evolve-batched-bench"

echo "llama tools in $out/bin:"
ls -1 "$out/bin" | sed 's/^/  /'
exit "$status"
