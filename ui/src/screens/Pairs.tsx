import { useState } from "preact/hooks";
import { call, type Pair, type PairFilter, type PairKind, type Review } from "../api";
import { Badge, Empty, ErrorBanner, stateTone } from "../components/common";
import { Icon } from "../components/icons";
import { cls, errorText, fmtNum, useLoad } from "../util";

const REVIEWS: Review[] = ["pending", "approved", "vetoed", "edited"];

function PairRow({ pair, onChange }: { pair: Pair; onChange: (p: Pair) => void }) {
  const [editing, setEditing] = useState(false);
  const [text, setText] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const chosenText = pair.edited_chosen_text ?? pair.chosen.text;

  async function review(action: "approve" | "veto" | "edit" | "reset", t: string | null = null) {
    setBusy(true);
    setError(null);
    try {
      onChange(await call("pair_review", { pair_id: pair.id, action, text: t }));
      setEditing(false);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  }

  return (
    <article class={cls("pair card", `review-${pair.review}`)} data-testid={`pair-${pair.id}`} data-review={pair.review}>
      <header class="pair-head">
        <Badge tone={pair.kind === "direct" ? "" : "accent"}>{pair.kind}</Badge>
        <span class="muted small">round {pair.round}</span>
        <span class="muted small num">margin {fmtNum(pair.margin, 3)}</span>
        <span class="grow" />
        <Badge tone={stateTone(pair.review)} testid="review-state">
          {pair.review}
        </Badge>
      </header>
      <details class="prompt">
        <summary>
          <span class="prompt-text">{pair.prompt}</span>
        </summary>
        <div class="prompt-full">{pair.prompt}</div>
      </details>
      <div class="pair-sides">
        <div class="side chosen">
          <div class="side-head">
            <span>
              <Icon name="check" size={14} /> Chosen{pair.edited_chosen_text !== null && " (edited)"}
            </span>
            <span class="num">score {fmtNum(pair.chosen.score, 3)}</span>
          </div>
          {editing ? (
            <textarea
              class="edit-area"
              value={text}
              rows={6}
              data-testid="edit-text"
              onInput={(e) => setText((e.currentTarget as HTMLTextAreaElement).value)}
            />
          ) : (
            <div class="side-text">{chosenText}</div>
          )}
        </div>
        <div class="side rejected">
          <div class="side-head">
            <span>
              <Icon name="x" size={14} /> Rejected
            </span>
            <span class="num">score {fmtNum(pair.rejected.score, 3)}</span>
          </div>
          <div class="side-text">{pair.rejected.text}</div>
        </div>
      </div>
      <ErrorBanner error={error} onClose={() => setError(null)} />
      <footer class="pair-actions">
        {editing ? (
          <>
            <button class="primary small" disabled={busy || !text.trim()} onClick={() => review("edit", text)} data-testid="edit-save">
              Save edit
            </button>
            <button class="ghost small" onClick={() => setEditing(false)}>
              Cancel
            </button>
          </>
        ) : (
          <>
            <button
              class={cls("small", pair.review === "approved" ? "primary" : "secondary")}
              disabled={busy}
              onClick={() => review("approve")}
              data-testid="approve"
            >
              <Icon name="check" size={14} /> Approve
            </button>
            <button
              class={cls("small", pair.review === "vetoed" ? "danger" : "secondary")}
              disabled={busy}
              onClick={() => review("veto")}
              data-testid="veto"
            >
              <Icon name="x" size={14} /> Veto
            </button>
            <button
              class="secondary small"
              disabled={busy}
              onClick={() => {
                setText(chosenText);
                setEditing(true);
              }}
              data-testid="edit"
            >
              <Icon name="edit" size={14} /> Edit chosen
            </button>
            {pair.review !== "pending" && (
              <button class="ghost small" disabled={busy} onClick={() => review("reset")} data-testid="reset">
                <Icon name="undo" size={14} /> Reset
              </button>
            )}
          </>
        )}
      </footer>
    </article>
  );
}

export function Pairs() {
  const [filter, setFilter] = useState<PairFilter>({ run_id: null, round: null, kind: null, min_margin: null, review: null });
  const runs = useLoad(() => call("runs_list"));
  const pairs = useLoad(() => call("pairs_list", filter), [JSON.stringify(filter)]);
  const set = (patch: Partial<PairFilter>) => setFilter((f) => ({ ...f, ...patch }));
  const num = (s: string) => (s.trim() === "" || Number.isNaN(Number(s)) ? null : Number(s));
  const list = pairs.data ?? [];
  const counts = REVIEWS.map((r) => [r, list.filter((p) => p.review === r).length] as const);

  return (
    <div class="page">
      <header class="page-head">
        <h1>Preference pairs</h1>
        <span class="muted small">{counts.map(([r, n]) => `${n} ${r}`).join(" · ")}</span>
      </header>
      <div class="filters card" data-testid="pair-filters">
        <label>
          <span>Run</span>
          <select value={filter.run_id ?? ""} onChange={(e) => set({ run_id: num((e.currentTarget as HTMLSelectElement).value) })} data-testid="filter-run">
            <option value="">all runs</option>
            {(runs.data ?? []).map((r) => (
              <option key={r.id} value={r.id}>
                {r.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>Round</span>
          <input type="number" min={0} step={1} value={filter.round ?? ""} placeholder="all" onInput={(e) => set({ round: num((e.currentTarget as HTMLInputElement).value) })} data-testid="filter-round" />
        </label>
        <label>
          <span>Kind</span>
          <select value={filter.kind ?? ""} onChange={(e) => set({ kind: ((e.currentTarget as HTMLSelectElement).value || null) as PairKind | null })} data-testid="filter-kind">
            <option value="">all</option>
            <option value="direct">direct</option>
            <option value="refine">refine</option>
            <option value="keep">keep</option>
          </select>
        </label>
        <label>
          <span>Min margin</span>
          <input type="number" min={0} step={0.05} value={filter.min_margin ?? ""} placeholder="0" onInput={(e) => set({ min_margin: num((e.currentTarget as HTMLInputElement).value) })} data-testid="filter-margin" />
        </label>
        <label>
          <span>Review</span>
          <select value={filter.review ?? ""} onChange={(e) => set({ review: ((e.currentTarget as HTMLSelectElement).value || null) as Review | null })} data-testid="filter-review">
            <option value="">any</option>
            {REVIEWS.map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ErrorBanner error={pairs.error ?? runs.error} />
      {pairs.data && list.length === 0 && <Empty>No pairs match. Pairs appear once a run has scored its first round.</Empty>}
      <div class="pairs">
        {list.map((p) => (
          <PairRow key={p.id} pair={p} onChange={(n) => pairs.set((old) => (old ?? []).map((x) => (x.id === n.id ? n : x)))} />
        ))}
      </div>
    </div>
  );
}
