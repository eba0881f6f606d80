import { toError, type Transport } from "./types";

/** The part of `window.__TAURI__` (withGlobalTauri: true) that the UI uses. */
export interface TauriGlobal {
  core: { invoke<T>(cmd: string, args?: Record<string, unknown>): Promise<T> };
  event: {
    listen<P>(event: string, cb: (e: { event: string; payload: P }) => void): Promise<() => void>;
  };
}

declare global {
  interface Window {
    __TAURI__?: TauriGlobal;
  }
}

/** The one Tauri command of the desktop app (src-tauri/src/commands.rs): `{cmd, args}`. */
export const TAURI_COMMAND = "api";

/**
 * Tauri IPC. Every command goes through the app's one `api` command as `{cmd, args}`, with the
 * arguments unchanged (snake_case keys), so the desktop shell dispatches exactly like
 * `evolve serve` (docs/api.md) and Tauri's camelCase renaming never applies.
 */
export function createTauriTransport(tauri: TauriGlobal): Transport {
  return {
    kind: "tauri",
    async invoke<T>(cmd: string, args?: object): Promise<T> {
      try {
        return await tauri.core.invoke<T>(TAURI_COMMAND, { cmd, args: args ?? {} });
      } catch (e) {
        throw toError(e);
      }
    },
    listen<P>(event: string, cb: (payload: P) => void) {
      return tauri.event.listen<P>(event, (e) => cb(e.payload));
    },
  };
}
