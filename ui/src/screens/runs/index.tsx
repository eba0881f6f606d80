// The Runs screen: the list, the new-run wizard and a run's page, by route.
import { call, type Model } from "../../api";
import { Badge, Empty, ErrorBanner, stateTone } from "../../components/common";
import { Icon } from "../../components/icons";
import { go } from "../../route";
import { RunPage } from "./RunPage";
import { Wizard } from "./Wizard";
import { fmtDate, modelName, useEvent, useLoad } from "../../util";

export function Runs({ sub, models }: { sub: string[]; models: Model[] }) {
  if (sub[0] === "new") return <Wizard models={models} />;
  const id = Number(sub[0]);
  if (sub[0] && Number.isInteger(id)) return <RunPage runId={id} models={models} />;
  return <RunList models={models} />;
}

function RunList({ models }: { models: Model[] }) {
  const runs = useLoad(() => call("runs_list"));
  useEvent("run_state", () => void runs.reload());
  const byId = new Map(models.map((m) => [m.id, m]));
  return (
    <div class="page">
      <header class="page-head">
        <h1>Runs</h1>
        <button class="primary" onClick={() => go("runs/new")} data-testid="run-new">
          <Icon name="plus" size={16} /> New run
        </button>
      </header>
      <ErrorBanner error={runs.error} />
      {runs.data?.length === 0 && (
        <Empty>
          No runs yet. A run samples answers, lets the model refine them, turns the scores into preference pairs and
          trains a LoRA adapter on them, round after round.
        </Empty>
      )}
      <div class="list">
        {(runs.data ?? []).map((r) => (
          <a key={r.id} class="list-item card" href={`#/runs/${r.id}`} data-testid={`run-${r.id}`}>
            <div class="grow">
              <div class="title">{r.name}</div>
              <div class="muted small">
                {byId.get(r.model_id) ? modelName(byId.get(r.model_id)!) : `model ${r.model_id}`} · data set {r.dataset_id} ·{" "}
                {fmtDate(r.created_at)}
              </div>
            </div>
            <Badge tone={stateTone(r.state)}>{r.state}</Badge>
          </a>
        ))}
      </div>
    </div>
  );
}
