#!/usr/bin/env node
// Browser end-to-end test of the web UI against a real `evolve serve` (driven by the Rust test
// tests/browser_e2e.rs, which starts the server and checks the exit status):
//
//   node ui/e2e/run.mjs <url-with-token> <screenshot-dir>
//   env: E2E_MODEL (a GGUF to register), E2E_DATASET (a GSM8K JSONL), E2E_EXPORT_DIR,
//   E2E_DISCOVER (set: the server's HOME has the fake LM Studio/Ollama models of tests/browser_e2e.rs),
//        CHROMIUM (default /usr/bin/chromium)
//
// Registers the model from the welcome panel, chats with 2 refinement steps, imports the data
// set and runs 1 round to the end, vetoes a pair, checks and exports the adapter. Any console
// error or CSP violation fails the test. Exit status 0 = pass.
import { existsSync, mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const [url, out] = process.argv.slice(2);
const { E2E_MODEL: model, E2E_DATASET: dataset, E2E_EXPORT_DIR: exportDir } = process.env;
if (!url || !out || !model || !dataset || !exportDir) {
  console.error("usage: E2E_MODEL=… E2E_DATASET=… E2E_EXPORT_DIR=… node ui/e2e/run.mjs <url> <screenshot-dir>");
  process.exit(2);
}
mkdirSync(out, { recursive: true });
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const problems = [];
const t0 = Date.now();
const log = (m) => console.log(`[e2e ${((Date.now() - t0) / 1000).toFixed(1)} s] ${m}`);

const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
let failed = false;
const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: "dark", deviceScaleFactor: 1 });
const page = await ctx.newPage();
page.on("console", (m) => {
  if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
});
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
const shot = (name) => page.screenshot({ path: `${out}/${name}.png` });
const byId = (id) => page.getByTestId(id);

try {
  log("open the page");
  await page.goto(url);
  await byId("welcome").waitFor();
  if (page.url().includes("token=")) throw new Error(`token left in the address bar: ${page.url()}`);
  await shot("01-welcome");

  log("register the model from the welcome panel");
  await byId("welcome-model-path").fill(model);
  await byId("welcome-model-add").click();
  await byId("chat-input").waitFor({ timeout: 30000 });

  log("chat with 2 refinement steps");
  await byId("refine-steps").fill("2");
  await byId("chat-scorer").selectOption("numeric");
  await byId("chat-input").fill("23+45=?"); // the built-in task's question format
  await byId("chat-send").click();
  await page.locator('[data-testid="refine-step-2"][data-done="true"]').waitFor({ timeout: 120000 });
  await byId("refine-step-1").waitFor();
  await byId("chat-send").waitFor({ timeout: 30000 });
  const scores = await byId("step-score").count();
  if (scores !== 3) throw new Error(`expected a score on each of the 3 steps, saw ${scores}`);
  await page.waitForTimeout(300);
  await shot("02-chat-refinements");

  log("new run: import the data set");
  await page.goto(url.split("#")[0] + "#/runs/new");
  await byId("run-name").waitFor();
  await page.locator("summary", { hasText: "Import a data set" }).click();
  await byId("dataset-path").fill(dataset);
  await byId("dataset-import").click();
  await page.getByText(/Imported \d+ prompts/).waitFor({ timeout: 30000 });
  await byId("run-name").fill("e2e run");
  await shot("03-wizard-data");
  await byId("wizard-next").click();
  log("new run: 1 round, small");
  await byId("run-rounds").fill("1");
  await page.locator("label.field", { hasText: "Prompts per round" }).locator("input").fill("8");
  await byId("run-samples").fill("3");
  await byId("run-refine").fill("1");
  await page.locator("label.field", { hasText: "Max tokens" }).locator("input").fill("48");
  await byId("wizard-next").click();
  await byId("run-lr").fill("0.002");
  await byId("run-reference").selectOption("previous");
  await shot("03b-wizard-training");
  await byId("wizard-next").click();
  await page.locator("dl.review", { hasText: "reference: previous round" }).waitFor({ timeout: 5000 });
  // The pre-flight: run_start's checks and the training memory, before Start.
  await byId("run-preflight").getByText("Ready to start.").waitFor({ timeout: 10000 });
  const preflight = await byId("run-preflight").innerText();
  if (!/training needs about [\d.]+ GiB/.test(preflight)) throw new Error(`pre-flight shows no memory: ${preflight}`);
  // The scorer check: a few train prompts sampled as round 0 would, each with the verifier's verdict.
  await byId("dry-run-button").click();
  await byId("dry-run-verdict").waitFor({ timeout: 60000 });
  const verdict = await byId("dry-run-verdict").innerText();
  if (!/\d+ of 4 prompts would make pairs/.test(verdict)) throw new Error(`dry run verdict: ${verdict}`);
  const answers = await page.locator('[data-testid="dry-run-answer"]').count();
  if (answers !== 4 * 3) throw new Error(`the dry run shows ${answers} answers, expected 4 prompts × 3 samples`);
  if (!/read \d+ \(marker\)|read nothing|expected \d+/.test(await byId("dry-run").innerText()))
    throw new Error("the dry run shows no verifier evidence");
  await shot("04-wizard-review");
  await byId("run-start").click();
  await byId("run-page").waitFor();
  log("run started: waiting for it to finish");
  await page.locator('[data-testid="progress-step"]').waitFor({ timeout: 60000 }).catch(() => {});
  await page.waitForTimeout(1500);
  await shot("05-run-live");
  const state = byId("run-state");
  for (let i = 0; ; i++) {
    const s = (await state.textContent())?.trim();
    if (s === "done") break;
    if (s === "failed" || s === "cancelled") {
      await shot("05-run-failed");
      const rounds = await page.locator('[data-testid="rounds"]').textContent().catch(() => "");
      throw new Error(`the run ended ${s}: ${rounds}`);
    }
    if (i > 1200) throw new Error(`the run did not finish in 10 minutes (state ${s})`);
    await page.waitForTimeout(500);
  }
  await page.locator('[data-testid="scoreboard"] table').waitFor({ timeout: 30000 });
  // Round 0's judged win rate over the untrained model: a percentage with its counts in the title.
  const win = page.locator('[data-testid="score-round-0"] [data-testid="win-rate"]');
  const winText = (await win.textContent())?.trim() ?? "";
  if (!/^\d+%$/.test(winText)) throw new Error(`round 0 shows no win rate: "${winText}"`);
  const winTitle = (await win.getAttribute("title")) ?? "";
  if (!/\d+ wins, \d+ ties, \d+ losses; judged by numeric/.test(winTitle))
    throw new Error(`the win rate's title lacks its counts: "${winTitle}"`);
  // Round 0 against the base, problem by problem: a difference with its interval and counts.
  const vsBase = page.locator('[data-testid="score-round-0"] [data-testid="vs-base"] .paired');
  const vsText = (await vsBase.textContent())?.trim() ?? "";
  if (!/^[+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]$/.test(vsText))
    throw new Error(`round 0 shows no paired comparison with the base: "${vsText}"`);
  const vsTitle = (await vsBase.getAttribute("title")) ?? "";
  if (!/\d+ problems better, \d+ worse of \d+; 95% CI .* McNemar p = /.test(vsTitle))
    throw new Error(`the paired comparison's title lacks its counts: "${vsTitle}"`);
  const fixes = (await page.locator('[data-testid="score-base"] [data-testid="refine-fixes"]').textContent())?.trim();
  if (!/^\d+\/\d+$/.test(fixes ?? "")) throw new Error(`the base row shows no refinement fixes: "${fixes}"`);
  await page.setViewportSize({ width: 1280, height: 1500 });
  await page.waitForTimeout(800);
  await shot("06-run-done");
  await page.setViewportSize({ width: 1280, height: 860 });

  log("pairs: veto one");
  await page.goto(url.split("#")[0] + "#/pairs");
  const first = page.locator('[data-testid^="pair-"][data-review]').first();
  await first.waitFor({ timeout: 30000 });
  const pairId = await first.getAttribute("data-testid");
  await page.locator(`[data-testid="${pairId}"] [data-testid="veto"]`).click();
  await page.locator(`[data-testid="${pairId}"][data-review="vetoed"]`).waitFor({ timeout: 10000 });
  await shot("07-pairs-vetoed");

  log("models: check the adapter, export it as GGUF LoRA");
  await page.goto(url.split("#")[0] + "#/models");
  const adapter = page.locator('[data-testid^="adapter-"]').first();
  await adapter.waitFor({ timeout: 30000 });
  await adapter.getByTestId("check-applied").click();
  await adapter.getByTestId("applied-badge").waitFor({ timeout: 60000 });
  const applied = (await adapter.getByTestId("applied-badge").textContent())?.trim();
  if (applied !== "applied") throw new Error(`adapter check says "${applied}"`);
  await adapter.getByTestId("export-format").selectOption("gguf_lora");
  await adapter.getByTestId("export-dir").fill(exportDir);
  await adapter.getByTestId("export").click();
  await adapter.getByTestId("export-result").waitFor({ timeout: 60000 });
  const exported = (await adapter.locator('[data-testid="export-result"] .mono').textContent())?.trim();
  if (!exported || !exported.startsWith(exportDir) || !existsSync(exported)) {
    throw new Error(`export reported ${exported}, which is not a file in ${exportDir}`);
  }
  await page.setViewportSize({ width: 1280, height: 1100 });
  await page.waitForTimeout(300);
  await shot("08-models-exported");
  log(`exported ${exported}`);

  if (process.env.E2E_DISCOVER) {
    log("models: found on this machine, register the Ollama one");
    const rows = page.getByTestId("discovered-row");
    const ollama = rows.filter({ hasText: "tiny:latest" });
    await ollama.waitFor({ timeout: 30000 });
    await rows.filter({ hasText: "bartowski/Tiny-GGUF/tiny-Q8_0.gguf" }).waitFor({ timeout: 5000 });
    const broken = (await rows.filter({ hasText: "broken:latest" }).getByTestId("discovered-problem").textContent()) ?? "";
    if (!broken.includes("broken manifest")) throw new Error(`the broken manifest is shown as "${broken}"`);
    await ollama.getByTestId("discovered-register").click();
    await ollama.getByText("registered").waitFor({ timeout: 30000 });
    await page.getByTestId("discovered").scrollIntoViewIfNeeded();
    await page.waitForTimeout(300);
    await shot("09-models-discovered");
  }
} catch (e) {
  failed = true;
  console.error(`E2E FAILED: ${e.stack ?? e}`);
  await shot("99-failure").catch(() => {});
} finally {
  await browser.close();
}
if (problems.length) {
  failed = true;
  console.error(`console errors or CSP violations:\n${problems.join("\n")}`);
}
log(failed ? "failed" : "passed");
process.exit(failed ? 1 : 0);
