import { call, type Status } from "./api";
import { ErrorBanner } from "./components/common";
import { Icon } from "./components/icons";
import { go, useRoute } from "./route";
import { Chat } from "./screens/chat";
import { Models } from "./screens/Models";
import { Pairs } from "./screens/Pairs";
import { Runs } from "./screens/runs";
import { Settings } from "./screens/Settings";
import { Welcome } from "./screens/Welcome";
import { transport } from "./transport";
import { cls, useLoad } from "./util";

const SCREENS = [
  { id: "chat", label: "Chat", icon: "chat" },
  { id: "runs", label: "Runs", icon: "runs" },
  { id: "pairs", label: "Pairs", icon: "pairs" },
  { id: "models", label: "Models", icon: "models" },
  { id: "settings", label: "Settings", icon: "settings" },
];

function NavRail({ active, status }: { active: string; status: Status }) {
  return (
    <nav class="rail" aria-label="screens">
      <div class="rail-logo" title={`EVOLVE Studio ${status.version}`}>
        <img src="./icon.svg" alt="" width="30" height="30" />
        <span class="rail-label brand">EVOLVE</span>
      </div>
      {SCREENS.map((s) => (
        <a
          key={s.id}
          href={`#/${s.id}`}
          class={cls("rail-item", active === s.id && "active")}
          data-testid={`nav-${s.id}`}
          aria-current={active === s.id ? "page" : undefined}
          title={s.label}
        >
          <Icon name={s.icon} size={20} />
          <span class="rail-label">{s.label}</span>
        </a>
      ))}
      <div class="rail-foot rail-label" title={status.data_dir}>
        v{status.version}
        <br />
        {transport().kind === "http" ? "browser" : "desktop"}
      </div>
    </nav>
  );
}

export function App() {
  const status = useLoad(() => call("status"));
  const route = useRoute();

  if (!status.data) {
    return (
      <div class="splash">
        <img src="./icon.svg" alt="" width="64" height="64" />
        {status.error ? (
          <>
            <ErrorBanner error={status.error} />
            <button onClick={() => status.reload()}>Try again</button>
          </>
        ) : (
          <p class="muted">Connecting…</p>
        )}
      </div>
    );
  }
  if (status.data.models.length === 0) {
    return <Welcome status={status.data} onReady={() => status.reload().then(() => go("chat"))} />;
  }
  const [screen, ...rest] = route;
  const active = SCREENS.some((s) => s.id === screen) ? screen : "chat";
  return (
    <div class="shell">
      <NavRail active={active} status={status.data} />
      <main class="screen" data-screen={active}>
        {active === "chat" && <Chat models={status.data.models} />}
        {active === "runs" && <Runs sub={rest} models={status.data.models} />}
        {active === "pairs" && <Pairs />}
        {active === "models" && <Models onChange={() => status.reload()} />}
        {active === "settings" && <Settings />}
      </main>
    </div>
  );
}
