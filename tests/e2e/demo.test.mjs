// End to end in headless Chromium: two browser contexts as two users on the
// demo page, against the real server (built by `cargo test`) with short thresholds.
// Run from the repository root: node --test tests/e2e/
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import net from "node:net";
import { after, before, test } from "node:test";

import { chromium } from "playwright-core";

const BINARY = process.env.PRESENCE_BIN ?? "target/debug/presence";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const DATABASE_SERVER = process.env.E2E_DATABASE_SERVER ?? "postgres://postgres@127.0.0.1:5432";
const OFFLINE_AFTER_MS = 6000;
// The server creates this database for the test; the test drops it afterwards.
const DATABASE = `presence_e2e_${randomUUID().replaceAll("-", "")}`;

let server;
let browser;
let base;

function freePort() {
  return new Promise((resolve) => {
    const probe = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

before(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(BINARY, ["serve", "--dev"], {
    env: {
      ...process.env,
      DATABASE_URL: `${DATABASE_SERVER}/${DATABASE}`,
      PRESENCE_ADDR: `127.0.0.1:${port}`,
      PRESENCE_IDLE_AFTER: "3s",
      // Thresholds of seconds want activity times to the millisecond.
      PRESENCE_LAST_SEEN_PRECISION: "0",
      PRESENCE_AWAY_AFTER: "60s",
      PRESENCE_OFFLINE_AFTER: `${OFFLINE_AFTER_MS}ms`,
      PRESENCE_CACHE_TTL: "200ms",
      PRESENCE_SETTINGS_BURST: "1000",
      RUST_LOG: "warn",
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  for (let attempt = 0; attempt < 200; attempt += 1) {
    try {
      if ((await fetch(`${base}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    const exited = new Promise((resolve) => server.once("exit", resolve));
    server.kill("SIGTERM");
    await exited;
  }
  const dropped = spawnSync(
    "psql",
    [`${DATABASE_SERVER}/postgres`, "-qc", `drop database if exists ${DATABASE} with (force)`],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  if (dropped.status !== 0) console.warn(`could not drop the test database ${DATABASE}`);
});

/** Waits until `page` shows `user` in the roster with `status`; returns how long it took. */
async function seen(page, user, status, timeout = 8000) {
  const started = Date.now();
  await page.waitForSelector(`#roster li[data-user="${user}"][data-status="${status}"]`, { timeout });
  return Date.now() - started;
}

test("two users watch each other through the demo page", async () => {
  const [alice, bob] = [randomUUID(), randomUUID()];
  const pageA = await (await browser.newContext()).newPage();
  const pageB = await (await browser.newContext()).newPage();
  await pageA.goto(`${base}/demo?as=${alice}&watch=${bob}`);
  await pageB.goto(`${base}/demo?as=${bob}&watch=${alice}`);

  // Alice interacts (past the client's 1 s throttle): Bob sees her online within a poll or two.
  await seen(pageB, alice, "idle", 8000);
  await pageA.mouse.click(20, 20);
  await seen(pageB, alice, "online", 2500);
  assert.equal(await pageB.locator(`#roster li[data-user="${alice}"] .platforms`).textContent(), "web");

  // Both are in the demo room: what Alice does there, and her typing, show on Bob's page.
  const member = (user) => `#members li[data-user="${user}"]`;
  await pageB.waitForSelector(member(alice), { timeout: 8000 });
  await pageA.waitForSelector(member(bob), { timeout: 8000 });
  assert.equal(await pageB.locator("#occupancy").textContent(), "2");
  await pageA.fill("#doing", "Reviewing");
  await pageA.click("#set-doing");
  await pageB.waitForFunction(
    (selector) => document.querySelector(`${selector} .doing`)?.textContent === "Reviewing",
    member(alice),
    { timeout: 8000 },
  );
  await pageA.type("#chat", "hello", { delay: 50 });
  await pageB.waitForSelector(`${member(alice)}[data-typing="true"]`, { timeout: 8000 });
  assert.match(await pageB.locator("#typing-line").textContent(), /is typing/);
  await pageA.click("#send");
  await pageB.waitForSelector(`${member(alice)}[data-typing="false"]`, { timeout: 8000 });
  assert.equal(await pageB.locator("#typing-line").textContent(), "");

  // Alice's client stops (a laptop lid closing): idle after 3 s, then offline.
  await pageA.evaluate(() => window.presenceClient.stop());
  await seen(pageB, alice, "idle");
  await seen(pageB, alice, "offline");

  // Back, then do not disturb.
  await pageA.evaluate(() => window.presenceClient.start());
  await seen(pageB, alice, "online");
  await pageA.check("#dnd");
  await seen(pageB, alice, "dnd");

  // A status message shows; invisible looks offline.
  await pageA.fill("#message", "Deep work");
  await pageA.click("#set-message");
  await pageB.waitForFunction(
    (user) => document.querySelector(`#roster li[data-user="${user}"] .message`)?.textContent === "Deep work",
    alice,
  );
  // A poll of her own status already on its way when she clicks must not undo
  // the click: hold one such answer back until after the click.
  await pageA.evaluate(() => window.presenceClient.activity(true));
  const ownPoll = (request) =>
    request.url().endsWith("/api/status/query") && request.postDataJSON()?.userIds?.[0] === alice;
  await pageA.route("**/api/status/query", async (route) => {
    const response = await route.fetch();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await route.fulfill({ response });
  });
  await pageA.waitForRequest(ownPoll, { timeout: 8000 });
  const answered = pageA.waitForResponse((response) => ownPoll(response.request()), { timeout: 8000 });
  await pageA.check("#invisible");
  await answered;
  await pageA.unrouteAll({ behavior: "wait" });
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(await pageA.isChecked("#invisible"), true, "a poll from before the click unchecked the box");
  await seen(pageB, alice, "offline");
  assert.equal(await pageB.locator(`#roster li[data-user="${alice}"] .message`).textContent(), "");
  await pageA.uncheck("#invisible");
  await pageA.uncheck("#dnd");
  await seen(pageB, alice, "online");

  // Alice's own day, drawn from /api/status/history, shows the dnd she just left.
  await pageA.waitForSelector('#timeline span[data-status="dnd"]', { timeout: 8000 });
  await pageA.waitForSelector('#timeline span[data-status="online"]', { timeout: 8000 });

  mkdirSync("target/e2e", { recursive: true });
  await pageB.screenshot({ path: "target/e2e/demo.png", fullPage: true });

  // Alice closes the page: her device signs out on pagehide, so Bob sees her
  // offline well before the offline threshold would have.
  const closed = Date.now();
  await pageA.close({ runBeforeUnload: true });
  await seen(pageB, alice, "offline", OFFLINE_AFTER_MS);
  assert.ok(Date.now() - closed < OFFLINE_AFTER_MS, `offline after ${Date.now() - closed} ms`);
  // ... and out of the room, long before the room timeout.
  await pageB.waitForSelector(`#members li[data-user="${alice}"]`, { state: "detached", timeout: OFFLINE_AFTER_MS });
});
