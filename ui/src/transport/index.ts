import { createHttpTransport } from "./http";
import { createTauriTransport } from "./tauri";
import type { Transport } from "./types";

export type { Transport } from "./types";

/** Tauri when the page runs in the desktop window (withGlobalTauri), else HTTP + SSE. */
export function detectTransport(w: Window = window): Transport {
  if (w.__TAURI__) return createTauriTransport(w.__TAURI__);
  return createHttpTransport({
    fetch: w.fetch.bind(w),
    EventSource: (w as unknown as { EventSource: typeof EventSource }).EventSource,
    location: w.location,
    history: w.history,
    storage: w.sessionStorage,
  });
}

let current: Transport | null = null;

/** The transport chosen at start-up. */
export function transport(): Transport {
  return (current ??= detectTransport());
}

/** Replaces the transport (tests). */
export function setTransport(t: Transport | null) {
  current = t;
}
