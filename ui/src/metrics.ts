/** Training metrics as the run page plots them: pure functions, tested without a DOM. */
import type { MetricRecord } from "./api";

/** Adds records, replacing any with the same global step, kept sorted by global step. */
export function mergeMetrics(old: MetricRecord[], add: MetricRecord[]): MetricRecord[] {
  if (!add.length) return old;
  const byStep = new Map(old.map((r) => [r.global_step, r]));
  for (const r of add) byStep.set(r.global_step, r);
  return [...byStep.values()].sort((a, b) => a.global_step - b.global_step);
}

/** x = global steps, one series per metric name, and the global steps where a new round starts. */
export function chartData(metrics: MetricRecord[]) {
  const x = metrics.map((m) => m.global_step);
  const rounds: number[] = [];
  for (let i = 1; i < metrics.length; i++) if (metrics[i].round !== metrics[i - 1].round) rounds.push(metrics[i].global_step);
  const get = (name: string) => metrics.map((m) => (name in m.metrics ? m.metrics[name] : null));
  return { x, rounds, get };
}


/** Axis and legend numbers: tiny values (learning rates) in exponent form instead of "0". */
export function fmtTick(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(1);
  return String(Number(v.toPrecision(4)));
}
