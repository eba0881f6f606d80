import { afterEach, describe, expect, it, vi } from "vitest";
import { backoffDelay, createHttpTransport, takeToken, TOKEN_KEY, UNAUTHORIZED_MESSAGE, type HttpEnv } from "../src/transport/http";
import { createTauriTransport, type TauriGlobal } from "../src/transport/tauri";
import { detectTransport } from "../src/transport";

/* ---------- fakes, local to this test */

class FakeEventSource {
  static all: FakeEventSource[] = [];
  url: string;
  closed = false;
  onopen: (() => void) | null = null;
  onerror: (() => void) | null = null;
  handlers = new Map<string, ((ev: MessageEvent) => void)[]>();
  constructor(url: string) {
    this.url = url;
    FakeEventSource.all.push(this);
  }
  addEventListener(name: string, cb: (ev: MessageEvent) => void) {
    this.handlers.set(name, [...(this.handlers.get(name) ?? []), cb]);
  }
  close() {
    this.closed = true;
  }
  /** What the browser does when the server sends `event: name\ndata: data`. */
  deliver(name: string, data: string) {
    for (const cb of this.handlers.get(name) ?? []) cb(new MessageEvent(name, { data }));
  }
}

interface Sent {
  url: string;
  init: RequestInit;
}

function fakeResponse(status: number, body: string, statusText = "") {
  return { status, ok: status >= 200 && status < 300, statusText, text: async () => body } as Response;
}

function env(opts: { hash?: string; stored?: string; reply?: (s: Sent) => Response } = {}) {
  const sent: Sent[] = [];
  const storage = new Map<string, string>(opts.stored ? [[TOKEN_KEY, opts.stored]] : []);
  const replaced: string[] = [];
  const timers: { fn: () => void; ms: number }[] = [];
  FakeEventSource.all = [];
  const e: HttpEnv = {
    fetch: (async (url: string, init: RequestInit) => {
      const s = { url, init };
      sent.push(s);
      if (url.endsWith("/api/events/ticket") && !opts.reply) return fakeResponse(200, `{"ticket":"tk${sent.length}"}`);
      return (opts.reply ?? (() => fakeResponse(200, "{}")))(s);
    }) as typeof fetch,
    EventSource: FakeEventSource as unknown as HttpEnv["EventSource"],
    location: { hash: opts.hash ?? "", pathname: "/", search: "" },
    history: { state: null, replaceState: (_s: unknown, _t: string, url?: string | URL | null) => void replaced.push(String(url)) },
    storage: { getItem: (k) => storage.get(k) ?? null, setItem: (k, v) => void storage.set(k, v) },
    setTimeout: (fn, ms) => timers.push({ fn, ms }),
    clearTimeout: () => {},
  };
  return { e, sent, storage, replaced, timers };
}

afterEach(() => {
  delete (window as { __TAURI__?: unknown }).__TAURI__;
});

/* ---------- token */

describe("token from the address", () => {
  it("reads #token=, keeps it in sessionStorage and strips it from the address bar", () => {
    const { e, storage, replaced } = env({ hash: "#token=ab12cd" });
    expect(takeToken(e)).toBe("ab12cd");
    expect(storage.get(TOKEN_KEY)).toBe("ab12cd");
    expect(replaced).toEqual(["/"]);
  });

  it("keeps other fragment parameters when stripping the token", () => {
    const { e, replaced } = env({ hash: "#token=ff00&x=1" });
    expect(takeToken(e)).toBe("ff00");
    expect(replaced).toEqual(["/#x=1"]);
  });

  it("falls back to the stored token after a reload, without touching the address", () => {
    const { e, replaced } = env({ hash: "#/runs/3", stored: "beef" });
    expect(takeToken(e)).toBe("beef");
    expect(replaced).toEqual([]);
  });

  it("is null when there is none", () => {
    expect(takeToken(env().e)).toBeNull();
  });
});

/* ---------- commands over HTTP */

describe("HTTP commands", () => {
  it("POSTs the JSON args to /api/<cmd> with the bearer token and returns the JSON result", async () => {
    const { e, sent } = env({ hash: "#token=abc123", reply: () => fakeResponse(200, '{"run_id":7}') });
    const t = createHttpTransport(e);
    expect(t.kind).toBe("http");
    const res = await t.invoke<{ run_id: number }>("run_start", { name: "r", model_id: 1 });
    expect(res).toEqual({ run_id: 7 });
    expect(sent).toHaveLength(1);
    expect(sent[0].url).toBe("/api/run_start");
    expect(sent[0].init.method).toBe("POST");
    const headers = sent[0].init.headers as Record<string, string>;
    expect(headers.Authorization).toBe("Bearer abc123");
    expect(headers["Content-Type"]).toBe("application/json");
    expect(JSON.parse(sent[0].init.body as string)).toEqual({ name: "r", model_id: 1 });
  });

  it("sends {} when a command has no args, and accepts an empty body as null", async () => {
    const { e, sent } = env({ hash: "#token=t", reply: () => fakeResponse(200, "") });
    const t = createHttpTransport(e);
    expect(await t.invoke("run_pause")).toBeNull();
    expect(sent[0].init.body).toBe("{}");
  });

  it("rejects with the server's one-line {error} message", async () => {
    const { e } = env({ hash: "#token=t", reply: () => fakeResponse(400, '{"error":"x.gguf: not a GGUF file (bad magic)"}', "Bad Request") });
    await expect(createHttpTransport(e).invoke("models_add", { path: "x.gguf" })).rejects.toThrow(
      new Error("x.gguf: not a GGUF file (bad magic)"),
    );
  });

  it("rejects with the status line when the error body is not JSON", async () => {
    const { e } = env({ hash: "#token=t", reply: () => fakeResponse(502, "<html>bad gateway</html>", "Bad Gateway") });
    await expect(createHttpTransport(e).invoke("status")).rejects.toThrow("status: HTTP 502 Bad Gateway");
  });

  it("turns 401 into the clear access-token message", async () => {
    const { e } = env({ hash: "#token=wrong", reply: () => fakeResponse(401, '{"error":"unauthorized"}') });
    const err = await createHttpTransport(e).invoke("status").catch((x: Error) => x);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toBe(UNAUTHORIZED_MESSAGE);
    expect(UNAUTHORIZED_MESSAGE).toContain("evolve serve");
  });

  it("reports a network failure as an Error", async () => {
    const { e } = env({ hash: "#token=t" });
    e.fetch = (async () => {
      throw new TypeError("Failed to fetch");
    }) as typeof fetch;
    await expect(createHttpTransport(e).invoke("status")).rejects.toThrow("cannot reach the EVOLVE server: Failed to fetch");
  });
});

/* ---------- events over SSE */

/** Lets pending promise callbacks (the ticket request) run. */
const flush = () => new Promise((r) => setTimeout(r, 0));

describe("HTTP events", () => {
  it("opens one EventSource with a ticket bought with the token and dispatches by event name", async () => {
    const { e, sent } = env({ hash: "#token=a b" });
    const t = createHttpTransport(e);
    const chat: unknown[] = [];
    const chat2: unknown[] = [];
    const runs: unknown[] = [];
    await t.listen("chat", (p) => chat.push(p));
    await t.listen("chat", (p) => chat2.push(p));
    await t.listen("run_state", (p) => runs.push(p));
    expect(FakeEventSource.all).toHaveLength(1);
    const es = FakeEventSource.all[0];
    expect(sent).toHaveLength(1);
    expect(sent[0].url).toBe("/api/events/ticket");
    expect(sent[0].init.method).toBe("POST");
    expect((sent[0].init.headers as Record<string, string>).Authorization).toBe("Bearer a b");
    expect(es.url).toBe("/api/events?ticket=tk1");
    expect(es.url).not.toContain("token");
    es.deliver("chat", '{"request_id":"r1","kind":"token","text":"Hi"}');
    es.deliver("run_state", '{"run_id":3,"state":"paused"}');
    es.deliver("other", '{"x":1}');
    expect(chat).toEqual([{ request_id: "r1", kind: "token", text: "Hi" }]);
    expect(chat2).toEqual(chat);
    expect(runs).toEqual([{ run_id: 3, state: "paused" }]);
  });

  it("unsubscribes one listener, and closes the stream with the last one", async () => {
    const { e } = env({ hash: "#token=t" });
    const t = createHttpTransport(e);
    const a: unknown[] = [];
    const b: unknown[] = [];
    const offA = await t.listen("chat", (p) => a.push(p));
    const offB = await t.listen("run_progress", (p) => b.push(p));
    offA();
    const es = FakeEventSource.all[0];
    es.deliver("chat", "1");
    es.deliver("run_progress", "2");
    expect(a).toEqual([]);
    expect(b).toEqual([2]);
    expect(es.closed).toBe(false);
    offB();
    expect(es.closed).toBe(true);
  });

  it("reconnects with growing backoff and a fresh ticket after errors and keeps every listener", async () => {
    const { e, timers } = env({ hash: "#token=t" });
    const t = createHttpTransport(e);
    const got: unknown[] = [];
    await t.listen("run_metrics", (p) => got.push(p));
    const first = FakeEventSource.all[0];
    first.onerror!();
    expect(first.closed).toBe(true);
    expect(timers.map((x) => x.ms)).toEqual([500]);
    timers[0].fn();
    await flush();
    expect(FakeEventSource.all).toHaveLength(2);
    const second = FakeEventSource.all[1];
    expect(second.url).toBe("/api/events?ticket=tk2");
    second.onerror!();
    expect(timers.map((x) => x.ms)).toEqual([500, 1000]);
    timers[1].fn();
    await flush();
    const third = FakeEventSource.all[2];
    third.onopen!();
    third.deliver("run_metrics", '{"global_step":4}');
    expect(got).toEqual([{ global_step: 4 }]);
    third.onerror!();
    expect(timers[2].ms).toBe(500); // an open resets the backoff
    expect(backoffDelay(10)).toBe(15000);
  });

  it("retries with backoff when the ticket is refused, never opening a stream without one", async () => {
    const { e, timers } = env({ hash: "#token=wrong", reply: () => fakeResponse(401, '{"error":"x"}') });
    const t = createHttpTransport(e);
    await t.listen("chat", () => {});
    expect(FakeEventSource.all).toHaveLength(0);
    expect(timers.map((x) => x.ms)).toEqual([500]);
    t.close();
    timers[0].fn();
    await flush();
    expect(FakeEventSource.all).toHaveLength(0);
  });

  it("ignores data that is not JSON instead of throwing", async () => {
    const { e } = env({ hash: "#token=t" });
    const t = createHttpTransport(e);
    const got: unknown[] = [];
    await t.listen("chat", (p) => got.push(p));
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    FakeEventSource.all[0].deliver("chat", "not json");
    FakeEventSource.all[0].deliver("chat", '{"ok":true}');
    expect(got).toEqual([{ ok: true }]);
    expect(warn).toHaveBeenCalledTimes(1);
    warn.mockRestore();
  });
});

/* ---------- Tauri */

function fakeTauri() {
  const calls: [string, unknown][] = [];
  const listeners: [string, (e: { event: string; payload: unknown }) => void][] = [];
  const tauri: TauriGlobal = {
    core: {
      invoke: (async (cmd: string, args?: Record<string, unknown>) => {
        calls.push([cmd, args]);
        const inner = (args as { cmd?: string } | undefined)?.cmd;
        if (inner === "models_add") throw "x.gguf: not a GGUF file";
        return { ok: inner };
      }) as TauriGlobal["core"]["invoke"],
    },
    event: {
      listen: (async (name: string, cb: (e: { event: string; payload: unknown }) => void) => {
        listeners.push([name, cb]);
        return () => {};
      }) as TauriGlobal["event"]["listen"],
    },
  };
  return { tauri, calls, listeners };
}

describe("Tauri transport", () => {
  it("calls the app's one `api` command with the command name and the snake_case args", async () => {
    const { tauri, calls } = fakeTauri();
    const t = createTauriTransport(tauri);
    expect(t.kind).toBe("tauri");
    expect(await t.invoke("pairs_list", { run_id: 2, min_margin: 0.5 })).toEqual({ ok: "pairs_list" });
    expect(await t.invoke("status")).toEqual({ ok: "status" });
    expect(calls).toEqual([
      ["api", { cmd: "pairs_list", args: { run_id: 2, min_margin: 0.5 } }],
      ["api", { cmd: "status", args: {} }],
    ]);
  });

  it("turns a rejected string into an Error with that message", async () => {
    const { tauri } = fakeTauri();
    await expect(createTauriTransport(tauri).invoke("models_add", { path: "x.gguf" })).rejects.toThrow(new Error("x.gguf: not a GGUF file"));
  });

  it("passes the event payload, not the Tauri event object, to listeners", async () => {
    const { tauri, listeners } = fakeTauri();
    const got: unknown[] = [];
    await createTauriTransport(tauri).listen("run_state", (p) => got.push(p));
    expect(listeners.map(([n]) => n)).toEqual(["run_state"]);
    listeners[0][1]({ event: "run_state", payload: { run_id: 1, state: "done" } });
    expect(got).toEqual([{ run_id: 1, state: "done" }]);
  });

  it("is chosen at start-up when window.__TAURI__ exists, HTTP otherwise", () => {
    expect(detectTransport(window).kind).toBe("http");
    window.__TAURI__ = fakeTauri().tauri;
    expect(detectTransport(window).kind).toBe("tauri");
  });
});
