#!/usr/bin/env python3
"""The reference for sampling, refinement and evaluation: the same chains through llama-server.

What a user without EVOLVE Studio would script: one OpenAI chat request per answer, then one per
refinement carrying the conversation so far (the server renders the model's template and reuses
the cached prefix of the slot it picks), as many requests in flight as the server has slots.
For the questions of an `evolve tasks measure --json` file it runs the same work as that
command: per question a greedy chain (answer + `--refine` refinements) and `--samples` sampled
answers, and prints the wall time, the tokens generated and tokens/s. Standard library only.

  python3 scripts/bench/round_reference.py --server http://127.0.0.1:8080 --measure ours.json \
      [--refine 1] [--parallel 64] [--json out.json]
"""

import argparse
import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

# The default refinement turn of evolve-core (refine.rs, DEFAULT_REFINE_INSTRUCTION).
INSTRUCTION = (
    "Review your previous answer to my question. Correct any mistakes, fill in anything "
    "missing and keep what is already right. Reply with the complete improved answer only."
)


def chat(server, messages, temperature, max_tokens, seed):
    body = {
        "messages": messages,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "seed": seed,
        "cache_prompt": True,
    }
    if temperature > 0:
        body.update(top_k=40, top_p=0.95, min_p=0.05)
    req = urllib.request.Request(
        f"{server}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=3600) as r:
        out = json.load(r)
    return out["choices"][0]["message"]["content"], out["usage"]["completion_tokens"]


def greedy_chain(server, question, refine, max_tokens):
    messages = [{"role": "user", "content": question}]
    tokens = 0
    for step in range(refine + 1):
        answer, n = chat(server, messages, 0.0, max_tokens, 0)
        tokens += n
        messages = [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": INSTRUCTION},
        ]
    return tokens


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="http://127.0.0.1:8080")
    ap.add_argument("--measure", required=True, help="an `evolve tasks measure --json` file")
    ap.add_argument("--refine", type=int, default=1)
    ap.add_argument("--parallel", type=int, default=64)
    ap.add_argument("--json")
    a = ap.parse_args()
    m = json.load(open(a.measure))
    questions = [row["question"] for row in m["tasks"][0]["rows"]]
    samples, temperature, max_tokens = m["samples"], m["temperature"], m["max_tokens"]
    phases = {}
    with ThreadPoolExecutor(a.parallel) as pool:
        start = time.perf_counter()
        tokens = sum(pool.map(lambda q: greedy_chain(a.server, q, a.refine, max_tokens), questions))
        phases["greedy chains"] = (time.perf_counter() - start, tokens)
        start = time.perf_counter()
        jobs = [(q, 11 + i) for q in questions for i in range(samples)]
        tokens = sum(
            n
            for _, n in pool.map(
                lambda job: chat(
                    a.server, [{"role": "user", "content": job[0]}], temperature, max_tokens, job[1]
                ),
                jobs,
            )
        )
        phases["samples"] = (time.perf_counter() - start, tokens)
    wall = sum(s for s, _ in phases.values())
    for name, (secs, tokens) in phases.items():
        print(f"{name:>13}: {secs:7.1f} s  {tokens:7d} tokens  {tokens / secs:6.1f} tok/s")
    print(f"{'all':>13}: {wall:7.1f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"wall_s": wall, "phases": phases}, f, indent=1)


if __name__ == "__main__":
    main()
