import { useMemo } from "preact/hooks";
import { diffStats, wordDiff } from "../diff";

/** What `after` changed from `before`: deletions struck through, insertions highlighted. */
export function DiffView({ before, after }: { before: string; after: string }) {
  const parts = useMemo(() => wordDiff(before, after), [before, after]);
  const stats = useMemo(() => diffStats(parts), [parts]);
  return (
    <div class="diff" data-testid="diff">
      <div class="diff-text">
        {parts.map((p, i) =>
          p.op === "add" ? (
            <ins key={i}>{p.text}</ins>
          ) : p.op === "del" ? (
            <del key={i}>{p.text}</del>
          ) : (
            <span key={i}>{p.text}</span>
          ),
        )}
      </div>
      <div class="diff-stats" data-testid="diff-stats">
        {stats.added === 0 && stats.removed === 0 ? (
          "no change"
        ) : (
          <>
            <span class="plus">+{stats.added}</span> <span class="minus">−{stats.removed}</span> words
          </>
        )}
      </div>
    </div>
  );
}
