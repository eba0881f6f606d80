#!/usr/bin/env bash
# Our PEFT export proven with PEFT: transformers loads each base model from its GGUF
# (`gguf_file=`), PeftModel.from_pretrained applies the adapter as EVOLVE exports it, and the
# logits at every position (base and adapted) must match candle's within 1e-3 relative error.
# Cases: llama (the built-in task model), qwen2 and qwen3 (tiny random, with q/k/v biases and
# q/k head norms), SmolLM2-135M-Instruct Q4_1 (fetched from PyPI), each with a random adapter
# whose B is not zero; and, when the real-model study has run, its trained EVOLVE adapter.
# Results: docs/peft-check.md. A check tool, not a runtime dependency.
#
#   EVOLVE_PEFT_VENV   the virtual environment (scripts/bench/setup.sh makes it)
#   EVOLVE_STUDY_DIR   the study's data directory (default target/study)
set -euo pipefail
cd "$(dirname "$0")/.."
python="$(bash scripts/bench/setup.sh)"
cargo build --release --workspace --bins
evolve=target/release/evolve
work=target/check-peft
rm -rf "$work"
mkdir -p "$work"
"$evolve" fixture random --arch qwen2 --out "$work/tiny-qwen2.gguf"
"$evolve" fixture random --arch qwen3 --out "$work/tiny-qwen3.gguf"
smollm2="$(bash scripts/fetch-smollm2.sh | tail -n 1)"
cases=(
    "llama-task=models/tiny-task.gguf"
    "qwen2-tiny=$work/tiny-qwen2.gguf"
    "qwen3-tiny=$work/tiny-qwen3.gguf"
    "smollm2-random=$smollm2"
)
args=()
for c in "${cases[@]}"; do
    "$evolve" fixture adapter --model "${c#*=}" --out "$work/${c%%=*}"
    args+=("${c%%=*}=$work/${c%%=*}=${c#*=}")
done
# The study's final EVOLVE adapter (run 1, round 2: rank 16, alpha 32), when it is there.
trained="${EVOLVE_STUDY_DIR:-target/study}/adapters/run-1/round-2/adapter.safetensors"
if [[ -f "$trained" ]]; then
    "$evolve" fixture adapter --model "$smollm2" --weights "$trained" --rank 16 --alpha 32 \
        --out "$work/smollm2-evolve-round2"
    args+=("smollm2-evolve-round2=$work/smollm2-evolve-round2=$smollm2")
fi
"$python" scripts/check_peft.py "${args[@]}" 2>"$work/python.log" | tee "$work/result.md"
