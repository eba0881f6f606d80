import { useEffect, useMemo, useState } from "preact/hooks";
import {
  call,
  METRICS,
  SCORERS,
  type MetricRecord,
  type Model,
  type Progress,
  type RunConfig,
  type RunStatus,
  type PairedComparison,
  type ScoreRow,
  type Scorer,
} from "../api";
import { Chart } from "../components/Chart";
import { Badge, Empty, ErrorBanner, Field, NumberInput, PathInput, stateTone } from "../components/common";
import { Icon } from "../components/icons";
import { go } from "../route";
import { chartData, mergeMetrics } from "../metrics";
import { cls, errorText, fmtDate, fmtDuration, fmtNum, modelName, useEvent, useLoad } from "../util";

export function Runs({ sub, models }: { sub: string[]; models: Model[] }) {
  if (sub[0] === "new") return <Wizard models={models} />;
  const id = Number(sub[0]);
  if (sub[0] && Number.isInteger(id)) return <RunPage runId={id} models={models} />;
  return <RunList models={models} />;
}

function RunList({ models }: { models: Model[] }) {
  const runs = useLoad(() => call("runs_list"));
  useEvent("run_state", () => void runs.reload());
  const byId = new Map(models.map((m) => [m.id, m]));
  return (
    <div class="page">
      <header class="page-head">
        <h1>Runs</h1>
        <button class="primary" onClick={() => go("runs/new")} data-testid="run-new">
          <Icon name="plus" size={16} /> New run
        </button>
      </header>
      <ErrorBanner error={runs.error} />
      {runs.data?.length === 0 && (
        <Empty>
          No runs yet. A run samples answers, lets the model refine them, turns the scores into preference pairs and
          trains a LoRA adapter on them, round after round.
        </Empty>
      )}
      <div class="list">
        {(runs.data ?? []).map((r) => (
          <a key={r.id} class="list-item card" href={`#/runs/${r.id}`} data-testid={`run-${r.id}`}>
            <div class="grow">
              <div class="title">{r.name}</div>
              <div class="muted small">
                {byId.get(r.model_id) ? modelName(byId.get(r.model_id)!) : `model ${r.model_id}`} · data set {r.dataset_id} ·{" "}
                {fmtDate(r.created_at)}
              </div>
            </div>
            <Badge tone={stateTone(r.state)}>{r.state}</Badge>
          </a>
        ))}
      </div>
    </div>
  );
}

/* ------------------------------------------------------------------ wizard */

const STEPS = ["Model & data", "Method", "Training", "Review"];

function Wizard({ models }: { models: Model[] }) {
  const datasets = useLoad(() => call("datasets_list"));
  const [step, setStep] = useState(0);
  const [name, setName] = useState(() => `run ${new Date().toISOString().slice(0, 16).replace("T", " ")}`);
  const [modelId, setModelId] = useState(models[0]?.id ?? 0);
  // Each model has its own defaults (the built-in one its task settings): the same a run
  // started with `evolve run start` on that model gets.
  const defaults = useLoad(() => call("run_defaults", modelId ? { model_id: modelId } : {}), [modelId]);
  const [datasetId, setDatasetId] = useState<number | null>(null);
  const [config, setConfig] = useState<RunConfig | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (defaults.data) setConfig(structuredClone(defaults.data));
  }, [defaults.data]);
  useEffect(() => {
    if (datasetId === null && datasets.data?.length) setDatasetId(datasets.data[0].id);
  }, [datasets.data]);

  const setC = (f: (c: RunConfig) => void) =>
    setConfig((c) => {
      if (!c) return c;
      const n = structuredClone(c);
      f(n);
      return n;
    });

  const canNext = step === 0 ? !!modelId && datasetId !== null && name.trim() !== "" : !!config;

  async function start() {
    if (!config || datasetId === null) return;
    setBusy(true);
    setError(null);
    try {
      const { run_id } = await call("run_start", { name: name.trim(), model_id: modelId, dataset_id: datasetId, config });
      go(`runs/${run_id}`);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  }

  const model = models.find((m) => m.id === modelId);
  const dataset = datasets.data?.find((d) => d.id === datasetId);

  return (
    <div class="page narrow" data-testid="run-wizard">
      <header class="page-head">
        <h1>New run</h1>
        <button class="ghost" onClick={() => go("runs")}>
          Cancel
        </button>
      </header>
      <ol class="stepper">
        {STEPS.map((s, i) => (
          <li key={s} class={cls(i === step && "current", i < step && "past")}>
            <button class="ghost" disabled={i > step && !canNext} onClick={() => i <= step && setStep(i)}>
              <span class="dot">{i + 1}</span> <span class="label">{s}</span>
            </button>
          </li>
        ))}
      </ol>
      <ErrorBanner error={error ?? defaults.error ?? datasets.error} onClose={() => setError(null)} />
      <div class="card form">
        {step === 0 && (
          <>
            <Field label="Run name">
              <input type="text" value={name} onInput={(e) => setName((e.currentTarget as HTMLInputElement).value)} data-testid="run-name" />
            </Field>
            <Field label="Model">
              <select value={modelId} onChange={(e) => setModelId(Number((e.currentTarget as HTMLSelectElement).value))} data-testid="run-model">
                {models.map((m) => (
                  <option key={m.id} value={m.id}>
                    {modelName(m)} {m.quantization ? `(${m.quantization})` : ""}
                  </option>
                ))}
              </select>
            </Field>
            <Field label="Data set" hint={dataset ? `${dataset.prompts} prompts: ${dataset.train} train, ${dataset.eval} eval` : undefined}>
              <select
                value={datasetId ?? ""}
                onChange={(e) => setDatasetId(Number((e.currentTarget as HTMLSelectElement).value))}
                data-testid="run-dataset"
                disabled={!datasets.data?.length}
              >
                {datasets.data?.length === 0 && <option value="">no data set yet: import one below</option>}
                {(datasets.data ?? []).map((d) => (
                  <option key={d.id} value={d.id}>
                    {d.name} · {d.format} · {d.prompts} prompts
                  </option>
                ))}
              </select>
            </Field>
            <DatasetImport
              onImported={async (id) => {
                await datasets.reload();
                setDatasetId(id);
              }}
            />
          </>
        )}
        {step === 1 && config && (
          <>
            <Field group label="Scorer" hint="How answers are scored: a number in the answer, an exact match, a pattern, or valid JSON.">
              <div class="segmented" role="group">
                {SCORERS.map((s) => (
                  <button key={s} class={cls(config.scorer === s && "on")} onClick={() => setC((c) => (c.scorer = s as Scorer))} data-testid={`scorer-${s}`}>
                    {s}
                  </button>
                ))}
              </div>
            </Field>
            <div class="grid3">
              <Field label="Rounds">
                <NumberInput value={config.rounds} min={1} max={50} step={1} onChange={(v) => setC((c) => (c.rounds = v))} testid="run-rounds" />
              </Field>
              <Field label="Prompts per round">
                <NumberInput value={config.prompts_per_round} min={1} step={1} onChange={(v) => setC((c) => (c.prompts_per_round = v))} />
              </Field>
              <Field label="Samples per prompt (N)">
                <NumberInput value={config.samples} min={1} max={64} step={1} onChange={(v) => setC((c) => (c.samples = v))} testid="run-samples" />
              </Field>
              <Field label="Refinement steps (K)">
                <NumberInput value={config.refine_steps} min={0} max={5} step={1} onChange={(v) => setC((c) => (c.refine_steps = v))} testid="run-refine" />
              </Field>
              <Field label="Temperature">
                <NumberInput value={config.sampler.temperature} min={0} step={0.05} onChange={(v) => setC((c) => (c.sampler.temperature = v))} />
              </Field>
              <Field label="Max tokens">
                <NumberInput value={config.sampler.max_tokens} min={1} step={1} onChange={(v) => setC((c) => (c.sampler.max_tokens = v))} />
              </Field>
            </div>
          </>
        )}
        {step === 2 && config && (
          <div class="grid3">
            <Field label="LoRA rank">
              <NumberInput value={config.train.lora_rank} min={1} step={1} onChange={(v) => setC((c) => (c.train.lora_rank = v))} testid="run-rank" />
            </Field>
            <Field label="LoRA alpha">
              <NumberInput value={config.train.lora_alpha} min={0} step={1} onChange={(v) => setC((c) => (c.train.lora_alpha = v))} testid="run-alpha" />
            </Field>
            <Field label="DPO beta">
              <NumberInput value={config.train.beta} min={0} step={0.01} onChange={(v) => setC((c) => (c.train.beta = v))} testid="run-beta" />
            </Field>
            <Field label="Learning rate">
              <NumberInput value={config.train.lr} min={0} step="any" onChange={(v) => setC((c) => (c.train.lr = v))} testid="run-lr" />
            </Field>
            <Field label="λ refine" hint="weight of the refinement pairs' loss">
              <NumberInput value={config.train.lambda_refine} min={0} step={0.1} onChange={(v) => setC((c) => (c.train.lambda_refine = v))} testid="run-lambda" />
            </Field>
            <Field label="Epochs">
              <NumberInput value={config.train.epochs} min={1} step={1} onChange={(v) => setC((c) => (c.train.epochs = v))} />
            </Field>
            <Field label="Batch size">
              <NumberInput value={config.train.batch_size} min={1} step={1} onChange={(v) => setC((c) => (c.train.batch_size = v))} />
            </Field>
            <Field label="DPO reference" hint="the paper measures each round against the model that sampled it">
              <select
                value={config.train.reference}
                onChange={(e) => setC((c) => (c.train.reference = (e.currentTarget as HTMLSelectElement).value as "base" | "previous"))}
                data-testid="run-reference"
              >
                <option value="base">untrained model</option>
                <option value="previous">previous round</option>
              </select>
            </Field>
            <Field label="SFT warm-up" hint="round 0 learns the chosen answers alone; DPO from round 1">
              <input
                type="checkbox"
                checked={config.train.sft_warmup}
                onChange={(e) => setC((c) => (c.train.sft_warmup = (e.currentTarget as HTMLInputElement).checked))}
                data-testid="run-sft-warmup"
              />
            </Field>
          </div>
        )}
        {step === 3 && config && (
          <dl class="review">
            <dt>Name</dt>
            <dd>{name}</dd>
            <dt>Model</dt>
            <dd>{model ? modelName(model) : modelId}</dd>
            <dt>Data set</dt>
            <dd>{dataset ? dataset.name : datasetId}</dd>
            <dt>Method</dt>
            <dd>
              {config.rounds} rounds × {config.prompts_per_round} prompts, N = {config.samples} samples, K = {config.refine_steps} refinements,{" "}
              {config.scorer} scorer
            </dd>
            <dt>Training</dt>
            <dd>
              LoRA r = {config.train.lora_rank}, α = {config.train.lora_alpha}; DPO β = {config.train.beta}, lr = {config.train.lr}, λ refine ={" "}
              {config.train.lambda_refine}; {config.train.epochs} epochs, batch {config.train.batch_size}; reference:{" "}
              {config.train.reference === "previous" ? "previous round" : "untrained model"}
              {config.train.sft_warmup && "; SFT warm-up in round 0"}
            </dd>
          </dl>
        )}
        {!config && step > 0 && <p class="muted">loading defaults…</p>}
      </div>
      <div class="wizard-nav">
        <button class="secondary" disabled={step === 0} onClick={() => setStep(step - 1)} data-testid="wizard-back">
          Back
        </button>
        {step < STEPS.length - 1 ? (
          <button class="primary" disabled={!canNext} onClick={() => setStep(step + 1)} data-testid="wizard-next">
            Next
          </button>
        ) : (
          <button class="primary" disabled={busy || !canNext} onClick={start} data-testid="run-start">
            <Icon name="play" size={16} /> Start run
          </button>
        )}
      </div>
    </div>
  );
}

function DatasetImport({ onImported }: { onImported: (id: number) => void }) {
  const [path, setPath] = useState("");
  const [format, setFormat] = useState("");
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  async function run() {
    setBusy(true);
    setError(null);
    setResult(null);
    try {
      const r = await call("datasets_import", { path: path.trim(), format: format || null, name: null });
      const bad = r.bad_lines.length;
      setResult(
        `Imported ${r.imported} prompts` +
          (bad ? `; skipped ${bad} bad line${bad > 1 ? "s" : ""}: ${r.bad_lines.slice(0, 3).map((b) => `line ${b.line} (${b.reason})`).join(", ")}${bad > 3 ? "…" : ""}` : "."),
      );
      onImported(r.dataset_id);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  }
  return (
    <details class="subtle">
      <summary>Import a data set (JSONL or CSV)</summary>
      <div class="row wrap">
        <PathInput kind="dataset" value={path} onChange={setPath} placeholder="/path/to/prompts.jsonl" testid="dataset-path" hint />
        <select value={format} onChange={(e) => setFormat((e.currentTarget as HTMLSelectElement).value)} title="format">
          <option value="">detect format</option>
          {["gsm8k", "alpaca", "sharegpt", "ultrafeedback", "plain"].map((f) => (
            <option key={f} value={f}>
              {f}
            </option>
          ))}
        </select>
        <button class="secondary" disabled={busy || !path.trim()} onClick={run} data-testid="dataset-import">
          Import
        </button>
      </div>
      {result && <p class="ok-text small">{result}</p>}
      <ErrorBanner error={error} />
    </details>
  );
}

/* ------------------------------------------------------------------ run page */

const COLORS = {
  a: "#3b82f6",
  b: "#10b981",
  c: "#f59e0b",
  d: "#ef4444",
  e: "#8b5cf6",
};

function ProgressCard({ progress, state }: { progress: Progress | null; state: string }) {
  const frac = progress && progress.total > 0 ? Math.min(1, progress.done / progress.total) : state === "done" ? 1 : 0;
  return (
    <div class="card progress-card" data-testid="progress">
      <div class="progress-line">
        <b>{progress ? `Round ${progress.round}` : state === "done" ? "Finished" : state === "running" ? "Starting" : "Idle"}</b>
        {progress && <span class="step-name" data-testid="progress-step">{progress.state}</span>}
        <span class="grow" />
        {progress && (
          <span class="muted small num">
            {progress.done}/{progress.total}
            {progress.tokens_per_second !== null && ` · ${fmtNum(progress.tokens_per_second, 1)} tok/s`}
            {progress.eta_seconds !== null && ` · ETA ${fmtDuration(progress.eta_seconds)}`}
          </span>
        )}
      </div>
      <div
        class={cls("bar", state === "running" && "active")}
        role="progressbar"
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={Math.round(frac * 100)}
        data-testid="progress-bar"
      >
        <div class="fill" style={{ width: `${(frac * 100).toFixed(1)}%` }} />
      </div>
    </div>
  );
}

/** `+12.3 [+9.1, +15.6]` points, with the counts behind it in the tooltip. */
function Paired({ c, what }: { c: PairedComparison | null; what: string }) {
  if (!c) return <>–</>;
  const pts = (v: number) => `${v >= 0 ? "+" : ""}${(v * 100).toFixed(1)}`;
  const title =
    `${what}: ${c.wins} problems better, ${c.losses} worse of ${c.n}; ` +
    `95% CI ${pts(c.ci_low)} to ${pts(c.ci_high)} points (paired bootstrap); McNemar p = ${c.p_value.toPrecision(2)}`;
  const sig = c.ci_low > 0 ? "up" : c.ci_high < 0 ? "down" : "";
  return (
    <span class={cls("paired", sig)} title={title}>
      {pts(c.diff)} <span class="muted small">[{pts(c.ci_low)}, {pts(c.ci_high)}]</span>
    </span>
  );
}

function Scoreboard({ rows }: { rows: ScoreRow[] }) {
  const k = Math.max(0, ...rows.map((r) => r.refined.length));
  const max = Math.max(1e-9, ...rows.flatMap((r) => [r.direct, ...r.refined]).map((v) => Math.abs(v)));
  const best = (r: ScoreRow) => (r.refined.length ? r.refined[r.refined.length - 1] : r.direct);
  const sampled = rows.some((r) => r.sampled !== null && r.sampled !== undefined);
  return (
    <section class="card scoreboard" data-testid="scoreboard">
      <h2>Scoreboard</h2>
      <p class="muted small">
        Held-out score of the greedy direct answer and after each refinement step; "vs base" and "vs prev": the direct
        answers compared problem by problem with the base's and the row above's (difference in points, paired 95%
        interval; green when it excludes zero); "fixed/broke": problems the first refinement turned wrong → right and
        right → wrong.
      </p>
      {rows.length === 0 ? (
        <p class="muted">No evaluation yet.</p>
      ) : (
        <div class="scoreboard-body">
          <div class="scoreboard-table">
            <table class="table">
              <thead>
                <tr>
                  <th>model</th>
                  <th class="num">direct</th>
                  {Array.from({ length: k }, (_, i) => (
                    <th class="num" key={i}>
                      refine {i + 1}
                    </th>
                  ))}
                  {sampled && <th class="num">sampled</th>}
                  <th class="num">vs base</th>
                  <th class="num">vs prev</th>
                  {k > 0 && <th class="num">fixed/broke</th>}
                  <th class="num">win vs prev</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((r) => (
                  <tr key={r.label} data-testid={`score-${r.label.replace(/\s+/g, "-")}`}>
                    <td>{r.label}</td>
                    <td class="num">{fmtNum(r.direct, 3)}</td>
                    {Array.from({ length: k }, (_, i) => (
                      <td class="num" key={i}>
                        {fmtNum(r.refined[i], 3)}
                      </td>
                    ))}
                    {sampled && <td class="num">{fmtNum(r.sampled, 3)}</td>}
                    <td class="num" data-testid="vs-base">
                      <Paired c={r.vs_base} what="direct vs base" />
                    </td>
                    <td class="num" data-testid="vs-previous">
                      <Paired c={r.vs_previous} what="direct vs the row above" />
                    </td>
                    {k > 0 && (
                      <td class="num" data-testid="refine-fixes" title="first refinement: wrong → right / right → wrong">
                        {r.refine_steps.length ? `${r.refine_steps[0].wins}/${r.refine_steps[0].losses}` : "–"}
                      </td>
                    )}
                    <td
                      class="num"
                      data-testid="win-rate"
                      title={
                        r.win_rate
                          ? `${r.win_rate.wins} wins, ${r.win_rate.ties} ties, ${r.win_rate.losses} losses; judged by ${r.win_rate.judge} (${r.win_rate.method})`
                          : undefined
                      }
                    >
                      {r.win_rate ? `${Math.round(r.win_rate.rate * 100)}%` : "–"}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <div class="bars" aria-label="direct and refined score per round">
            {rows.map((r) => (
              <div class="bar-row" key={r.label}>
                <span class="bar-label">{r.label}</span>
                <div class="bar-pair">
                  <div class="hbar direct" style={{ width: `${(Math.abs(r.direct) / max) * 100}%` }} title={`direct ${fmtNum(r.direct, 3)}`} />
                  <div class="hbar refined" style={{ width: `${(Math.abs(best(r)) / max) * 100}%` }} title={`refined ${fmtNum(best(r), 3)}`} />
                </div>
              </div>
            ))}
            <div class="legend small">
              <span class="swatch direct" /> direct <span class="swatch refined" /> after last refinement
            </div>
          </div>
        </div>
      )}
    </section>
  );
}

function RunPage({ runId, models }: { runId: number; models: Model[] }) {
  const status = useLoad(() => call("run_status", { run_id: runId }), [runId]);
  const [metrics, setMetrics] = useState<MetricRecord[]>([]);
  const [progress, setProgress] = useState<Progress | null>(null);
  const [state, setState] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function loadMetrics(since: number) {
    try {
      const recs = await call("run_metrics", { run_id: runId, since });
      setMetrics((ms) => mergeMetrics(ms, recs));
    } catch (e) {
      setError(errorText(e));
    }
  }

  useEffect(() => {
    setMetrics([]);
    setProgress(null);
    setState(null);
    void loadMetrics(0);
  }, [runId]);
  useEffect(() => {
    if (status.data) {
      setProgress(status.data.progress);
      setState(status.data.run.state);
    }
  }, [status.data]);

  useEvent("run_progress", (p) => {
    if (p.run_id !== runId) return;
    setProgress((old) => {
      if (old && old.round !== p.round) void status.reload();
      return p;
    });
  });
  useEvent("run_metrics", (m) => {
    if (m.run_id !== runId) return;
    setMetrics((ms) => mergeMetrics(ms, [m]));
  });
  useEvent("run_state", (s) => {
    if (s.run_id !== runId) return;
    setState(s.state);
    void status.reload();
  });

  async function act(cmd: "run_pause" | "run_resume" | "run_cancel") {
    setBusy(true);
    setError(null);
    try {
      await call(cmd, { run_id: runId });
      await status.reload();
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  }

  const charts = useMemo(() => chartData(metrics), [metrics]);
  const s: RunStatus | undefined = status.data;
  const runState = state ?? s?.run.state ?? "";
  const model = models.find((m) => m.id === s?.run.model_id);

  return (
    <div class="page" data-testid="run-page">
      <header class="page-head">
        <div class="grow">
          <a href="#/runs" class="muted small">
            ← Runs
          </a>
          <h1>
            {s?.run.name ?? `Run ${runId}`} <Badge tone={stateTone(runState)} testid="run-state">{runState || "…"}</Badge>
          </h1>
          {s && (
            <div class="muted small">
              {model ? modelName(model) : `model ${s.run.model_id}`} · data set {s.run.dataset_id} · started {fmtDate(s.run.created_at)}
            </div>
          )}
        </div>
        <div class="row">
          {runState === "running" && (
            <button class="secondary" disabled={busy} onClick={() => act("run_pause")} data-testid="run-pause">
              <Icon name="pause" size={16} /> Pause
            </button>
          )}
          {(runState === "paused" || runState === "failed") && (
            <button class="primary" disabled={busy} onClick={() => act("run_resume")} data-testid="run-resume">
              <Icon name="play" size={16} /> Resume
            </button>
          )}
          {(runState === "running" || runState === "paused" || runState === "pending") && (
            <button class="danger" disabled={busy} onClick={() => act("run_cancel")} data-testid="run-cancel">
              <Icon name="x" size={16} /> Cancel
            </button>
          )}
          <a class="button secondary" href="#/pairs" title="review this run's preference pairs">
            <Icon name="pairs" size={16} /> Pairs
          </a>
        </div>
      </header>
      <ErrorBanner error={error ?? status.error} onClose={() => setError(null)} />
      <ProgressCard progress={progress} state={runState} />
      {s && s.rounds.length > 0 && (
        <div class="rounds row wrap" data-testid="rounds">
          {s.rounds.map((r) => (
            <Badge key={r.index} tone={stateTone(r.state)}>
              <span title={r.error ?? undefined}>
                round {r.index}: {r.state}
                {r.error ? ` — ${r.error}` : ""}
              </span>
            </Badge>
          ))}
        </div>
      )}
      <div class="charts">
        <Chart title="Loss" x={charts.x} series={[{ label: "loss", color: COLORS.a, values: charts.get(METRICS.loss) }]} rounds={charts.rounds} testid="chart-loss" />
        <Chart title="Reward margin" x={charts.x} series={[{ label: "margin", color: COLORS.b, values: charts.get(METRICS.margins) }]} rounds={charts.rounds} testid="chart-margins" />
        <Chart title="Reward accuracy" x={charts.x} series={[{ label: "accuracy", color: COLORS.e, values: charts.get(METRICS.accuracies) }]} rounds={charts.rounds} testid="chart-accuracies" />
        <Chart
          title="Rewards: chosen vs rejected"
          x={charts.x}
          series={[
            { label: "chosen", color: COLORS.b, values: charts.get(METRICS.chosen) },
            { label: "rejected", color: COLORS.d, values: charts.get(METRICS.rejected) },
          ]}
          rounds={charts.rounds}
          testid="chart-rewards"
        />
        <Chart title="Learning rate" x={charts.x} series={[{ label: "lr", color: COLORS.c, values: charts.get(METRICS.lr) }]} rounds={charts.rounds} testid="chart-lr" />
      </div>
      <Scoreboard rows={s?.scoreboard ?? []} />
    </div>
  );
}
