/// <reference types="vitest/config" />
import { defineConfig } from "vite";

declare const process: { env: Record<string, string | undefined> };

// `npm run dev` proxies /api to the development fake server (dev/fake-server.mjs, port 5174)
// or to a real `evolve serve` given by EVOLVE_API (e.g. http://127.0.0.1:8765).
const api = process.env.EVOLVE_API ?? "http://127.0.0.1:5174";

export default defineConfig({
  // Relative asset URLs: the same dist/ works under Tauri's custom protocol and `evolve serve`.
  base: "./",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // Everything in files: no inline scripts or data: URLs beyond what the CSP allows.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
  },
  server: {
    port: 5173,
    strictPort: true,
    proxy: { "/api": { target: api, changeOrigin: false } },
  },
  test: {
    environment: "jsdom",
    include: ["test/**/*.test.{ts,tsx}"],
  },
});
