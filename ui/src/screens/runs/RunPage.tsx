// One run: progress, training curves, the scoreboard; pause, resume, cancel.
import { useEffect, useMemo, useState } from "preact/hooks";
import { call, METRICS, type MetricRecord, type Model, type Progress, type RunStatus } from "../../api";
import { Chart } from "../../components/Chart";
import { Badge, ErrorBanner, stateTone } from "../../components/common";
import { Icon } from "../../components/icons";
import { chartData, mergeMetrics } from "../../metrics";
import { Scoreboard } from "./Scoreboard";
import { cls, errorText, fmtDate, fmtDuration, fmtNum, modelName, useEvent, useLoad } from "../../util";

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
export function RunPage({ runId, models }: { runId: number; models: Model[] }) {
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
      {s?.rounds
        .filter((r) => r.note)
        .map((r) => (
          <p key={r.index} class="round-note" role="status" data-testid="round-note">
            <strong>Round {r.index}:</strong> {r.note}
          </p>
        ))}
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
