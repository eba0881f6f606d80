#!/usr/bin/env bash
# The real-model study of docs/real-model.md: EVOLVE, iterative DPO and rejection-sampling
# fine-tuning on SmolLM2-135M-Instruct (Q4_1) from the same base, prompts and seeds, 3 rounds
# each, 500 held-out problems, release build. Hours on a 2-core CPU; resumable: run it again
# after a stop (Ctrl-C, kill -9, reboot) and every method continues from the round it was in.
#
#   EVOLVE_STUDY_DIR   data directory of the study (default target/study)
#   extra arguments    passed to `evolve demo` (e.g. --variant evolve without --compare)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${EVOLVE_STUDY_DIR:-target/study}"
mkdir -p "$dir"
cargo build --release --workspace --bins
evolve=target/release/evolve
"$evolve" --data-dir "$dir" models fetch smollm2
args=("$@")
[[ ${#args[@]} -gt 0 ]] || args=(--compare --seeds 1)
"$evolve" --data-dir "$dir" demo --model smollm2 --json "$dir/results.json" "${args[@]}" \
    2>&1 | tee -a "$dir/study.log"
