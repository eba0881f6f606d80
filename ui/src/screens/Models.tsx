import { useState } from "preact/hooks";
import { call, EXPORT_FORMATS, type Adapter, type AdapterCheck, type ExportFormat, type Exported, type FoundModel, type Model } from "../api";
import { Badge, Empty, ErrorBanner, PathInput } from "../components/common";
import { Icon } from "../components/icons";
import { errorText, fmtBytes, fmtDate, fmtNum, fmtParams, modelName, useLoad } from "../util";

function AddModel({ onAdded }: { onAdded: () => void }) {
  const [path, setPath] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  async function add() {
    setBusy(true);
    setError(null);
    try {
      await call("models_add", { path: path.trim() });
      setPath("");
      onAdded();
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  }
  return (
    <div class="add-model">
      <div class="row wrap">
        <PathInput kind="model" value={path} onChange={setPath} placeholder="/path/to/model.gguf" testid="model-path" hint />
        <button class="primary" disabled={busy || !path.trim()} onClick={add} data-testid="model-add">
          <Icon name="plus" size={16} /> Add model
        </button>
      </div>
      <ErrorBanner error={error} onClose={() => setError(null)} />
    </div>
  );
}

const SOURCES: Record<FoundModel["source"], string> = {
  lm_studio: "LM Studio",
  ollama: "Ollama",
  llama_cpp: "llama.cpp cache",
  hugging_face: "Hugging Face cache",
  folder: "folder",
};

/** The GGUF models already on this machine (LM Studio, Ollama, caches, Settings' folders). */
function Discovered({ onAdded }: { onAdded: () => void }) {
  const found = useLoad(() => call("models_discover"));
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  async function register(m: FoundModel) {
    setBusy(m.path);
    setError(null);
    try {
      await call("models_add", { path: m.path, name: m.name });
      await found.reload();
      onAdded();
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(null);
    }
  }
  const list = found.data ?? [];
  return (
    <div class="discovered" data-testid="discovered">
      <div class="row">
        <h3 class="grow">On this machine</h3>
        <button class="ghost" disabled={found.loading} onClick={() => void found.reload()} data-testid="discover-refresh">
          Search again
        </button>
      </div>
      <p class="muted small">
        LM Studio's and Ollama's models, the llama.cpp and Hugging Face caches, and the folders of Settings. Registering records the file's path; nothing is copied.
      </p>
      <ErrorBanner error={error ?? found.error} onClose={() => setError(null)} />
      {found.data && list.length === 0 && <Empty>No GGUF models found. Add a folder in Settings, or give a path above.</Empty>}
      {list.length > 0 && (
        <table class="table" data-testid="discovered-table">
          <thead>
            <tr>
              <th>Source</th>
              <th>Name</th>
              <th>Architecture</th>
              <th>Quant</th>
              <th class="num">Size</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {list.map((m) => (
              <tr key={`${m.source}:${m.name}:${m.path}`} data-testid="discovered-row" class={m.problem ? "muted" : ""}>
                <td>
                  <Badge tone={m.source === "ollama" || m.source === "lm_studio" ? "accent" : ""}>{SOURCES[m.source]}</Badge>
                </td>
                <td>
                  <div class="mono">{m.name}</div>
                  {m.problem && (
                    <div class="bad-text small" data-testid="discovered-problem">
                      {m.problem}
                    </div>
                  )}
                </td>
                <td>{m.architecture ?? "–"}</td>
                <td>{m.quantization ?? "–"}</td>
                <td class="num">{m.size === null ? "–" : fmtBytes(m.size)}</td>
                <td>
                  {m.registered_id !== null ? (
                    <Badge tone="ok">registered</Badge>
                  ) : m.trainable ? (
                    <button class="secondary" disabled={busy !== null} onClick={() => void register(m)} data-testid="discovered-register" title={m.path}>
                      <Icon name="plus" size={16} /> {busy === m.path ? "Registering…" : "Register"}
                    </button>
                  ) : (
                    <Badge tone="bad">not usable</Badge>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

/** Prompt formats offered besides the model's current one (any llama.cpp built-in works on the CLI). */
const FORMATS = ["plain", "template", "chatml", "llama3", "gemma", "phi3", "mistral-v7"];

/** How conversations are formatted for the model; changing it applies to chat, runs and exports. */
function PromptFormatChoice({ m, onChanged }: { m: Model; onChanged: () => void }) {
  const [error, setError] = useState<string | null>(null);
  const hasTemplate = typeof m.metadata?.chat_template === "string";
  const options = [...new Set([m.prompt_format, ...FORMATS])].filter((f) => f !== "template" || hasTemplate);
  async function choose(value: string) {
    setError(null);
    try {
      await call("models_set_format", { id: m.id, format: value === "default" ? null : value });
      onChanged();
    } catch (e) {
      setError(errorText(e));
    }
  }
  return (
    <>
      <select value={m.prompt_format} onChange={(e) => void choose((e.target as HTMLSelectElement).value)} data-testid={`model-format-${m.id}`}>
        {options.map((f) => (
          <option key={f} value={f}>
            {f}
          </option>
        ))}
        {m.prompt_format_chosen && <option value="default">default for the file</option>}
      </select>
      {!m.prompt_format_chosen && m.prompt_format === "plain" && <div class="muted small">no chat template: looks like a base model</div>}
      <ErrorBanner error={error} onClose={() => setError(null)} />
    </>
  );
}

function ModelCard({ m, onChanged }: { m: Model; onChanged: () => void }) {
  const meta = Object.entries(m.metadata ?? {}).filter(([, v]) => typeof v !== "object" || v === null);
  return (
    <article class="card model" data-testid={`model-${m.id}`}>
      <header class="row">
        <Icon name="models" />
        <div class="grow">
          <div class="title">{modelName(m)}</div>
          <div class="muted small mono ellipsis" title={m.path}>
            {m.path}
          </div>
        </div>
        {m.quantization && <Badge tone="accent">{m.quantization}</Badge>}
      </header>
      <dl class="facts">
        <div>
          <dt>Architecture</dt>
          <dd>{m.architecture ?? "–"}</dd>
        </div>
        <div>
          <dt>Parameters</dt>
          <dd>{fmtParams(m.parameter_count)}</dd>
        </div>
        <div>
          <dt>Context</dt>
          <dd>{m.context_length?.toLocaleString() ?? "–"}</dd>
        </div>
        <div>
          <dt>Size</dt>
          <dd>{fmtBytes(m.file_size)}</dd>
        </div>
        <div>
          <dt>Prompt format</dt>
          <dd>
            <PromptFormatChoice m={m} onChanged={onChanged} />
          </dd>
        </div>
      </dl>
      {meta.length > 0 && (
        <details class="subtle">
          <summary>GGUF metadata ({meta.length})</summary>
          <table class="table kv">
            <tbody>
              {meta.map(([k, v]) => (
                <tr key={k}>
                  <td class="mono">{k}</td>
                  <td class="mono">{String(v)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <div class="muted small mono">sha256 {m.sha256}</div>
        </details>
      )}
    </article>
  );
}

function AdapterCard({ a, exportDir }: { a: Adapter; exportDir: string }) {
  const [format, setFormat] = useState<ExportFormat>("gguf_lora");
  const [dir, setDir] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [exported, setExported] = useState<Exported | null>(null);
  const [check, setCheck] = useState<AdapterCheck | null>(null);
  const [error, setError] = useState<string | null>(null);
  const folder = dir ?? exportDir;

  async function doExport() {
    setBusy(true);
    setError(null);
    setExported(null);
    try {
      // LM Studio's export goes into its own models folder, found by the backend.
      const args = { adapter_id: a.id, format, dir: format === "lm_studio" ? "" : folder.trim() };
      try {
        setExported(await call("adapter_export", args));
      } catch (e) {
        // An export of the same name is never replaced silently: ask first.
        if (!errorText(e).includes("already exists") || !window.confirm(`${errorText(e)}\n\nOverwrite it?`)) throw e;
        setExported(await call("adapter_export", { ...args, overwrite: true }));
      }
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  }
  async function doCheck() {
    setBusy(true);
    setError(null);
    try {
      setCheck(await call("adapter_check", { adapter_id: a.id }));
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <article class="card adapter" data-testid={`adapter-${a.id}`}>
      <header class="row wrap">
        <div class="grow">
          <div class="title">
            Adapter {a.id}
            {a.run_id !== null && (
              <>
                {" "}
                · <a href={`#/runs/${a.run_id}`}>run {a.run_id}</a>
              </>
            )}
            {a.round !== null && ` · round ${a.round}`}
          </div>
          <div class="muted small">
            {a.format} · rank {a.rank} · alpha {a.alpha} · {fmtDate(a.created_at)}
          </div>
        </div>
        {check && (
          <Badge tone={check.applied ? "ok" : "bad"} testid="applied-badge">
            {check.applied ? "applied" : "not applied"}
          </Badge>
        )}
        <button class="secondary" disabled={busy} onClick={doCheck} data-testid="check-applied" title="generate with and without the adapter and compare the logits">
          <Icon name="check" size={16} /> Check applied
        </button>
      </header>
      {check && (
        <details class="subtle" data-testid="check-details">
          <summary>max logit difference {fmtNum(check.max_logit_diff, 4)}</summary>
          <div class="pair-sides">
            <div class="side">
              <div class="side-head">base</div>
              <div class="side-text">{check.base_text}</div>
            </div>
            <div class="side">
              <div class="side-head">with adapter</div>
              <div class="side-text">{check.adapter_text}</div>
            </div>
          </div>
        </details>
      )}
      <div class="export row wrap">
        <select value={format} onChange={(e) => setFormat((e.currentTarget as HTMLSelectElement).value as ExportFormat)} data-testid="export-format" title="export format">
          {EXPORT_FORMATS.map((f) => (
            <option key={f.value} value={f.value}>
              {f.label}
            </option>
          ))}
        </select>
        {format === "lm_studio" ? (
          <span class="muted small grow">into LM Studio's models folder (evolve-studio/…)</span>
        ) : (
          <PathInput kind="folder" value={folder} onChange={setDir} testid="export-dir" />
        )}
        <button class="primary" disabled={busy || (format !== "lm_studio" && !folder.trim())} onClick={doExport} data-testid="export">
          <Icon name="download" size={16} /> Export
        </button>
      </div>
      {exported && (
        <p class="ok-text small" data-testid="export-result">
          Exported to <span class="mono">{exported.path}</span>
          {exported.note && (
            <>
              <br />
              <span class="mono" data-testid="export-note">
                {exported.note}
              </span>
            </>
          )}
        </p>
      )}
      <ErrorBanner error={error} onClose={() => setError(null)} />
    </article>
  );
}

export function Models({ onChange }: { onChange: () => void }) {
  const models = useLoad(() => call("models_list"));
  const adapters = useLoad(() => call("adapters_list"));
  const settings = useLoad(() => call("settings_get"));
  const list = adapters.data ?? [];
  const byModel = new Map<number, Adapter[]>();
  for (const a of list) byModel.set(a.base_model_id, [...(byModel.get(a.base_model_id) ?? []), a]);
  const names = new Map((models.data ?? []).map((m) => [m.id, modelName(m)]));

  return (
    <div class="page">
      <header class="page-head">
        <h1>Models & adapters</h1>
      </header>
      <section>
        <h2>Models</h2>
        <AddModel
          onAdded={() => {
            void models.reload();
            onChange();
          }}
        />
        <ErrorBanner error={models.error} />
        <div class="model-grid">
          {(models.data ?? []).map((m) => (
            <ModelCard key={m.id} m={m} onChanged={() => void models.reload()} />
          ))}
        </div>
        <Discovered
          onAdded={() => {
            void models.reload();
            onChange();
          }}
        />
      </section>
      <section>
        <h2>Adapters</h2>
        <ErrorBanner error={adapters.error} />
        {adapters.data && list.length === 0 && <Empty>No adapters yet: every finished training round of a run adds one.</Empty>}
        {[...byModel.entries()].map(([modelId, as]) => (
          <div key={modelId} class="adapter-group">
            <h3 class="muted">on {names.get(modelId) ?? `model ${modelId}`}</h3>
            {as.map((a) => (
              <AdapterCard key={a.id} a={a} exportDir={settings.data?.export_dir ?? ""} />
            ))}
          </div>
        ))}
      </section>
    </div>
  );
}
