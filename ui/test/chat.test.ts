import { describe, expect, it } from "vitest";
import type { ChatEvent } from "../src/api";
import { applyChatEvent, turnsFromHistory, type Turn } from "../src/chat-stream";
import { chartData, fmtTick, mergeMetrics } from "../src/metrics";

const ev = (p: Partial<ChatEvent>): ChatEvent => ({
  request_id: "r1", variant: "base", kind: "token", step: 0, text: "", score: null, tokens_per_second: null, error: null, ...p,
});

describe("chat stream", () => {
  it("builds steps from tokens, replaces them with step_done text, and ends on done", () => {
    let t: Turn = { key: 1, user: "q", requestId: "r1", variants: [], live: true };
    for (const e of [
      ev({ text: "Each " }),
      ev({ text: "pencil", tokens_per_second: 31.5 }),
      ev({ kind: "step_done", text: "Each pencil costs $2.", score: 0 }),
      ev({ step: 1, text: "Pencils " }),
      ev({ step: 1, kind: "step_done", text: "Pencils: $8.", score: 1 }),
    ])
      t = applyChatEvent(t, e);
    expect(t.live).toBe(true);
    expect(t.variants).toHaveLength(1);
    expect(t.variants[0].tps).toBe(31.5);
    expect(t.variants[0].steps).toEqual([
      { step: 0, text: "Each pencil costs $2.", done: true, score: 0 },
      { step: 1, text: "Pencils: $8.", done: true, score: 1 },
    ]);
    t = applyChatEvent(t, ev({ kind: "done", step: 1 }));
    expect(t.live).toBe(false);
  });

  it("keeps base and adapter apart in compare mode, base first", () => {
    let t: Turn = { key: 1, user: "q", requestId: "r1", variants: [], live: true };
    t = applyChatEvent(t, ev({ variant: "adapter", text: "A" }));
    t = applyChatEvent(t, ev({ variant: "base", text: "B" }));
    t = applyChatEvent(t, ev({ variant: "base", kind: "done" }));
    expect(t.variants.map((v) => [v.variant, v.steps[0].text])).toEqual([
      ["base", "B"],
      ["adapter", "A"],
    ]);
    expect(t.live).toBe(true);
    t = applyChatEvent(t, ev({ variant: "adapter", kind: "error", error: "out of memory" }));
    expect(t.live).toBe(false);
    expect(t.variants[1].error).toBe("out of memory");
  });

  it("groups a stored chat into turns", () => {
    const turns = turnsFromHistory([
      { role: "user", text: "q1", step: 0, variant: "base", score: null },
      { role: "assistant", text: "a1 refined", step: 1, variant: "base", score: 1 },
      { role: "assistant", text: "a1", step: 0, variant: "base", score: 0 },
      { role: "user", text: "q2", step: 0, variant: "base", score: null },
      { role: "assistant", text: "b2", step: 0, variant: "adapter", score: null },
    ]);
    expect(turns.map((t) => t.user)).toEqual(["q1", "q2"]);
    expect(turns[0].variants[0].steps.map((s) => s.text)).toEqual(["a1", "a1 refined"]);
    expect(turns[1].variants[0].variant).toBe("adapter");
  });
});

describe("run metrics", () => {
  const rec = (round: number, g: number, loss: number) => ({ run_id: 1, round, step: g, global_step: g, metrics: { loss } });
  it("merges by global step and finds round boundaries", () => {
    const m = mergeMetrics([rec(0, 0, 0.7), rec(0, 1, 0.6)], [rec(0, 1, 0.65), rec(1, 2, 0.5), rec(1, 3, 0.4)]);
    expect(m.map((r) => r.metrics.loss)).toEqual([0.7, 0.65, 0.5, 0.4]);
    const c = chartData(m);
    expect(c.x).toEqual([0, 1, 2, 3]);
    expect(c.rounds).toEqual([2]);
    expect(c.get("loss")).toEqual([0.7, 0.65, 0.5, 0.4]);
    expect(c.get("grad_norm")).toEqual([null, null, null, null]);
  });
});

describe("chart ticks", () => {
  it("shows learning rates in exponent form, other values plainly", () => {
    expect(fmtTick(5e-5)).toBe("5.0e-5");
    expect(fmtTick(0)).toBe("0");
    expect(fmtTick(0.693147)).toBe("0.6931");
    expect(fmtTick(-1.5)).toBe("-1.5");
    expect(fmtTick(null)).toBe("–");
  });
});
