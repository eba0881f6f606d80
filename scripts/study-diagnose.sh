#!/usr/bin/env bash
# Round-0 diagnosis of docs/real-model.md ("Why EVOLVE trailed"): one round of EVOLVE, iterative
# DPO and single-change variants of them on SmolLM2-135M-Instruct (`smallest`, 48 prompts × 4
# samples, 300 held-out problems), seed by seed, from the same base, prompts and samples (the
# sampling seeds depend only on run seed, round, prompt and sample). Resumable: run it again after
# any stop and every arm continues where it was; finished arms are reused, not rerun.
#
#   EVOLVE_STUDY_DIR   data directory (default target/diagnose)
#   EVOLVE_ARMS        arms to run, space-separated (default: all, in the order below)
#   EVOLVE_SEEDS       seeds per arm (default 2)
#
# Then `scripts/study-diagnose.sh --report` prints, from the database alone: each arm's pairs
# (cut answers, lengths), accuracies, and each arm against its baseline pooled over seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${EVOLVE_STUDY_DIR:-target/diagnose}"
seeds="${EVOLVE_SEEDS:-2}"
mkdir -p "$dir/arms"

# name  method  settings laid over the study's (`evolve demo --config`). Every arm names its
# `pair_rules.finished`: this diagnosis made `chosen` the default, and the arms compare against
# the `any` that runs used before.
arms=(
  "idpo iterative-dpo {\"pair_rules\":{\"finished\":\"any\"}}"
  "evolve evolve {\"pair_rules\":{\"finished\":\"any\"}}"
  "evolve-finished evolve {\"pair_rules\":{\"finished\":\"chosen\"}}"
  "evolve-nll0 evolve {\"pair_rules\":{\"finished\":\"any\"},\"train\":{\"nll_weight\":0}}"
  "evolve-own evolve {\"pair_rules\":{\"finished\":\"any\",\"refine_target\":\"own_refinement\"}}"
  "idpo-2x iterative-dpo {\"pair_rules\":{\"finished\":\"any\"},\"train\":{\"epochs\":2}}"
  "evolve-refine-only evolve {\"pair_rules\":{\"finished\":\"any\"},\"pair_kinds\":{\"direct\":false}}"
  "evolve-lambda0.25 evolve {\"pair_rules\":{\"finished\":\"any\"},\"train\":{\"lambda_refine\":0.25}}"
  "idpo-finished iterative-dpo {\"pair_rules\":{\"finished\":\"chosen\"}}"
  "evolve-sft evolve {\"pair_rules\":{\"finished\":\"any\"},\"train\":{\"sft_warmup\":true}}"
  "evolve-finished-own evolve {\"pair_rules\":{\"finished\":\"chosen\",\"refine_target\":\"own_refinement\"}}"
)

evolve="$dir/bin/evolve"
if [[ "${1:-}" != --report ]]; then
  if [[ ! -x "$evolve" ]]; then
    cargo build --release --workspace --bins
    mkdir -p "$dir/bin" && cp target/release/evolve "$evolve"
  fi
  "$evolve" --data-dir "$dir" models fetch smollm2 >/dev/null
  wanted="${EVOLVE_ARMS:-}"
  # Seed by seed: every arm's first seed before any arm's second (an arm already done for a seed
  # is reused, not rerun).
  for ((n = 1; n <= seeds; n++)); do
    for arm in "${arms[@]}"; do
      read -r name method settings <<<"$arm"
      [[ -z "$wanted" || " $wanted " == *" $name "* ]] || continue
      echo "$settings" >"$dir/arms/$name.json"
      echo "== $name ($method $settings), seeds 0..$((n - 1)), $(date -u +%FT%TZ)" | tee -a "$dir/study.log"
      "$evolve" --data-dir "$dir" demo --model smollm2 --rounds 1 --eval-prompts 300 \
        --variant "$method" --seeds "$n" --config "$dir/arms/$name.json" \
        --json "$dir/arms/$name.results.json" 2>&1 | tee -a "$dir/study.log"
    done
  done
  exit 0
fi

db="$dir/evolve.db"
[[ -f "$db" ]] || { echo "no study database at $db" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "--report needs the sqlite3 command (apt-get install sqlite3)" >&2; exit 1; }
# Each arm's runs, seed by seed, read from the JSON its demo wrote.
runs_of() { grep -o '"run_id": [0-9]*' "$dir/arms/$1.results.json" | grep -o '[0-9]*' | paste -sd, -; }

echo "== pairs of round 0: how many, how many answers cut at the token limit, mean tokens"
sqlite3 -header -column "$db" "
  SELECT p.round_id AS round, r.run_id AS run, p.kind,
         count(*) AS pairs,
         sum(1 - c.finished) AS chosen_cut, sum(1 - j.finished) AS rejected_cut,
         round(avg(c.token_count), 1) AS chosen_tokens, round(avg(j.token_count), 1) AS rejected_tokens,
         sum(c.text LIKE 'To %') AS chosen_preamble, sum(j.text LIKE 'To %') AS rejected_preamble
  FROM pairs p JOIN rounds r ON r.id = p.round_id
       JOIN generations c ON c.id = p.chosen_id JOIN generations j ON j.id = p.rejected_id
  GROUP BY p.round_id, p.kind ORDER BY r.run_id, p.kind;"
echo
echo "== first samples of round 0: how many were cut (per run)"
sqlite3 -header -column "$db" "
  SELECT r.run_id AS run, count(*) AS samples, sum(1 - g.finished) AS cut,
         round(avg(g.token_count), 1) AS tokens
  FROM generations g JOIN rounds r ON r.id = g.round_id
  WHERE g.kind = 'sample' AND g.step_index = 0 GROUP BY r.run_id;"
echo
for arm in "${arms[@]}"; do
  read -r name method _ <<<"$arm"
  [[ -f "$dir/arms/$name.results.json" ]] || continue
  echo "== $name: runs $(runs_of "$name")"
done
echo
base_of() { case "$1" in idpo) echo "";; idpo-*) echo idpo;; evolve) echo idpo;; evolve-finished-*) echo evolve-finished;; *) echo evolve;; esac; }
for arm in "${arms[@]}"; do
  read -r name _ _ <<<"$arm"
  for against in $(base_of "$name") $([[ "$name" == evolve-* ]] && echo idpo); do
    [[ -f "$dir/arms/$name.results.json" && -f "$dir/arms/$against.results.json" ]] || continue
    # The seeds both arms have: the i-th run of each list is seed i.
    a=$(runs_of "$against"); b=$(runs_of "$name")
    na=$(awk -F, '{print NF}' <<<"$a"); nb=$(awk -F, '{print NF}' <<<"$b")
    n=$((na < nb ? na : nb))
    a=$(cut -d, -f1-"$n" <<<"$a"); b=$(cut -d, -f1-"$n" <<<"$b")
    echo "== $name against $against (runs $b against $a)"
    "$evolve" --data-dir "$dir" run compare "$a" "$b"
    echo
  done
done
