// The Chat screen: history, model and adapter choice, streaming answers with refinements.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import {
  call,
  SCORERS,
  type ChatEvent,
  type Model,
  type Scorer,
} from "../../api";
import { ErrorBanner } from "../../components/common";
import { Icon } from "../../components/icons";
import { applyChatEvent, turnsFromHistory, type Turn } from "../../chat-stream";
import { VariantColumn } from "./StepCard";
import { cls, errorText, fmtDate, fmtNum, modelName, useEvent, useLoad } from "../../util";

const NO_ADAPTER = -1;

export function Chat({ models }: { models: Model[] }) {
  const [modelId, setModelId] = useState(models[0]?.id ?? 0);
  const [adapterId, setAdapterId] = useState<number>(NO_ADAPTER);
  const [useAdapter, setUseAdapter] = useState(false);
  const [compare, setCompare] = useState(false);
  const [refineSteps, setRefineSteps] = useState(2);
  const [scorer, setScorer] = useState<Scorer | "">("");
  const [chatId, setChatId] = useState<number | null>(null);
  const [turns, setTurns] = useState<Turn[]>([]);
  const [input, setInput] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [showHistory, setShowHistory] = useState(() => typeof innerWidth !== "number" || innerWidth > 900);
  const chats = useLoad(() => call("chats_list"));
  const adapters = useLoad(() => call("adapters_list"));
  const keySeq = useRef(1000);
  /** Events that arrived before chat_send told us their request id. */
  const early = useRef(new Map<string, ChatEvent[]>());
  const knownIds = useRef(new Set<string>());
  const bottom = useRef<HTMLDivElement>(null);

  const modelAdapters = useMemo(
    () => (adapters.data ?? []).filter((a) => a.base_model_id === modelId),
    [adapters.data, modelId],
  );
  useEffect(() => {
    if (!modelAdapters.some((a) => a.id === adapterId)) setAdapterId(modelAdapters[modelAdapters.length - 1]?.id ?? NO_ADAPTER);
  }, [modelAdapters]);
  const hasAdapter = adapterId !== NO_ADAPTER;
  const live = turns.some((t) => t.live);
  const liveTurn = turns.find((t) => t.live);
  const tps = liveTurn?.variants.map((v) => v.tps).find((x) => x !== null) ?? turns[turns.length - 1]?.variants[0]?.tps ?? null;

  useEvent("chat", (ev) => {
    if (!knownIds.current.has(ev.request_id)) {
      const list = early.current.get(ev.request_id) ?? [];
      list.push(ev);
      early.current.set(ev.request_id, list);
      // Events of requests made elsewhere (another window) are never claimed: keep only recent ones.
      if (early.current.size > 32) early.current.delete(early.current.keys().next().value!);
      return;
    }
    setTurns((ts) => ts.map((t) => (t.requestId === ev.request_id ? applyChatEvent(t, ev) : t)));
  });

  useEffect(() => {
    bottom.current?.scrollIntoView({ block: "end" });
  }, [turns]);

  async function openChat(id: number | null) {
    if (live) return;
    setError(null);
    setChatId(id);
    if (id === null) {
      setTurns([]);
      return;
    }
    try {
      setTurns(turnsFromHistory(await call("chat_history", { chat_id: id })));
    } catch (e) {
      setError(errorText(e));
    }
  }

  async function send() {
    const message = input.trim();
    if (!message || live || !modelId) return;
    setError(null);
    const key = keySeq.current++;
    const withAdapter = hasAdapter && (useAdapter || compare);
    setTurns((ts) => [...ts, { key, user: message, requestId: null, variants: [], live: true }]);
    setInput("");
    try {
      const res = await call("chat_send", {
        chat_id: chatId,
        model_id: modelId,
        adapter_id: withAdapter ? adapterId : null,
        message,
        refine_steps: refineSteps,
        scorer: scorer || null,
        compare: compare && hasAdapter,
      });
      knownIds.current.add(res.request_id);
      const pending = early.current.get(res.request_id) ?? [];
      early.current.delete(res.request_id);
      setTurns((ts) =>
        ts.map((t) => (t.key === key ? pending.reduce(applyChatEvent, { ...t, requestId: res.request_id }) : t)),
      );
      if (chatId !== res.chat_id) {
        setChatId(res.chat_id);
        void chats.reload();
      }
    } catch (e) {
      setError(errorText(e));
      setTurns((ts) => ts.filter((t) => t.key !== key));
      setInput(message);
    }
  }

  async function cancel() {
    const t = turns.find((x) => x.live);
    if (!t?.requestId) return;
    try {
      await call("chat_cancel", { request_id: t.requestId });
    } catch (e) {
      setError(errorText(e));
    }
    setTurns((ts) =>
      ts.map((x) => (x.key === t.key ? { ...x, live: false, variants: x.variants.map((v) => ({ ...v, done: true })) } : x)),
    );
  }

  return (
    <div class={cls("chat-screen", showHistory && "with-history")}>
      {showHistory && (
        <aside class="history" data-testid="chat-history">
          <div class="history-head">
            <h2>Chats</h2>
            <button class="secondary small" data-testid="chat-new" onClick={() => openChat(null)} disabled={live}>
              <Icon name="plus" size={14} /> New
            </button>
          </div>
          <ErrorBanner error={chats.error} />
          <ul>
            {(chats.data ?? []).map((c) => (
              <li key={c.id}>
                <button class={cls("history-item", c.id === chatId && "active")} onClick={() => openChat(c.id)} data-testid={`chat-${c.id}`}>
                  <span class="title">{c.title || `Chat ${c.id}`}</span>
                  <span class="muted small">{fmtDate(c.created_at)}</span>
                </button>
              </li>
            ))}
            {chats.data?.length === 0 && <li class="muted small pad">No chats yet.</li>}
          </ul>
        </aside>
      )}
      <section class="chat-main">
        <div class="toolbar">
          <button
            class={cls("ghost icon-only", showHistory && "active")}
            title="chat history"
            aria-label="chat history"
            onClick={() => setShowHistory(!showHistory)}
          >
            <Icon name="history" />
          </button>
          <select value={modelId} onChange={(e) => setModelId(Number((e.currentTarget as HTMLSelectElement).value))} data-testid="chat-model" title="model">
            {models.map((m) => (
              <option key={m.id} value={m.id}>
                {modelName(m)}
              </option>
            ))}
          </select>
          <div class="segmented" role="group" aria-label="base or adapter">
            <button class={cls(!useAdapter && !compare && "on")} onClick={() => { setUseAdapter(false); setCompare(false); }} data-testid="variant-base-btn">
              Base
            </button>
            <button
              class={cls(useAdapter && !compare && "on")}
              disabled={!hasAdapter}
              title={hasAdapter ? "answer with the trained adapter" : "no adapter trained for this model yet"}
              onClick={() => { setUseAdapter(true); setCompare(false); }}
              data-testid="variant-adapter-btn"
            >
              Adapter
            </button>
            <button
              class={cls(compare && "on")}
              disabled={!hasAdapter}
              title="base and adapter side by side"
              onClick={() => setCompare(true)}
              data-testid="compare-btn"
            >
              <Icon name="columns" size={14} /> Compare
            </button>
          </div>
          {hasAdapter && (useAdapter || compare) && (
            <select value={adapterId} onChange={(e) => setAdapterId(Number((e.currentTarget as HTMLSelectElement).value))} data-testid="chat-adapter" title="adapter">
              {modelAdapters.map((a) => (
                <option key={a.id} value={a.id}>
                  adapter {a.id}
                  {a.run_id !== null ? ` · run ${a.run_id}` : ""}
                  {a.round !== null ? ` · round ${a.round}` : ""}
                </option>
              ))}
            </select>
          )}
          <label class="inline" title="self-refinement steps after the direct answer">
            <span>Refine</span>
            <input
              type="range"
              min={0}
              max={5}
              value={refineSteps}
              onInput={(e) => setRefineSteps(Number((e.currentTarget as HTMLInputElement).value))}
              data-testid="refine-steps"
            />
            <b class="num">{refineSteps}</b>
          </label>
          <select value={scorer} onChange={(e) => setScorer((e.currentTarget as HTMLSelectElement).value as Scorer | "")} data-testid="chat-scorer" title="scorer">
            <option value="">no scorer</option>
            {SCORERS.map((s) => (
              <option key={s} value={s}>
                {s} scorer
              </option>
            ))}
          </select>
        </div>
        <div class="conversation" data-testid="conversation">
          {turns.length === 0 && (
            <div class="empty chat-empty">
              <Icon name="chat" size={32} />
              <p>Ask something. The answer streams first, then each refinement appears as its own card with what it changed.</p>
            </div>
          )}
          {turns.map((t) => {
            const cols = t.variants.length > 1;
            return (
              <div class="turn" key={t.key}>
                <div class="bubble user">{t.user}</div>
                {t.variants.length === 0 && t.live && (
                  <div class="step card streaming">
                    <span class="pulse" /> waiting for the model…
                  </div>
                )}
                <div class={cls("variants", cols && "compare")}>
                  {t.variants.map((v) => (
                    <VariantColumn key={v.variant} v={v} scored={v.steps.some((s) => s.score !== null)} showLabel={cols || v.variant === "adapter"} />
                  ))}
                </div>
              </div>
            );
          })}
          <div ref={bottom} />
        </div>
        <ErrorBanner error={error} onClose={() => setError(null)} />
        <div class="composer">
          <textarea
            value={input}
            rows={2}
            placeholder="Message the model (Enter to send, Shift+Enter for a new line)"
            data-testid="chat-input"
            onInput={(e) => setInput((e.currentTarget as HTMLTextAreaElement).value)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && !e.shiftKey) {
                e.preventDefault();
                void send();
              }
            }}
          />
          <div class="composer-side">
            {live ? (
              <button class="danger" onClick={cancel} data-testid="chat-cancel">
                <Icon name="stop" size={16} /> Stop
              </button>
            ) : (
              <button class="primary" onClick={send} disabled={!input.trim()} data-testid="chat-send">
                <Icon name="send" size={16} /> Send
              </button>
            )}
            <span class="muted small num" data-testid="chat-tps">
              {tps !== null ? `${fmtNum(tps, 1)} tok/s` : " "}
            </span>
          </div>
        </div>
      </section>
    </div>
  );
}
