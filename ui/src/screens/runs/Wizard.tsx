// The new-run wizard: model and data, method, training, review.
import { useEffect, useState } from "preact/hooks";
import { call, SCORERS, type DryRun, type Model, type RunConfig, type RunPreflight, type Scorer } from "../../api";
import { ErrorBanner, Field, NumberInput, PathInput } from "../../components/common";
import { Icon } from "../../components/icons";
import { go } from "../../route";
import { cls, errorText, modelName, useLoad } from "../../util";

const STEPS = ["Model & data", "Method", "Training", "Review"];

export function Wizard({ models }: { models: Model[] }) {
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

  // Before Start, the same checks `run_start` makes (the model can be trained, the settings
  // are valid, training fits in memory) and the memory it will take.
  const [preflight, setPreflight] = useState<RunPreflight | null>(null);
  useEffect(() => {
    setPreflight(null);
    if (step !== STEPS.length - 1 || !config || !modelId) return;
    let live = true;
    call("run_preflight", { model_id: modelId, config })
      .then((p) => live && setPreflight(p))
      .catch((e) => live && setPreflight({ problem: errorText(e), base_gib: null, adapter_gib: null, working_gib: null, total_gib: null, free_gib: null }));
    return () => {
      live = false;
    };
  }, [step, modelId, config]);

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
            <Field group label="Scorer" hint="How answers are scored: the number after ####, the answer's final number however it is written (numeric_any), an exact match, a pattern, or valid JSON.">
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
            <dt>Pre-flight</dt>
            <dd data-testid="run-preflight">
              {!preflight && <span class="muted">checking…</span>}
              {preflight && preflight.total_gib !== null && (
                <span title={`base ${gib(preflight.base_gib)}, adapter and optimiser ${gib(preflight.adapter_gib)}, activations ${gib(preflight.working_gib)}`}>
                  training needs about {gib(preflight.total_gib)}
                  {preflight.free_gib !== null && ` of ${gib(preflight.free_gib)} free`}
                  {". "}
                </span>
              )}
              {preflight && (preflight.problem ? <span class="bad-text">{preflight.problem}</span> : <span class="ok-text">Ready to start.</span>)}
            </dd>
            <dt>Scorer check</dt>
            <dd>
              <DryRunCheck modelId={modelId} datasetId={datasetId} config={config} />
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
          <button class="primary" disabled={busy || !canNext || !!preflight?.problem} onClick={start} data-testid="run-start">
            <Icon name="play" size={16} /> Start run
          </button>
        )}
      </div>
    </div>
  );
}

// A few train prompts sampled as round 0 would, each answer with the scorer's verdict: shows,
// before hours of work, whether the scorer can read this model's answers and pairs will form.
function DryRunCheck({ modelId, datasetId, config }: { modelId: number; datasetId: number | null; config: RunConfig }) {
  const [result, setResult] = useState<DryRun | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => setResult(null), [modelId, datasetId, config]);
  async function check() {
    if (datasetId === null) return;
    setBusy(true);
    setError(null);
    try {
      setResult(await call("run_dry_run", { model_id: modelId, dataset_id: datasetId, config }));
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  }
  const s = result?.summary;
  return (
    <div class="dry-run" data-testid="dry-run">
      <button class="secondary" disabled={busy || datasetId === null} onClick={check} data-testid="dry-run-button">
        {busy ? "sampling…" : "Try the scorer on a few answers"}
      </button>
      {error && <p class="bad-text">{error}</p>}
      {result && s && (
        <>
          <p data-testid="dry-run-verdict" class={s.no_pairs ? "bad-text" : "ok-text"}>
            {s.with_pairs} of {s.prompts} prompts would make pairs; {Math.round(100 * (s.sampled ?? 0))}% of the sampled answers scored as right by {result.scorer}.
            {s.no_pairs && ` A round would train nothing: ${s.no_pairs}`}
          </p>
          <ul class="dry-run-answers">
            {result.rows.map((row, i) => (
              <li key={i}>
                <strong>{row.question}</strong>
                {row.reference !== null && <span class="muted"> (gold: {row.reference})</span>}
                <ul>
                  {row.samples.map((chain, k) =>
                    chain[0] ? (
                      <li key={k} data-testid="dry-run-answer">
                        <span class={chain[0].score >= 0.5 ? "ok-text" : "bad-text"}>{chain[0].score}</span> {verdictText(chain[0].details)}{" "}
                        <span class="muted">“{chain[0].text.length > 120 ? `${chain[0].text.slice(0, 120)}…` : chain[0].text}”</span>
                      </li>
                    ) : null,
                  )}
                </ul>
              </li>
            ))}
          </ul>
        </>
      )}
    </div>
  );
}

/** A verifier's evidence in a few words: "read 847 (last_number), expected 874". */
function verdictText(details: unknown): string {
  const d = details as { extracted?: string | null; expected?: string; via?: string | null } | null;
  if (!d || d.expected === undefined || d.extracted === undefined) return "";
  return `read ${d.extracted ?? "nothing"}${d.via ? ` (${d.via})` : ""}, expected ${d.expected}`;
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

/** GiB with one decimal (two below 1 GiB). */
function gib(v: number | null): string {
  if (v === null) return "?";
  return `${v < 1 ? v.toFixed(2) : v.toFixed(1)} GiB`;
}
