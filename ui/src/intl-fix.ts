/**
 * Imported first (ui/src/main.tsx), before uPlot: WebKitGTK reports `navigator.language` as "C"
 * when the process runs under LANG=C (a service, a container, CI), and `new Intl.NumberFormat("C")`
 * throws a RangeError at uPlot's module load, leaving the window blank. An unusable locale falls
 * back to the engine's default instead.
 */
for (const name of ["NumberFormat", "DateTimeFormat"] as const) {
  const Original = Intl[name] as unknown as new (locales?: string | string[], options?: object) => object;
  const Safe = function (locales?: string | string[], options?: object) {
    try {
      return new Original(locales, options);
    } catch (e) {
      if (e instanceof RangeError && locales !== undefined) return new Original(undefined, options);
      throw e;
    }
  } as unknown as Record<string, unknown>;
  Object.setPrototypeOf(Safe, Original);
  Safe.prototype = Original.prototype;
  (Intl as unknown as Record<string, unknown>)[name] = Safe;
}

export {};
