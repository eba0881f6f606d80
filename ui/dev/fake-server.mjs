#!/usr/bin/env node
// DEVELOPMENT AID ONLY — no test uses this file, and the app never ships it.
//
// A stand-in for `evolve serve` with canned data, for looking at the screens without building the
// Rust side: it answers every command of docs/api.md over HTTP, streams a fake chat (answer plus
// refinement steps) and a fake training run as Server-Sent Events, and serves ui/dist/ under the
// same strict Content-Security-Policy as the desktop app, so CSP violations show up in the browser.
//
//   npm run build && node dev/fake-server.mjs [--port 5174] [--empty]
//   open http://127.0.0.1:5174/#token=devtoken
//   (or `npm run dev` and open http://127.0.0.1:5173/#token=devtoken: Vite proxies /api here)
//
// --empty starts with no model registered, to show the first-start welcome panel.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const args = process.argv.slice(2);
const port = Number(args[args.indexOf("--port") + 1]) || Number(process.env.PORT) || 5174;
const TOKEN = process.env.EVOLVE_TOKEN ?? "devtoken";
const DIST = fileURLToPath(new URL("../dist/", import.meta.url));
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'";

/* ------------------------------------------------------------------ canned data */

const now = Date.now();
const iso = (minsAgo) => new Date(now - minsAgo * 60000).toISOString();
const builtin = {
  id: 1,
  path: "/home/me/.local/share/evolve-studio/models/tiny-random.gguf",
  display_name: "tiny random (built in)",
  name: "tiny-random",
  architecture: "llama",
  parameter_count: 4_200_000,
  context_length: 2048,
  quantization: "F32",
  file_size: 16_998_400,
  sha256: "9f2c4e1b7a0d3c58e6f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7",
  metadata: { "general.architecture": "llama", "llama.block_count": 2, "llama.embedding_length": 64, "tokenizer.ggml.model": "llama" },
};
const qwen = {
  id: 2,
  path: "/models/Qwen2.5-1.5B-Instruct-Q4_K_M.gguf",
  display_name: null,
  name: "Qwen2.5 1.5B Instruct",
  architecture: "qwen2",
  parameter_count: 1_543_714_304,
  context_length: 32768,
  quantization: "Q4_K_M",
  file_size: 986_048_768,
  sha256: "6a1a2eb6d15622bf3c96857206351ba97e1af16c30d7a74ee38970e434e9407e",
  metadata: { "general.architecture": "qwen2", "qwen2.block_count": 28, "qwen2.context_length": 32768, "general.file_type": 15 },
};
const state = {
  builtinUsed: !args.includes("--empty"),
  models: args.includes("--empty") ? [] : [builtin, qwen],
  datasets: [
    { id: 1, name: "gsm8k-mini", format: "gsm8k", prompts: 500, train: 450, eval: 50 },
    { id: 2, name: "json-tasks", format: "plain", prompts: 120, train: 108, eval: 12 },
  ],
  chats: [
    { id: 1, title: "Pencils: 3 for $2", created_at: iso(90) },
    { id: 2, title: "Make this valid JSON", created_at: iso(60 * 26) },
  ],
  history: {
    1: [
      { role: "user", text: "A shop sells pencils at 3 for $2. How much do 12 pencils cost?", step: 0, variant: "base", score: null },
      ...answerSteps(2).map((t, i) => ({ role: "assistant", text: t, step: i, variant: "base", score: [0, 0.5, 1][i] })),
    ],
    2: [
      { role: "user", text: "Make this valid JSON: {name: 'Ada', age: 36}", step: 0, variant: "base", score: null },
      { role: "assistant", text: "{name: \"Ada\", age: 36}", step: 0, variant: "base", score: null },
      { role: "assistant", text: "{\"name\": \"Ada\", \"age\": 36}", step: 1, variant: "base", score: null },
    ],
  },
  runs: [
    { id: 1, name: "gsm8k · 3 rounds", state: "done", model_id: 2, dataset_id: 1, created_at: iso(60 * 5) },
    { id: 2, name: "live demo", state: "running", model_id: 1, dataset_id: 1, created_at: iso(12) },
  ],
  adapters: [
    { id: 1, run_id: 1, round: 0, path: "/data/adapters/run1-r0.safetensors", format: "candle-lora", rank: 16, alpha: 32, sha256: "aa", created_at: iso(280), base_model_id: 2 },
    { id: 2, run_id: 1, round: 1, path: "/data/adapters/run1-r1.safetensors", format: "candle-lora", rank: 16, alpha: 32, sha256: "bb", created_at: iso(200), base_model_id: 2 },
    { id: 3, run_id: 1, round: 2, path: "/data/adapters/run1-r2.safetensors", format: "candle-lora", rank: 16, alpha: 32, sha256: "cc", created_at: iso(130), base_model_id: 2 },
    { id: 4, run_id: 2, round: 0, path: "/data/adapters/run2-r0.safetensors", format: "candle-lora", rank: 8, alpha: 16, sha256: "dd", created_at: iso(5), base_model_id: 1 },
  ],
  settings: {
    data_dir: "/home/me/.local/share/evolve-studio",
    threads: 8,
    gpu_layers: 0,
    export_dir: "/home/me/evolve-exports",
    sampler: { temperature: 0.8, top_p: 0.95, top_k: 40, min_p: 0.05, repeat_penalty: 1.1, max_tokens: 512 },
  },
  pairs: [],
  metrics: { 1: fakeMetrics(3, 24, 0), 2: fakeMetrics(1, 16, 0) },
  // The live run is in its second round, training, so its plots grow from the start.
  live: { round: 1, state: "training", done: 2, total: 16 },
  chatSeq: 3,
  reqSeq: 1,
};
state.pairs = fakePairs();

function answerSteps(k) {
  const steps = [
    "Each pencil costs $2, so 12 pencils cost 12 × 2 = $24.",
    "Pencils come 3 for $2, so 12 pencils are 4 groups of 3. The total is 4 × $2 = $8.",
    "Pencils are sold 3 for $2. 12 pencils make 12 ÷ 3 = 4 groups, and 4 groups cost 4 × $2 = $8.\nAnswer: 8",
    "Pencils are sold 3 for $2. 12 pencils make 12 ÷ 3 = 4 groups, and 4 groups cost 4 × $2 = $8, so the price per pencil is about $0.67.\nAnswer: 8",
    "Pencils are sold at 3 for $2. Twelve pencils make 12 ÷ 3 = 4 groups, and 4 groups cost 4 × $2 = $8.\nAnswer: 8",
    "Pencils are sold at 3 for $2. Twelve pencils make 12 ÷ 3 = 4 groups; 4 groups cost 4 × $2 = $8.\nAnswer: $8",
  ];
  return steps.slice(0, k + 1);
}

function fakeMetrics(rounds, steps, offset) {
  const out = [];
  let g = offset;
  for (let r = 0; r < rounds; r++) {
    for (let s = 0; s < steps; s++, g++) {
      const t = (r * steps + s) / (rounds * steps);
      const noise = Math.sin(g * 1.7) * 0.03;
      const margin = 0.1 + 2.2 * t + noise * 2 + (s / steps) * 0.4;
      out.push({
        round: r,
        step: s,
        global_step: g,
        metrics: {
          loss: Math.max(0.05, 0.693 * Math.exp(-2.2 * t) - (s / steps) * 0.08 + noise),
          "rewards/margins": margin,
          "rewards/accuracies": Math.min(1, 0.5 + 0.45 * t + (s / steps) * 0.05 + noise),
          "rewards/chosen": 0.2 + margin * 0.35,
          "rewards/rejected": 0.2 - margin * 0.65,
          grad_norm: 1.5 * Math.exp(-t) + Math.abs(noise) * 5,
          learning_rate: s < 3 ? 5e-5 * ((s + 1) / 3) : 5e-5 * 0.5 * (1 + Math.cos((Math.PI * (s - 3)) / (steps - 3))),
          tokens_per_second: 900 + noise * 1000,
        },
      });
    }
  }
  return out;
}

function fakePairs() {
  const prompts = [
    "A shop sells pencils at 3 for $2. How much do 12 pencils cost?",
    "Tom has 5 apples and buys 7 more, then gives away 4. How many are left?",
    "A train travels 60 km in 45 minutes. What is its speed in km/h?",
    "What is 15% of 240?",
  ];
  const out = [];
  let id = 1;
  for (let r = 0; r < 3; r++) {
    for (const [i, p] of prompts.entries()) {
      const kind = (i + r) % 2 ? "refine" : "direct";
      const cs = 1;
      const rs = [0, 0, 0.5, 0][i];
      out.push({
        id: id++,
        round: r,
        kind,
        prompt: p,
        chosen: { id: id * 10, text: ["12 ÷ 3 = 4 groups; 4 × $2 = $8.\nAnswer: 8", "5 + 7 = 12, 12 − 4 = 8.\nAnswer: 8", "45 minutes is 0.75 h, so 60 ÷ 0.75 = 80 km/h.\nAnswer: 80", "0.15 × 240 = 36.\nAnswer: 36"][i], score: cs },
        rejected: { id: id * 10 + 1, text: ["12 × 2 = $24.\nAnswer: 24", "5 + 7 + 4 = 16.\nAnswer: 16", "60 × 45 = 2700 km/h.\nAnswer: 2700", "240 ÷ 15 = 16.\nAnswer: 16"][i], score: rs },
        margin: cs - rs,
        review: ["pending", "approved", "pending", "vetoed"][(i + r) % 4],
        edited_chosen_text: null,
      });
    }
  }
  return out;
}

/* ------------------------------------------------------------------ events */

const clients = new Set();
function emit(event, payload) {
  const msg = `event: ${event}\ndata: ${JSON.stringify(payload)}\n\n`;
  for (const res of clients) res.write(msg);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cancelled = new Set();

async function streamVariant(request_id, variant, k, scorer, withScores) {
  const steps = answerSteps(k);
  const scores = [0, 0.5, 1, 1, 1, 1];
  for (let step = 0; step < steps.length; step++) {
    const text = variant === "adapter" ? steps[Math.min(step + 1, steps.length - 1)] : steps[step];
    const pieces = text.match(/\s*\S+/g) ?? [];
    for (const piece of pieces) {
      if (cancelled.has(request_id)) return;
      await sleep(25 + Math.random() * 35);
      emit("chat", { request_id, variant, kind: "token", step, text: piece, score: null, tokens_per_second: 28 + Math.random() * 6, error: null });
    }
    emit("chat", {
      request_id, variant, kind: "step_done", step, text,
      score: withScores && scorer ? scores[variant === "adapter" ? Math.min(step + 1, 5) : step] : null,
      tokens_per_second: 30.5, error: null,
    });
  }
  emit("chat", { request_id, variant, kind: "done", step: steps.length - 1, text: "", score: null, tokens_per_second: 30.5, error: null });
}

// The live run: progress every 300 ms, a metric record per training step, a new round every so often.
setInterval(() => {
  const L = state.live;
  const run = state.runs[1];
  if (run.state !== "running") return;
  const phases = ["sampling", "refining", "scoring", "pairing", "training", "evaluating"];
  L.done += L.state === "training" ? 1 : 4;
  if (L.state === "training") {
    const rec = fakeMetrics(1, 16, 0)[L.done % 16];
    const g = state.metrics[2].length;
    const m = { ...rec, round: L.round, step: L.done, global_step: g, metrics: { ...rec.metrics, loss: rec.metrics.loss * Math.exp(-0.4 * L.round), "rewards/margins": rec.metrics["rewards/margins"] + L.round * 0.8 } };
    state.metrics[2].push(m);
    emit("run_metrics", { run_id: 2, ...m });
  }
  if (L.done >= L.total) {
    const next = phases.indexOf(L.state) + 1;
    if (next >= phases.length) {
      L.round = (L.round + 1) % 3;
      L.state = "sampling";
      if (L.round === 0) state.metrics[2] = [];
      emit("run_state", { run_id: 2, state: "running" });
    } else L.state = phases[next];
    L.done = 0;
    L.total = L.state === "training" ? 16 : 64;
  }
  emit("run_progress", { run_id: 2, round: L.round, state: L.state, done: L.done, total: L.total, tokens_per_second: L.state === "training" ? 910 : 212.4, eta_seconds: ((L.total - L.done) * 0.3 + (5 - phases.indexOf(L.state)) * 19) });
}, 300);

/* ------------------------------------------------------------------ commands */

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const commands = {
  status: () => ({ version: "0.1.0-dev", data_dir: state.settings.data_dir, schema_version: 4, models: state.models, builtin_model_available: true }),
  models_list: () => state.models,
  models_add: ({ path }) => {
    if (!path?.endsWith(".gguf")) throw new ApiError(400, `${path}: not a GGUF file (bad magic)`);
    const m = { ...qwen, id: state.models.length + 10, path, name: path.split("/").pop() };
    state.models.push(m);
    return m;
  },
  models_use_builtin: () => {
    if (!state.models.some((m) => m.id === 1)) state.models.unshift(builtin);
    return builtin;
  },
  datasets_list: () => state.datasets,
  datasets_import: ({ path, name }) => {
    const d = { id: state.datasets.length + 1, name: name ?? path.split("/").pop(), format: "plain", prompts: 97, train: 88, eval: 9 };
    state.datasets.push(d);
    return { dataset_id: d.id, imported: 97, bad_lines: [{ line: 14, reason: "not valid JSON" }, { line: 52, reason: "no prompt field" }] };
  },
  chat_send: ({ chat_id, message, refine_steps, scorer, compare, adapter_id }) => {
    let id = chat_id;
    if (id === null) {
      id = state.chatSeq++;
      state.chats.unshift({ id, title: message.slice(0, 40), created_at: new Date().toISOString() });
      state.history[id] = [];
    }
    state.history[id].push({ role: "user", text: message, step: 0, variant: "base", score: null });
    const request_id = `req-${state.reqSeq++}`;
    const variants = compare ? ["base", "adapter"] : [adapter_id !== null ? "adapter" : "base"];
    // Events start at once, possibly before this response arrives (the UI must cope).
    setTimeout(() => variants.forEach((v) => streamVariant(request_id, v, refine_steps, scorer, true)), 5);
    return { chat_id: id, request_id };
  },
  chat_cancel: ({ request_id }) => (cancelled.add(request_id), null),
  chats_list: () => state.chats,
  chat_history: ({ chat_id }) => {
    const h = state.history[chat_id];
    if (!h) throw new ApiError(404, `no chat ${chat_id}`);
    return h;
  },
  runs_list: () => state.runs,
  run_defaults: () => ({
    rounds: 3, prompts_per_round: 64, samples: 4, refine_steps: 2, scorer: "numeric",
    sampler: { ...state.settings.sampler },
    train: { lr: 5e-5, beta: 0.1, lambda_refine: 1.0, lora_rank: 16, lora_alpha: 32, epochs: 1, batch_size: 4, reference: "base", sft_warmup: false },
  }),
  run_preflight: () => ({ problem: null, base_gib: 0.09, adapter_gib: 0.02, working_gib: 0.3, total_gib: 0.41, free_gib: 21.3 }),
  models_fetch: ({ name }) => {
    if (name !== "smollm2") throw new ApiError(400, `no fetchable model named '${name}'`);
    const m = { ...qwen, id: state.models.length + 20, path: "/cache/SmolLM2-135M-Instruct.Q4_1.gguf", name: "SmolLM2-135M-Instruct (Q4_1)" };
    state.models.push(m);
    return m;
  },
  run_dry_run: () => ({
    scorer: "numeric_final_answer",
    rows: [{
      question: "Which number is larger, 847 or 592?", reference: "847", pairs: 0, greedy: [],
      samples: [[{ text: "The larger number is 847.", score: 0, details: { expected: "847", extracted: null }, stopped: true }]],
    }],
    summary: {
      prompts: 1, pass1: null, refine: [], wrong_to_right: 0, right_to_wrong: 0, sampled: 0, pass_k: 0, with_pairs: 0, cut: 0,
      no_pairs: "all 1 answers scored 0 (none right): nothing to prefer; the scorer found no answer to read in 1 of them",
    },
  }),
  run_start: ({ name, model_id, dataset_id }) => {
    const id = state.runs.length + 1;
    state.runs.unshift({ id, name, state: "pending", model_id, dataset_id, created_at: new Date().toISOString() });
    state.metrics[id] = [];
    return { run_id: id };
  },
  run_pause: ({ run_id }) => setRunState(run_id, "paused"),
  run_resume: ({ run_id }) => setRunState(run_id, "running"),
  run_cancel: ({ run_id }) => setRunState(run_id, "cancelled"),
  run_status: ({ run_id }) => {
    const run = state.runs.find((r) => r.id === run_id);
    if (!run) throw new ApiError(404, `no run ${run_id}`);
    if (run_id === 1)
      return {
        run,
        rounds: [0, 1, 2].map((i) => ({ index: i, state: "done", error: null, note: null, direct_pairs: 12, refine_pairs: 12 })),
        progress: null,
        scoreboard: [
          { label: "base", direct: 0.412, refined: [0.455, 0.47] },
          { label: "round 0", direct: 0.468, refined: [0.531, 0.552] },
          { label: "round 1", direct: 0.517, refined: [0.598, 0.62] },
          { label: "round 2", direct: 0.553, refined: [0.641, 0.668] },
        ],
      };
    const L = state.live;
    return {
      run,
      rounds: Array.from({ length: L.round + 1 }, (_, i) => ({ index: i, state: i < L.round ? "done" : run.state, error: null, note: null, direct_pairs: 0, refine_pairs: 0 })),
      progress: run.id === 2 ? { round: L.round, state: L.state, done: L.done, total: L.total, tokens_per_second: 212.4, eta_seconds: 95 } : null,
      scoreboard: run.id === 2 ? [{ label: "base", direct: 0.12, refined: [0.15, 0.16] }, ...Array.from({ length: L.round }, (_, i) => ({ label: `round ${i}`, direct: 0.14 + i * 0.04, refined: [0.19 + i * 0.05, 0.21 + i * 0.05] }))] : [],
    };
  },
  run_metrics: ({ run_id, since }) => (state.metrics[run_id] ?? []).filter((m) => m.global_step >= since),
  pairs_list: ({ run_id, round, kind, min_margin, review }) =>
    state.pairs.filter(
      (p) =>
        (run_id === null || run_id === 1) &&
        (round === null || p.round === round) &&
        (kind === null || p.kind === kind) &&
        (min_margin === null || p.margin >= min_margin) &&
        (review === null || p.review === review),
    ),
  pair_review: ({ pair_id, action, text }) => {
    const p = state.pairs.find((x) => x.id === pair_id);
    if (!p) throw new ApiError(404, `no pair ${pair_id}`);
    if (action === "approve") p.review = "approved";
    else if (action === "veto") p.review = "vetoed";
    else if (action === "edit") {
      if (!text) throw new ApiError(400, "edit needs a text");
      p.review = "edited";
      p.edited_chosen_text = text;
    } else if (action === "reset") {
      p.review = "pending";
      p.edited_chosen_text = null;
    } else throw new ApiError(400, `unknown action ${action}`);
    return p;
  },
  adapters_list: () => state.adapters,
  adapter_export: ({ adapter_id, format, dir }) => {
    const ext = { gguf_lora: "gguf", peft: "safetensors", merged_gguf: "gguf", trl_pairs: "jsonl" }[format];
    if (!ext) throw new ApiError(400, `unknown format ${format}`);
    return { path: `${dir.replace(/\/$/, "")}/adapter-${adapter_id}-${format}.${ext}` };
  },
  adapter_check: ({ adapter_id }) => ({
    applied: adapter_id !== 1,
    max_logit_diff: adapter_id !== 1 ? 0.8731 : 0,
    base_text: "Each pencil costs $2, so 12 pencils cost $24.",
    adapter_text: "12 ÷ 3 = 4 groups, 4 × $2 = $8. Answer: 8",
  }),
  settings_get: () => state.settings,
  settings_set: ({ settings }) => {
    if (!(settings.threads >= 1)) throw new ApiError(400, "threads must be at least 1");
    state.settings = { ...settings, data_dir: state.settings.data_dir };
    return state.settings;
  },
  pick_path: () => {
    throw new ApiError(400, "no file dialog over HTTP: type the path");
  },
};

function setRunState(run_id, s) {
  const run = state.runs.find((r) => r.id === run_id);
  if (!run) throw new ApiError(404, `no run ${run_id}`);
  run.state = s;
  emit("run_state", { run_id, state: s });
  return null;
}

/* ------------------------------------------------------------------ http */

const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png" };

function json(res, status, body) {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify(body));
}

const tickets = new Set();
let ticketCount = 0;

const server = createServer(async (req, res) => {
  const url = new URL(req.url, "http://localhost");
  if (url.pathname === "/api/events/ticket") {
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return json(res, 401, { error: "access token missing or wrong" });
    const ticket = `t${++ticketCount}`;
    tickets.add(ticket);
    return json(res, 200, { ticket });
  }
  if (url.pathname === "/api/events") {
    // Single-use tickets, like evolve serve: the token never goes in a URL.
    if (!tickets.delete(url.searchParams.get("ticket"))) return json(res, 401, { error: "event stream ticket missing, used or expired" });
    res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", Connection: "keep-alive" });
    res.write(": connected\n\n");
    clients.add(res);
    const ping = setInterval(() => res.write(": ping\n\n"), 15000);
    req.on("close", () => {
      clearInterval(ping);
      clients.delete(res);
    });
    return;
  }
  if (url.pathname.startsWith("/api/")) {
    if (req.method !== "POST") return json(res, 405, { error: "use POST" });
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return json(res, 401, { error: "access token missing or wrong" });
    const cmd = url.pathname.slice(5);
    let body = "";
    for await (const chunk of req) body += chunk;
    const f = commands[cmd];
    if (!f) return json(res, 404, { error: `unknown command ${cmd}` });
    try {
      const result = await f(body ? JSON.parse(body) : {});
      return json(res, 200, result ?? null);
    } catch (e) {
      return json(res, e.status ?? 500, { error: e.message });
    }
  }
  // Static files of the production build.
  const rel = normalize(decodeURIComponent(url.pathname)).replace(/^(\.\.[/\\])+/, "");
  const file = join(DIST, rel === "/" ? "index.html" : rel);
  try {
    const data = await readFile(file);
    res.writeHead(200, { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream", "Content-Security-Policy": CSP });
    res.end(data);
  } catch {
    res.writeHead(404, { "Content-Type": "text/plain" });
    res.end("not found (run `npm run build` first)");
  }
});

server.listen(port, "127.0.0.1", () => {
  console.log(`fake EVOLVE server: http://127.0.0.1:${port}/#token=${TOKEN}`);
});
