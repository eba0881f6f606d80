// The held-out scoreboard of a run: scores, paired comparisons, refinement fixes.
import { type PairedComparison, type ScoreRow } from "../../api";
import { cls, fmtNum } from "../../util";

function Paired({ c, what }: { c: PairedComparison | null; what: string }) {
  if (!c) return <>–</>;
  const pts = (v: number) => `${v >= 0 ? "+" : ""}${(v * 100).toFixed(1)}`;
  const title =
    `${what}: ${c.wins} problems better, ${c.losses} worse of ${c.n}; ` +
    `95% CI ${pts(c.ci_low)} to ${pts(c.ci_high)} points (paired bootstrap); McNemar p = ${c.p_value.toPrecision(2)}`;
  const sig = c.ci_low > 0 ? "up" : c.ci_high < 0 ? "down" : "";
  return (
    <span class={cls("paired", sig)} title={title}>
      {pts(c.diff)} <span class="muted small">[{pts(c.ci_low)}, {pts(c.ci_high)}]</span>
    </span>
  );
}

export function Scoreboard({ rows }: { rows: ScoreRow[] }) {
  const k = Math.max(0, ...rows.map((r) => r.refined.length));
  const max = Math.max(1e-9, ...rows.flatMap((r) => [r.direct, ...r.refined]).map((v) => Math.abs(v)));
  const best = (r: ScoreRow) => (r.refined.length ? r.refined[r.refined.length - 1] : r.direct);
  const sampled = rows.some((r) => r.sampled !== null && r.sampled !== undefined);
  return (
    <section class="card scoreboard" data-testid="scoreboard">
      <h2>Scoreboard</h2>
      <p class="muted small">
        Held-out score of the greedy direct answer and after each refinement step; "vs base" and "vs prev": the direct
        answers compared problem by problem with the base's and the row above's (difference in points, paired 95%
        interval; green when it excludes zero); "refine vs base": the last refinement step's answers against the
        base's; "fixed/broke": problems the first refinement turned wrong → right and
        right → wrong.
      </p>
      {rows.length === 0 ? (
        <p class="muted">No evaluation yet.</p>
      ) : (
        <div class="scoreboard-body">
          <div class="scoreboard-table">
            <table class="table">
              <thead>
                <tr>
                  <th>model</th>
                  <th class="num">direct</th>
                  {Array.from({ length: k }, (_, i) => (
                    <th class="num" key={i}>
                      refine {i + 1}
                    </th>
                  ))}
                  {sampled && <th class="num">sampled</th>}
                  <th class="num">vs base</th>
                  <th class="num">vs prev</th>
                  {k > 0 && <th class="num">refine {k} vs base</th>}
                  {k > 0 && <th class="num">fixed/broke</th>}
                  <th class="num">win vs prev</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((r) => (
                  <tr key={r.label} data-testid={`score-${r.label.replace(/\s+/g, "-")}`}>
                    <td>{r.label}</td>
                    <td class="num">{fmtNum(r.direct, 3)}</td>
                    {Array.from({ length: k }, (_, i) => (
                      <td class="num" key={i}>
                        {fmtNum(r.refined[i], 3)}
                      </td>
                    ))}
                    {sampled && <td class="num">{fmtNum(r.sampled, 3)}</td>}
                    <td class="num" data-testid="vs-base">
                      <Paired c={r.vs_base} what="direct vs base" />
                    </td>
                    <td class="num" data-testid="vs-previous">
                      <Paired c={r.vs_previous} what="direct vs the row above" />
                    </td>
                    {k > 0 && (
                      <td class="num" data-testid="refined-vs-base">
                        <Paired c={r.refined_vs_base} what={`refine ${k} vs the base's refine ${k}`} />
                      </td>
                    )}
                    {k > 0 && (
                      <td class="num" data-testid="refine-fixes" title="first refinement: wrong → right / right → wrong">
                        {r.refine_steps.length ? `${r.refine_steps[0].wins}/${r.refine_steps[0].losses}` : "–"}
                      </td>
                    )}
                    <td
                      class="num"
                      data-testid="win-rate"
                      title={
                        r.win_rate
                          ? `${r.win_rate.wins} wins, ${r.win_rate.ties} ties, ${r.win_rate.losses} losses; judged by ${r.win_rate.judge} (${r.win_rate.method})`
                          : undefined
                      }
                    >
                      {r.win_rate ? `${Math.round(r.win_rate.rate * 100)}%` : "–"}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <div class="bars" aria-label="direct and refined score per round">
            {rows.map((r) => (
              <div class="bar-row" key={r.label}>
                <span class="bar-label">{r.label}</span>
                <div class="bar-pair">
                  <div class="hbar direct" style={{ width: `${(Math.abs(r.direct) / max) * 100}%` }} title={`direct ${fmtNum(r.direct, 3)}`} />
                  <div class="hbar refined" style={{ width: `${(Math.abs(best(r)) / max) * 100}%` }} title={`refined ${fmtNum(best(r), 3)}`} />
                </div>
              </div>
            ))}
            <div class="legend small">
              <span class="swatch direct" /> direct <span class="swatch refined" /> after last refinement
            </div>
          </div>
        </div>
      )}
    </section>
  );
}
