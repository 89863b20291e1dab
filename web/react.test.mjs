// The React hook under Node: jsdom for the DOM, React's own act(), a fake
// clock, and a fake service that answers polls as the real one does (ETag,
// 304 when nothing changed). node --test web/
import assert from "node:assert/strict";
import { test } from "node:test";

import { fakeTime as sharedFakeTime } from "./fake-time.mjs";
import { PresenceClient } from "./presence.js";

const deps = await Promise.all([import("jsdom"), import("react"), import("react-dom/client")]).catch(() => null);
if (!deps) {
  const message = "react, react-dom or jsdom is missing: run `npm ci --prefix web`";
  if (process.env.CI) throw new Error(`CI must run the React hook's tests, but ${message}`);
  console.error(`\n!!! SKIPPED the React hook's tests: ${message} !!!\n`);
}
const [{ JSDOM }, React, { createRoot }] = deps ?? [{}, {}, {}];
const { usePresence } = deps ? await import("./react.js") : {};

if (deps) {
  const { window } = new JSDOM("<!doctype html><div id=root></div>");
  globalThis.window = window;
  globalThis.document = window.document;
  globalThis.IS_REACT_ACT_ENVIRONMENT = true;
}

/** The shared fake clock, each timer run inside React's act(). */
function fakeTime() {
  return sharedFakeTime({ start: "2026-11-24T10:00:00Z", wrap: (run) => React.act(run) });
}

/** The service: statuses by user, answering `POST /api/status/query` with ETags. */
function fakeService() {
  const statuses = new Map();
  const polls = [];
  const fetch = async (url, init) => {
    assert.ok(url.endsWith("/api/status/query"), url);
    const { userIds } = JSON.parse(init.body);
    polls.push(userIds);
    const body = {
      statuses: userIds.map(
        (userId) =>
          statuses.get(userId) ?? { userId, status: "offline", lastSeen: null, statusMessage: null, platforms: [], nextChangeAt: null },
      ),
    };
    const etag = `"${JSON.stringify(body).length}-${JSON.stringify(body)}"`.replaceAll(/[^ -~]/g, "");
    const headers = { get: (name) => (name.toLowerCase() === "etag" ? etag : null) };
    if (init.headers["If-None-Match"] === etag) return { status: 304, ok: false, headers, json: async () => null };
    return { status: 200, ok: true, headers, json: async () => body };
  };
  return {
    fetch,
    polls,
    set(userId, status) {
      statuses.set(userId, { userId, status, lastSeen: null, statusMessage: null, platforms: ["web"], nextChangeAt: null });
    },
  };
}

/** Mounts a roster of `ids`; returns what each render saw, and controls. */
function mount(client, ids) {
  const renders = [];
  function Roster({ userIds }) {
    const statuses = usePresence(client, userIds);
    renders.push(statuses);
    return React.createElement(
      "ul",
      null,
      [...statuses.values()].map((status) => React.createElement("li", { key: status.userId, "data-status": status.status }, status.userId)),
    );
  }
  const container = document.createElement("div");
  const root = createRoot(container);
  const render = (userIds) => React.act(() => root.render(React.createElement(Roster, { userIds })));
  return { renders, container, render, unmount: () => React.act(() => root.unmount()), ready: render(ids) };
}

function setup() {
  const time = fakeTime();
  const service = fakeService();
  const client = new PresenceClient({
    token: "t0ken",
    deviceId: "tab-1",
    fetch: service.fetch,
    now: time.now,
    setTimeout: time.setTimeout,
    clearTimeout: time.clearTimeout,
    random: () => 0.5,
    pollIntervalMs: 3000,
  });
  return { time, service, client };
}

const shown = (container) => [...container.querySelectorAll("li")].map((li) => `${li.textContent}:${li.dataset.status}`);

test("the hook re-renders only when a status changes", { skip: !deps }, async () => {
  const { time, service, client } = setup();
  service.set("alice", "online");
  const roster = mount(client, ["alice", "bob"]);
  await roster.ready;
  assert.equal(roster.renders.length, 1, "the first render, before any answer");
  assert.deepEqual(shown(roster.container), []);

  await time.advance(0);
  assert.deepEqual(shown(roster.container), ["alice:online", "bob:offline"]);
  const afterFirstAnswer = roster.renders.length;

  // Ten polls of nothing new: 304s, no render.
  await time.advance(30_000);
  assert.equal(service.polls.length, 11);
  assert.equal(roster.renders.length, afterFirstAnswer, "unchanged polls cost no render");

  service.set("bob", "dnd");
  await time.advance(3000);
  assert.deepEqual(shown(roster.container), ["alice:online", "bob:dnd"]);
  assert.equal(roster.renders.length, afterFirstAnswer + 1, "one render for one change");
  await roster.unmount();
});

test("the hook stops polling on unmount", { skip: !deps }, async () => {
  const { time, service, client } = setup();
  const roster = mount(client, ["alice"]);
  await roster.ready;
  await time.advance(6000);
  const polls = service.polls.length;
  assert.ok(polls >= 2, `polled ${polls} times while mounted`);

  await roster.unmount();
  assert.equal(time.pending(), 0, "no poll left scheduled");
  await time.advance(60_000);
  assert.equal(service.polls.length, polls, "no poll after unmount");
});

test("the hook follows a changed id list", { skip: !deps }, async () => {
  const { time, service, client } = setup();
  for (const user of ["alice", "bob", "carol"]) service.set(user, "online");
  const roster = mount(client, ["bob", "alice"]);
  await roster.ready;
  await time.advance(0);
  assert.deepEqual(service.polls.at(-1), ["alice", "bob"], "the ids, sorted and without duplicates");

  // The same ids in another order: the same watch, no new poll.
  await roster.render(["alice", "bob", "alice"]);
  assert.equal(time.pending(), 1);
  await time.advance(0);
  assert.equal(service.polls.length, 1);

  // Bob leaves the list and Carol joins: Alice stays shown until the new list is answered.
  await roster.render(["alice", "carol"]);
  assert.deepEqual(shown(roster.container), ["alice:online"]);
  await time.advance(0);
  assert.deepEqual(service.polls.at(-1), ["alice", "carol"]);
  assert.deepEqual(shown(roster.container), ["alice:online", "carol:online"]);
  assert.equal(time.pending(), 1, "the old list's watch is stopped");
  await roster.unmount();
});
