#!/usr/bin/env bash
# Compile-only check of the CUDA build on a machine without a GPU: the training engine with
# `--features evolve-train/cuda` (candle's CUDA kernels, cuBLAS, cudarc), linked into the `evolve`
# binary, for one GPU architecture. Not part of every CI run (≈ 30 min on 2 cores); run and
# recorded (docs/benchmarks.md).
#
# The CUDA toolkit comes from PyPI wheels (NVIDIA's CUDA 13.4 packages: nvcc, NVVM, headers,
# runtime, NVRTC, cuBLAS, cuRAND), cached; Debian's nvidia-cuda-toolkit (11.8, non-free) cannot
# target Hopper. No wheel ships the driver library, so a stub libcuda.so.1 is built from the
# function names cudarc declares: every call returns CUDA_ERROR_STUB_LIBRARY (34), as NVIDIA's own
# stub does. On a machine with a GPU, use the real driver (never the stubs folder).
#
#   CUDA_COMPUTE_CAP   GPU architecture (default 90: H100/H200)
#   EVOLVE_CACHE       cache folder (default ${XDG_CACHE_HOME:-~/.cache}/evolve-studio)
#   CUDA_TARGET_DIR    cargo target folder (default target/cuda, apart from the CPU build's)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# The CPU build's system packages (libclang, OpenBLAS, ...), as start.sh and test.sh install them.
source "$root/scripts/setup.sh"
evolve_apt_install "${EVOLVE_APT_PACKAGES[@]}"
cache="${EVOLVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/evolve-studio}/cuda-13.4"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
started=$(date +%s)

# cudarc 0.19 knows CUDA up to 13.4: pin it (PyPI's newest is refused at build time).
wheels=(
    nvidia-cuda-nvcc==13.4.92 nvidia-nvvm==13.4.92 nvidia-cuda-crt==13.4.92
    nvidia-cuda-runtime==13.4.92 nvidia-cuda-cccl==13.3.4.3.1
    nvidia-cuda-nvrtc==13.4.92 nvidia-curand==10.4.4.72 nvidia-cublas==13.8.0.4
)
cuda="$cache/cuda"
if [[ ! -x "$cuda/bin/nvcc" || ! -e "$cuda/lib/stubs/libcuda.so" ]]; then
    echo "assembling a CUDA 13.4 toolkit from PyPI wheels in $cache (once; ~650 MB)..." >&2
    command -v unzip >/dev/null || { echo "unzip is needed (apt install unzip)" >&2; exit 1; }
    mkdir -p "$cache/wheels"
    python3 -m pip download --quiet --no-deps -d "$cache/wheels" "${wheels[@]}"
    # unzip keeps the executable bits that Python's zipfile drops.
    for w in "$cache"/wheels/nvidia_*.whl; do unzip -q -o "$w" 'nvidia/*' -d "$cache/site"; done
    # The wheels unpack into one complete CUDA root (bin, nvvm, include, lib).
    ln -sfn "$cache/site/nvidia/cu13" "$cuda"
    (cd "$cuda/lib" && for l in libcudart.so.13 libnvrtc.so.13 libcublas.so.13 \
        libcublasLt.so.13 libcurand.so.10; do ln -sfn "$l" "${l%.so.*}.so"; done)
    (cd "$root" && cargo fetch --quiet)
    cudarc="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | head -1)"
    mkdir -p "$cuda/lib/stubs"
    grep -ohE 'pub unsafe fn cu[A-Za-z0-9_]+' "$cudarc/src/driver/sys/mod.rs" \
        | awk '{print $4}' | sort -u \
        | awk '{print "int " $1 "(void){return 34;}"}' > "$cuda/lib/stubs/libcuda_stub.c"
    gcc -shared -fPIC -O0 -Wl,-soname,libcuda.so.1 -o "$cuda/lib/stubs/libcuda.so.1" \
        "$cuda/lib/stubs/libcuda_stub.c"
    ln -sfn libcuda.so.1 "$cuda/lib/stubs/libcuda.so"
fi
export CUDA_ROOT="$cuda" PATH="$cuda/bin:$PATH"
nvcc --version | tail -2 >&2
toolkit=$(( $(date +%s) - started ))

export CARGO_TARGET_DIR="${CUDA_TARGET_DIR:-$root/target/cuda}"
export CCACHE_BASEDIR=/ CCACHE_NOHASHDIR=1
cd "$root"
building=$(date +%s)
cargo build --bin evolve --features evolve-train/cuda
built=$(( $(date +%s) - building ))

# The binary links the CUDA libraries; with the stub driver it runs on the CPU and says why
# the GPU is unavailable.
export LD_LIBRARY_PATH="$cuda/lib:$cuda/lib/stubs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
"$CARGO_TARGET_DIR/debug/evolve" --version
ldd "$CARGO_TARGET_DIR/debug/evolve" | grep -E 'libcuda|libcublas|libnvrtc' >&2
if out=$("$CARGO_TARGET_DIR/debug/evolve" bench train --shape tiny --device cuda --repeat 1 2>&1); then
    echo "--device cuda ran without a GPU?" >&2
    exit 1
fi
grep -q "no usable CUDA device" <<<"$out" || { echo "unexpected: $out" >&2; exit 1; }
echo "--device cuda without a GPU: $(head -1 <<<"$out")" >&2
echo "check-cuda-build: passed for sm_${CUDA_COMPUTE_CAP} (toolkit ${toolkit} s, build ${built} s)"
