/** The one interface every screen uses to reach the backend, whichever shell hosts the UI. */
export interface Transport {
  /** "tauri" inside the desktop window, "http" in a browser talking to `evolve serve`. */
  readonly kind: "tauri" | "http";
  /** Runs a backend command; rejects with an Error whose message is the backend's one-line error. */
  invoke<T>(cmd: string, args?: object): Promise<T>;
  /** Subscribes to a backend event; resolves to the function that unsubscribes. */
  listen<P>(event: string, cb: (payload: P) => void): Promise<() => void>;
}

/** Turns whatever a backend rejected with (string, Error, {error}, {message}) into an Error. */
export function toError(e: unknown): Error {
  if (e instanceof Error) return e;
  if (typeof e === "string") return new Error(e);
  if (e && typeof e === "object") {
    const o = e as { error?: unknown; message?: unknown };
    if (typeof o.error === "string") return new Error(o.error);
    if (typeof o.message === "string") return new Error(o.message);
  }
  return new Error(String(e));
}
