import { toError, type Transport } from "./types";

export const TOKEN_KEY = "evolve.token";
export const UNAUTHORIZED_MESSAGE =
  "access token missing or wrong: open the URL printed by `evolve serve`";

/** What the HTTP transport takes from the browser; injectable so tests can pass fakes. */
export interface HttpEnv {
  fetch: typeof fetch;
  EventSource: new (url: string) => EventSource;
  location: Pick<Location, "hash" | "pathname" | "search">;
  history: Pick<History, "replaceState" | "state">;
  storage: Pick<Storage, "getItem" | "setItem">;
  /** Prefix of every URL ("" = same origin). */
  base?: string;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (id: unknown) => void;
}

/**
 * Reads `#token=<hex>` from the address, keeps it in sessionStorage and removes the fragment from
 * the address bar, so the token is not left in history or in screenshots. Without a fragment it
 * returns the token kept earlier in this tab (reload), or null.
 */
export function takeToken(env: Pick<HttpEnv, "location" | "history" | "storage">): string | null {
  const hash = env.location.hash.replace(/^#/, "");
  const params = new URLSearchParams(hash);
  const token = params.get("token");
  if (token) {
    env.storage.setItem(TOKEN_KEY, token);
    params.delete("token");
    const rest = params.toString();
    env.history.replaceState(
      env.history.state,
      "",
      env.location.pathname + env.location.search + (rest ? `#${rest}` : ""),
    );
    return token;
  }
  return env.storage.getItem(TOKEN_KEY);
}

export interface HttpTransport extends Transport {
  readonly token: string | null;
  /** Closes the shared event stream (tests, page unload). */
  close(): void;
}

/** Reconnect delays of the event stream: 0.5 s doubling up to 15 s. */
export function backoffDelay(attempt: number): number {
  return Math.min(15000, 500 * 2 ** Math.max(0, attempt));
}

/** `evolve serve`: commands as `POST /api/<cmd>`, events as one shared Server-Sent Events stream. */
export function createHttpTransport(env: HttpEnv): HttpTransport {
  const token = takeToken(env);
  const base = env.base ?? "";
  const setT = env.setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms));
  const clearT = env.clearTimeout ?? ((id) => globalThis.clearTimeout(id as number));

  const listeners = new Map<string, Set<(payload: unknown) => void>>();
  let source: EventSource | null = null;
  let attempt = 0;
  let timer: unknown = null;
  /** Event names with a listener on the current EventSource. */
  let wired = new Set<string>();

  function dispatch(name: string, ev: MessageEvent) {
    let payload: unknown;
    try {
      payload = JSON.parse(ev.data);
    } catch {
      console.warn(`event ${name}: data is not JSON`, ev.data);
      return;
    }
    for (const cb of [...(listeners.get(name) ?? [])]) {
      try {
        cb(payload);
      } catch (e) {
        console.error(`listener of ${name} failed`, e);
      }
    }
  }

  function wire(name: string) {
    if (!source || wired.has(name)) return;
    wired.add(name);
    source.addEventListener(name, (ev) => dispatch(name, ev as MessageEvent));
  }

  let connecting: Promise<void> | null = null;
  /** Bumped by close(), so a stream asked for before it is not opened after it. */
  let generation = 0;

  function retry() {
    if (listeners.size > 0 && source === null && timer === null) {
      timer = setT(() => void connect(), backoffDelay(attempt++));
    }
  }

  /** One stream at a time: callers during a connect share it. */
  function connect(): Promise<void> {
    timer = null;
    connecting ??= open().finally(() => {
      connecting = null;
    });
    return connecting;
  }

  /**
   * Trades the token for a single-use ticket (an authenticated POST), then opens the stream with
   * the ticket: EventSource cannot send headers, and the token must never be put in a URL.
   */
  async function open() {
    const gen = generation;
    let ticket: string;
    try {
      const res = await env.fetch(`${base}/api/events/ticket`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token ?? ""}` },
      });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      ticket = (JSON.parse(await res.text()) as { ticket: string }).ticket;
      if (typeof ticket !== "string") throw new Error("no ticket in the reply");
    } catch {
      if (gen === generation) retry();
      return;
    }
    if (gen !== generation || listeners.size === 0) return;
    const es = new env.EventSource(`${base}/api/events?ticket=${encodeURIComponent(ticket)}`);
    source = es;
    wired = new Set();
    for (const name of listeners.keys()) wire(name);
    es.onopen = () => {
      attempt = 0;
    };
    es.onerror = () => {
      // Our own backoff instead of the browser's fixed retry: close, wait, open a new stream
      // (with a new ticket: the old one is spent).
      if (source !== es) return;
      es.close();
      source = null;
      retry();
    };
  }

  function close() {
    generation++;
    if (timer !== null) clearT(timer);
    timer = null;
    source?.close();
    source = null;
    wired = new Set();
  }

  return {
    kind: "http",
    token,
    close,
    async invoke<T>(cmd: string, args?: object): Promise<T> {
      let res: Response;
      try {
        res = await env.fetch(`${base}/api/${cmd}`, {
          method: "POST",
          headers: {
            "Content-Type": "application/json",
            Authorization: `Bearer ${token ?? ""}`,
          },
          body: JSON.stringify(args ?? {}),
        });
      } catch (e) {
        throw new Error(`cannot reach the EVOLVE server: ${toError(e).message}`);
      }
      const text = await res.text();
      if (res.status === 401) throw new Error(UNAUTHORIZED_MESSAGE);
      if (!res.ok) {
        let message = `${cmd}: HTTP ${res.status} ${res.statusText}`.trim();
        try {
          const body = JSON.parse(text) as { error?: unknown };
          if (typeof body.error === "string" && body.error) message = body.error;
        } catch {
          /* not JSON: keep the status line */
        }
        throw new Error(message);
      }
      return (text === "" ? null : JSON.parse(text)) as T;
    },
    async listen<P>(event: string, cb: (payload: P) => void) {
      const fn = cb as (payload: unknown) => void;
      let set = listeners.get(event);
      if (!set) listeners.set(event, (set = new Set()));
      set.add(fn);
      if (!source && timer === null) await connect();
      else wire(event);
      return () => {
        const s = listeners.get(event);
        s?.delete(fn);
        if (s && s.size === 0) listeners.delete(event);
        if (listeners.size === 0) close();
      };
    },
  };
}
