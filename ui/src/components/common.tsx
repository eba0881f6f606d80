import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { call, type PathKind } from "../api";
import { transport } from "../transport";
import { errorText } from "../util";
import { Icon } from "./icons";

export function ErrorBanner({ error, onClose }: { error: string | null; onClose?: () => void }) {
  if (!error) return null;
  return (
    <div class="banner error" role="alert" data-testid="error">
      <span>{error}</span>
      {onClose && (
        <button class="ghost small" onClick={onClose} aria-label="dismiss">
          <Icon name="x" size={14} />
        </button>
      )}
    </div>
  );
}

/** A labelled control; `group` for a set of buttons (a <label> would forward clicks to the first). */
export function Field(props: { label: string; hint?: string; group?: boolean; children: ComponentChildren }) {
  const body = (
    <>
      <span class="field-label">{props.label}</span>
      {props.children}
      {props.hint && <span class="field-hint">{props.hint}</span>}
    </>
  );
  return props.group ? (
    <div class="field" role="group" aria-label={props.label}>
      {body}
    </div>
  ) : (
    <label class="field">{body}</label>
  );
}

export function NumberInput(props: {
  value: number;
  onChange: (v: number) => void;
  min?: number;
  max?: number;
  step?: number | "any";
  testid?: string;
}) {
  return (
    <input
      type="number"
      value={props.value}
      min={props.min}
      max={props.max}
      step={props.step ?? "any"}
      data-testid={props.testid}
      onInput={(e) => {
        const v = (e.currentTarget as HTMLInputElement).valueAsNumber;
        if (!Number.isNaN(v)) props.onChange(v);
      }}
    />
  );
}

/**
 * A path on the machine running the backend: a text field plus "Browse…", which opens the native
 * dialog in the desktop app. Over HTTP `pick_path` answers with an error; then only the text field
 * remains, with a note that the path is one on the server.
 */
export function PathInput(props: {
  kind: PathKind;
  value: string;
  onChange: (v: string) => void;
  placeholder?: string;
  testid?: string;
  /** Say, in the browser, that the path is one on the backend's machine. */
  hint?: boolean;
}) {
  // `evolve serve` has no file dialog (pick_path answers with an error): only the text field.
  const [noDialog, setNoDialog] = useState(() => transport().kind === "http");
  const [picking, setPicking] = useState(false);
  async function browse() {
    setPicking(true);
    try {
      const p = await call("pick_path", { kind: props.kind });
      if (p) props.onChange(p);
    } catch (e) {
      console.info("pick_path:", errorText(e));
      setNoDialog(true);
    } finally {
      setPicking(false);
    }
  }
  return (
    <div class="path-input">
      <div class="row">
        <input
          type="text"
          value={props.value}
          placeholder={props.placeholder ?? (props.kind === "folder" ? "/path/to/folder" : "/path/to/file")}
          spellcheck={false}
          data-testid={props.testid}
          onInput={(e) => props.onChange((e.currentTarget as HTMLInputElement).value)}
        />
        {!noDialog && (
          <button type="button" class="secondary" onClick={browse} disabled={picking}>
            <Icon name="folder" size={16} /> Browse…
          </button>
        )}
      </div>
      {noDialog && props.hint && <span class="field-hint">A path on the machine running EVOLVE.</span>}
    </div>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <div class="empty">{children}</div>;
}

export function Badge({ tone, children, testid }: { tone?: string; children: ComponentChildren; testid?: string }) {
  return (
    <span class={`badge ${tone ?? ""}`} data-testid={testid}>
      {children}
    </span>
  );
}

export function stateTone(state: string): string {
  switch (state) {
    case "running":
    case "approved":
      return "ok";
    case "paused":
    case "pending":
    case "edited":
      return "warn";
    case "failed":
    case "cancelled":
    case "vetoed":
      return "bad";
    case "done":
      return "info";
    default:
      return "";
  }
}
