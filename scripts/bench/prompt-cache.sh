#!/usr/bin/env bash
# Sampling, refinement and evaluation on a real model, in one sitting: `evolve tasks measure` on
# SmolLM2 (`smallest`: per problem a greedy answer and one refinement, chained, plus SAMPLES
# sampled answers) with and without the prompt cache (`--no-prompt-cache`), and the same requests through
# llama-server (scripts/bench/round_reference.py: 64 slots, cache_prompt, 64 requests in flight),
# taking turns; each turn's wall time, the medians and ratios, and how many greedy chains differ
# between cache and no cache (float rounding only).
#
#   scripts/bench/prompt-cache.sh [REPEATS] [PROBLEMS] [SAMPLES]   (default 3 turns, 300, 4)
#   EVOLVE_BIN    the binary (default target/release/evolve; build it first)
#   LLAMA_SERVER  llama-server (default target/llama-tools/bin/llama-server, built by
#                 scripts/build-llama-tools.sh --fetch); without it the reference is skipped
set -euo pipefail
cd "$(dirname "$0")/../.."
repeats="${1:-3}"
problems="${2:-300}"
samples="${3:-4}"
evolve="${EVOLVE_BIN:-target/release/evolve}"
[[ -x "$evolve" ]] || { echo "no $evolve: cargo build --release --workspace --bins" >&2; exit 1; }
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT  # EVOLVE_KEEP=1 keeps the JSON files
[[ -n "${EVOLVE_KEEP:-}" ]] && trap - EXIT
model="$("$evolve" --data-dir "$dir" models fetch smollm2 | tail -1 | grep -o '/[^ ]*\.gguf' || true)"
server="${LLAMA_SERVER:-target/llama-tools/bin/llama-server}"
modes=(cache no-cache)
if [[ -x "$server" && -f "$model" ]]; then
  "$server" -m "$model" -np 64 -c 65536 -t "$(nproc)" --port 8093 >"$dir/server.log" 2>&1 &
  trap 'kill %1 2>/dev/null; rm -rf "$dir"' EXIT
  until curl -sf http://127.0.0.1:8093/health >/dev/null; do sleep 1; done
  modes+=(server)
else
  echo "no llama-server at $server (or no model path): the reference is skipped" >&2
fi
for ((i = 1; i <= repeats; i++)); do
  for mode in "${modes[@]}"; do
    if [[ "$mode" == server ]]; then
      python3 scripts/bench/round_reference.py --server http://127.0.0.1:8093 \
        --measure "$dir/cache-$i.json" --json "$dir/server-$i.json" >/dev/null
      python3 -c "import json,sys; print(f'turn $i   server: {json.load(open(sys.argv[1]))[\"wall_s\"]:6.1f} s')" "$dir/server-$i.json"
      continue
    fi
    flag=()
    [[ "$mode" == no-cache ]] && flag=(--no-prompt-cache)
    "$evolve" --data-dir "$dir" tasks measure --model smollm2 --task smallest \
      --problems "$problems" --samples "$samples" --json "$dir/$mode-$i.json" "${flag[@]}" >/dev/null 2>&1
    python3 - "$dir/$mode-$i.json" "$mode" "$i" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["tasks"][0]
s = t["summary"]
print(f"turn {sys.argv[3]} {sys.argv[2]:>8}: {t['wall_s']:6.1f} s  pass@1 {s['pass1']:.3f}  "
      f"refine@1 {s['refine'][0]:.3f}  pass@k {s['pass_k']:.3f}")
PY
  done
done
python3 - "$dir" "$repeats" <<'PY'
import json, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
load = lambda m, i: json.load(open(f"{d}/{m}-{i}.json"))["tasks"][0]
import os
walls = {m: [load(m, i)["wall_s"] for i in range(1, n + 1)] for m in ("cache", "no-cache")}
if os.path.exists(f"{d}/server-1.json"):
    walls["server"] = [json.load(open(f"{d}/server-{i}.json"))["wall_s"] for i in range(1, n + 1)]
for m, w in walls.items():
    print(f"median wall {m:>8}: {statistics.median(w):6.1f} s")
for other in ("no-cache", "server"):
    if other in walls:
        ratios = [b / a for a, b in zip(walls["cache"], walls[other])]
        print(f"{other} / cache: {statistics.median(ratios):.2f}x "
              f"(per turn {min(ratios):.2f}-{max(ratios):.2f})")
a, b = load("cache", 1)["rows"], load("no-cache", 1)["rows"]
for step, name in ((0, "direct answer"), (1, "refinement")):
    diff = sum(x["greedy"][step]["text"] != y["greedy"][step]["text"] for x, y in zip(a, b))
    right = [(x["greedy"][step]["score"] >= 0.5, y["greedy"][step]["score"] >= 0.5)
             for x, y in zip(a, b)]
    print(f"greedy {name}s that differ between cache and no cache: {diff} of {len(a)} "
          f"(right only with the cache {sum(c and not n for c, n in right)}, "
          f"only without {sum(n and not c for c, n in right)})")
PY
