import { useEffect, useState } from "preact/hooks";
import { call, type Settings as S } from "../api";
import { ErrorBanner, Field, NumberInput, PathInput } from "../components/common";
import { errorText, useLoad } from "../util";

export function Settings() {
  const loaded = useLoad(() => call("settings_get"));
  const [s, setS] = useState<S | null>(null);
  const [busy, setBusy] = useState(false);
  const [saved, setSaved] = useState(false);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (loaded.data) setS(structuredClone(loaded.data));
  }, [loaded.data]);
  const up = (f: (n: S) => void) =>
    setS((old) => {
      if (!old) return old;
      const n = structuredClone(old);
      f(n);
      return n;
    });
  const dirty = !!s && !!loaded.data && JSON.stringify(s) !== JSON.stringify(loaded.data);

  async function save() {
    if (!s) return;
    setBusy(true);
    setError(null);
    setSaved(false);
    try {
      loaded.set(await call("settings_set", { settings: s }));
      setSaved(true);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div class="page narrow">
      <header class="page-head">
        <h1>Settings</h1>
      </header>
      <ErrorBanner error={error ?? loaded.error} onClose={() => setError(null)} />
      {s && (
        <div class="card form" data-testid="settings">
          <Field label="Data directory" hint="Models, runs, adapters and the database live here. Set with --data-dir or EVOLVE_DATA_DIR.">
            <input type="text" value={s.data_dir} readOnly class="mono" data-testid="settings-data-dir" />
          </Field>
          <div class="grid3">
            <Field label="CPU threads">
              <NumberInput value={s.threads} min={1} step={1} onChange={(v) => up((n) => (n.threads = v))} testid="settings-threads" />
            </Field>
            <Field label="GPU layers" hint="0 = CPU only">
              <NumberInput value={s.gpu_layers} min={0} step={1} onChange={(v) => up((n) => (n.gpu_layers = v))} testid="settings-gpu-layers" />
            </Field>
          </div>
          <Field label="Export folder">
            <PathInput kind="folder" value={s.export_dir} onChange={(v) => up((n) => (n.export_dir = v))} testid="settings-export-dir" hint />
          </Field>
          <Field label="Model folders" hint="One folder per line, searched for GGUF files besides LM Studio's, Ollama's and the llama.cpp and Hugging Face caches.">
            <textarea
              rows={3}
              class="mono"
              value={s.model_folders.join("\n")}
              onInput={(e) => {
                const lines = (e.currentTarget as HTMLTextAreaElement).value.split("\n");
                up((n) => (n.model_folders = lines));
              }}
              data-testid="settings-model-folders"
            />
          </Field>
          <h2>Default sampler</h2>
          <div class="grid3">
            <Field label="Temperature">
              <NumberInput value={s.sampler.temperature} min={0} step={0.05} onChange={(v) => up((n) => (n.sampler.temperature = v))} />
            </Field>
            <Field label="Top p">
              <NumberInput value={s.sampler.top_p} min={0} max={1} step={0.01} onChange={(v) => up((n) => (n.sampler.top_p = v))} />
            </Field>
            <Field label="Top k">
              <NumberInput value={s.sampler.top_k} min={0} step={1} onChange={(v) => up((n) => (n.sampler.top_k = v))} />
            </Field>
            <Field label="Min p">
              <NumberInput value={s.sampler.min_p} min={0} max={1} step={0.01} onChange={(v) => up((n) => (n.sampler.min_p = v))} />
            </Field>
            <Field label="Repeat penalty">
              <NumberInput value={s.sampler.repeat_penalty} min={0} step={0.01} onChange={(v) => up((n) => (n.sampler.repeat_penalty = v))} />
            </Field>
            <Field label="Max tokens">
              <NumberInput value={s.sampler.max_tokens} min={1} step={1} onChange={(v) => up((n) => (n.sampler.max_tokens = v))} />
            </Field>
          </div>
          <div class="row">
            <button class="primary" disabled={busy || !dirty} onClick={save} data-testid="settings-save">
              Save
            </button>
            <button class="ghost" disabled={busy || !dirty} onClick={() => loaded.data && setS(structuredClone(loaded.data))}>
              Revert
            </button>
            {saved && !dirty && <span class="ok-text small">Saved.</span>}
          </div>
        </div>
      )}
    </div>
  );
}
