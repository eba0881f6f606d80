// A refinement step as a card, and one variant's column of them.
import { useState } from "preact/hooks";
import { Badge, ErrorBanner } from "../../components/common";
import { DiffView } from "../../components/DiffView";
import { type StepView, type VariantView } from "../../chat-stream";
import { cls, fmtNum } from "../../util";

function StepCard({ step, prev, scored, best }: { step: StepView; prev: StepView | undefined; scored: boolean; best: boolean }) {
  const [plain, setPlain] = useState(false);
  const refine = step.step > 0;
  return (
    <div
      class={cls("step card", refine && "refine", !step.done && "streaming", best && "best")}
      data-testid={refine ? `refine-step-${step.step}` : "answer"}
      data-done={step.done ? "true" : "false"}
    >
      <div class="step-head">
        <span class="step-title">{refine ? `Refinement ${step.step}` : "Answer"}</span>
        {scored && step.score !== null && (
          <Badge tone={best ? "ok" : ""} testid="step-score">
            score {fmtNum(step.score)}
          </Badge>
        )}
        {!step.done && <span class="pulse" aria-label="streaming" />}
        {refine && step.done && prev && (
          <button class="ghost small" onClick={() => setPlain(!plain)}>
            {plain ? "show changes" : "plain text"}
          </button>
        )}
      </div>
      {refine && step.done && prev && !plain ? (
        <DiffView before={prev.text} after={step.text} />
      ) : (
        <div class="step-text">{step.text || (step.done ? "(empty)" : "…")}</div>
      )}
    </div>
  );
}

export function VariantColumn({ v, scored, showLabel }: { v: VariantView; scored: boolean; showLabel: boolean }) {
  const scores = v.steps.filter((s) => s.done && s.score !== null).map((s) => s.score as number);
  const bestScore = scores.length > 1 ? Math.max(...scores) : null;
  return (
    <div class="variant" data-testid={`variant-${v.variant}`} data-variant={v.variant}>
      {showLabel && (
        <div class="variant-head">
          <Badge tone={v.variant === "adapter" ? "accent" : ""}>{v.variant === "base" ? "Base model" : "With adapter"}</Badge>
          {v.tps !== null && <span class="muted small">{fmtNum(v.tps, 1)} tok/s</span>}
        </div>
      )}
      {v.steps.map((s, i) => (
        <StepCard key={s.step} step={s} prev={v.steps[i - 1]} scored={scored} best={bestScore !== null && s.score === bestScore} />
      ))}
      {v.error && <ErrorBanner error={v.error} />}
    </div>
  );
}
