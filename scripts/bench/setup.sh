#!/usr/bin/env bash
# The Python side of the training benchmark and the PEFT check: a virtual environment with
# PyTorch, transformers, PEFT and gguf from PyPI (pinned), printed path of its python. PyPI has
# no CPU-only torch for Linux: the first install pulls ~5.6 GB of CUDA wheels; later calls reuse it.
#
#   EVOLVE_PEFT_VENV   where (default ~/.cache/evolve-studio/peft-venv)
set -euo pipefail
venv="${EVOLVE_PEFT_VENV:-$HOME/.cache/evolve-studio/peft-venv}"
if ! "$venv/bin/python" -c "import torch, transformers, peft, gguf" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch==2.15.0 transformers==5.24.0 peft==0.21.2 gguf==0.19.0 \
        safetensors numpy >&2
fi
echo "$venv/bin/python"
