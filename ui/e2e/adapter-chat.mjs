#!/usr/bin/env node
// A trained adapter as a user meets it in the app: checked on the Models screen ("applied"),
// then a chat with it, its answer and refinement cards scored. Run against `evolve serve` on a
// data directory that holds the adapter (docs/real-model.md uses it on the study's last EVOLVE
// adapter):
//
//   node ui/e2e/adapter-chat.mjs <url-with-token> <screenshot-dir> <adapter-id> <question>
//   env: E2E_SCORER (default numeric_any), E2E_REFINE (default 1), CHROMIUM
//
// Exit status 0 when the adapter is applied and the chat showed every refinement card.
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const [url, out, adapterId, question] = process.argv.slice(2);
if (!url || !out || !adapterId || !question) {
  console.error("usage: node ui/e2e/adapter-chat.mjs <url> <screenshot-dir> <adapter-id> <question>");
  process.exit(2);
}
const scorer = process.env.E2E_SCORER ?? "numeric_any";
const steps = process.env.E2E_REFINE ?? "1";
mkdirSync(out, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
});
const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: "dark" })).newPage();
const byId = (id) => page.getByTestId(id);
const base = url.split("#")[0];
let failed = false;
try {
  await page.goto(url);
  await page.goto(`${base}#/models`);
  const card = byId(`adapter-${adapterId}`);
  await card.waitFor({ timeout: 30000 });
  await card.getByTestId("check-applied").click();
  await card.getByTestId("applied-badge").waitFor({ timeout: 120000 });
  const applied = (await card.getByTestId("applied-badge").textContent())?.trim();
  console.log(`adapter ${adapterId}: ${applied}`);
  await card.scrollIntoViewIfNeeded();
  await page.screenshot({ path: `${out}/adapter-applied.png` });
  if (applied !== "applied") throw new Error(`the check says "${applied}"`);

  await page.goto(`${base}#/chat`);
  await byId("variant-adapter-btn").click();
  await byId("chat-adapter").selectOption(String(adapterId));
  await byId("refine-steps").fill(steps);
  await byId("chat-scorer").selectOption(scorer);
  await byId("chat-input").fill(question);
  await byId("chat-send").click();
  await page.locator(`[data-testid="refine-step-${steps}"][data-done="true"]`).waitFor({ timeout: 300000 });
  await byId("chat-send").waitFor({ timeout: 60000 });
  await page.waitForTimeout(500);
  await page.screenshot({ path: `${out}/adapter-chat.png` });
  console.log(await byId("conversation").innerText());
} catch (e) {
  failed = true;
  console.error(`FAILED: ${e.stack ?? e}`);
  await page.screenshot({ path: `${out}/failure.png` }).catch(() => {});
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
