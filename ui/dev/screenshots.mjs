#!/usr/bin/env node
// DEVELOPMENT AID ONLY — not a test. Starts two fake servers (dev/fake-server.mjs, one with no
// model), opens every screen of the production build (dist/) in Debian's chromium through
// playwright-core, and writes PNGs to the folder given as the first argument (default
// /work/ui-shots). Prints console errors and CSP violations, so a violation of the strict CSP shows.
//
//   npm run build && node dev/screenshots.mjs /tmp/shots
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const out = process.argv[2] ?? "/work/ui-shots";
mkdirSync(out, { recursive: true });
const here = new URL(".", import.meta.url).pathname;

function server(port, extra = []) {
  const p = spawn(process.execPath, [`${here}fake-server.mjs`, "--port", String(port), ...extra], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve) => p.stdout.once("data", () => resolve(p)));
}
const servers = [await server(5181), await server(5182, ["--empty"])];
const base = "http://127.0.0.1:5181";

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const problems = [];

async function page(scheme, width = 1280, height = 800) {
  const ctx = await browser.newContext({ viewport: { width, height }, colorScheme: scheme, deviceScaleFactor: 1 });
  const p = await ctx.newPage();
  p.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push(`[${scheme} ${width}] console ${m.type()}: ${m.text()}`);
  });
  p.on("pageerror", (e) => problems.push(`[${scheme} ${width}] page error: ${e.message}`));
  return p;
}
const shot = (p, name) => p.screenshot({ path: `${out}/${name}.png` });
const settle = (p, ms = 400) => p.waitForTimeout(ms);
// The app scrolls inside its main area, so a "full page" shot is a taller window.
async function tall(p, name) {
  await p.setViewportSize({ width: 1280, height: 1500 });
  await settle(p, 500);
  await shot(p, name);
  await p.setViewportSize({ width: 1280, height: 800 });
}

async function chat(p, prefix, { compare = false, scorer = true } = {}) {
  if (compare) await p.getByTestId("compare-btn").click();
  if (scorer) await p.getByTestId("chat-scorer").selectOption("numeric");
  await p.getByTestId("chat-input").fill("A shop sells pencils at 3 for $2. How much do 12 pencils cost?");
  await p.getByTestId("chat-send").click();
  await p.waitForSelector('[data-testid="refine-step-1"]');
  await shot(p, `${prefix}-streaming`);
  await p.waitForSelector('[data-testid="refine-step-2"][data-done="true"]', { timeout: 20000 });
  await p.waitForSelector('[data-testid="chat-send"]', { timeout: 20000 });
  await settle(p);
  await shot(p, prefix);
}

for (const scheme of ["dark", "light"]) {
  const p = await page(scheme);
  await p.goto(`${base}/#token=devtoken`);
  await p.waitForSelector('[data-testid="chat-input"]');
  if (p.url().includes("token")) problems.push(`token left in the address bar: ${p.url()}`);
  await chat(p, `${scheme}-chat`);
  if (scheme === "dark") {
    await p.getByTestId("chat-new").click();
    await chat(p, `${scheme}-chat-compare`, { compare: true, scorer: false });
  }
  await p.goto(`${base}/#/runs`);
  await settle(p);
  await shot(p, `${scheme}-runs`);
  await p.goto(`${base}/#/runs/1`);
  await p.waitForSelector('[data-testid="scoreboard"] table');
  await settle(p, 800);
  await tall(p, `${scheme}-run-done`);
  await p.goto(`${base}/#/runs/2`);
  await settle(p, 4000);
  await tall(p, `${scheme}-run-live`);
  await p.goto(`${base}/#/runs/new`);
  await p.waitForSelector('[data-testid="run-name"]');
  await settle(p);
  await shot(p, `${scheme}-wizard-1`);
  await p.getByTestId("wizard-next").click();
  await shot(p, `${scheme}-wizard-2`);
  await p.getByTestId("wizard-next").click();
  await shot(p, `${scheme}-wizard-3`);
  await p.getByTestId("wizard-next").click();
  await shot(p, `${scheme}-wizard-4`);
  await p.goto(`${base}/#/pairs`);
  await p.waitForSelector('[data-testid="pair-1"]');
  if (scheme === "dark") {
    await p.locator('[data-testid="pair-1"] [data-testid="veto"]').click();
    await p.locator('[data-testid="pair-2"] [data-testid="edit"]').click();
  }
  await settle(p);
  await shot(p, `${scheme}-pairs`);
  await p.goto(`${base}/#/models`);
  await p.waitForSelector('[data-testid="adapter-3"]');
  await p.locator('[data-testid="adapter-3"] [data-testid="check-applied"]').click();
  await p.locator('[data-testid="adapter-3"] [data-testid="export"]').click();
  await p.waitForSelector('[data-testid="adapter-3"] [data-testid="applied-badge"]');
  await settle(p);
  await tall(p, `${scheme}-models`);
  await p.goto(`${base}/#/settings`);
  await p.waitForSelector('[data-testid="settings"]');
  await shot(p, `${scheme}-settings`);
  await p.context().close();

  const w = await page(scheme);
  await w.goto(`http://127.0.0.1:5182/#token=devtoken`);
  await w.waitForSelector('[data-testid="use-builtin"]');
  await settle(w);
  await shot(w, `${scheme}-welcome`);
  await w.context().close();
}

// The smallest window the desktop app allows.
const s = await page("dark", 720, 480);
await s.goto(`${base}/#token=devtoken`);
await s.waitForSelector('[data-testid="chat-input"]');
await chat(s, "small-chat");
await s.goto(`${base}/#/runs/1`);
await s.waitForSelector('[data-testid="scoreboard"] table');
await settle(s, 600);
await shot(s, "small-run");
await s.goto(`${base}/#/pairs`);
await settle(s);
await shot(s, "small-pairs");
await s.goto(`${base}/#/models`);
await settle(s);
await shot(s, "small-models");
await s.goto(`${base}/#/runs/new`);
await settle(s);
await shot(s, "small-wizard");
const bad = await page("light", 720, 480);
await bad.goto(`${base}/#token=wrong`);
await bad.waitForSelector('[data-testid="error"]');
await shot(bad, "small-bad-token");

await browser.close();
for (const p of servers) p.kill();
// The wrong-token page's 401 is expected; anything else (CSP violations included) is a problem.
const unexpected = problems.filter((p) => !p.startsWith("[light 720] console error: Failed to load resource: the server responded with a status of 401"));
console.log(unexpected.length ? unexpected.join("\n") : "no console errors, no CSP violations");
console.log(`screenshots in ${out}`);
