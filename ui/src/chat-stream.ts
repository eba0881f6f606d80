/** The chat screen's model of a streamed answer: pure functions, tested without a DOM. */
import type { ChatEvent, ChatMessage, Variant } from "./api";

export interface StepView {
  step: number;
  text: string;
  done: boolean;
  score: number | null;
}

export interface VariantView {
  variant: Variant;
  steps: StepView[];
  done: boolean;
  error: string | null;
  tps: number | null;
}

export interface Turn {
  key: number;
  user: string;
  requestId: string | null;
  variants: VariantView[];
  /** Still receiving tokens. */
  live: boolean;
}

/** Applies one streamed chat event to a turn (pure: returns a new turn). */
export function applyChatEvent(turn: Turn, ev: ChatEvent): Turn {
  const variants = turn.variants.map((v) => ({ ...v, steps: v.steps.map((s) => ({ ...s })) }));
  let v = variants.find((x) => x.variant === ev.variant);
  if (!v) {
    v = { variant: ev.variant, steps: [], done: false, error: null, tps: null };
    variants.push(v);
    variants.sort((a, b) => (a.variant === "base" ? -1 : 1) - (b.variant === "base" ? -1 : 1));
  }
  if (ev.tokens_per_second != null) v.tps = ev.tokens_per_second;
  const stepOf = () => {
    let s = v!.steps.find((x) => x.step === ev.step);
    if (!s) {
      s = { step: ev.step, text: "", done: false, score: null };
      v!.steps.push(s);
      v!.steps.sort((a, b) => a.step - b.step);
    }
    return s;
  };
  switch (ev.kind) {
    case "token":
      stepOf().text += ev.text;
      break;
    case "step_done": {
      const s = stepOf();
      s.text = ev.text;
      s.done = true;
      s.score = ev.score;
      break;
    }
    case "done":
      v.done = true;
      break;
    case "error":
      v.done = true;
      v.error = ev.error ?? "generation failed";
      break;
  }
  const live = variants.some((x) => !x.done);
  return { ...turn, variants, live };
}

/** Groups a stored chat into turns: a user message, then the assistant's steps per variant. */
export function turnsFromHistory(history: ChatMessage[]): Turn[] {
  const turns: Turn[] = [];
  let key = 0;
  for (const m of history) {
    if (m.role === "user") {
      turns.push({ key: key++, user: m.text, requestId: null, variants: [], live: false });
      continue;
    }
    if (!turns.length) turns.push({ key: key++, user: "", requestId: null, variants: [], live: false });
    const t = turns[turns.length - 1];
    let v = t.variants.find((x) => x.variant === m.variant);
    if (!v) {
      v = { variant: m.variant, steps: [], done: true, error: null, tps: null };
      t.variants.push(v);
    }
    v.steps.push({ step: m.step, text: m.text, done: true, score: m.score });
  }
  for (const t of turns) {
    t.variants.sort((a, b) => (a.variant === "base" ? -1 : 1) - (b.variant === "base" ? -1 : 1));
    for (const v of t.variants) v.steps.sort((a, b) => a.step - b.step);
  }
  return turns;
}
