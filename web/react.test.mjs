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
const { usePresence, useRoom } = deps ? await import("./react.js") : {};

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

/** A room service: members by room, answering room reads with ETags, and the room pings and leaves. */
function fakeRoomService() {
  const rooms = new Map();
  const requests = [];
  const fetch = async (url, init) => {
    const path = url.split("?")[0];
    requests.push(`${init.method} ${path}`);
    const room = decodeURIComponent(path.split("/")[3]);
    if (init.method === "PUT") {
      const { deviceId, state } = JSON.parse(init.body);
      const members = rooms.get(room) ?? [];
      if (!members.some((member) => member.userId === "me")) members.push({ userId: "me", state: state ?? null, typing: false });
      if (state !== undefined) members.find((member) => member.userId === "me").state = state;
      rooms.set(room, members);
      const body = { roomId: room, deviceId, joinedAt: "2026-11-24T10:00:00.000Z", state: state ?? null, typing: false, heartbeatIntervalSeconds: 20 };
      return { status: 200, ok: true, headers: { get: () => null }, json: async () => body };
    }
    if (init.method === "DELETE") {
      rooms.set(room, (rooms.get(room) ?? []).filter((member) => member.userId !== "me"));
      return { status: 204, ok: true, headers: { get: () => null }, json: async () => null };
    }
    const members = rooms.get(room) ?? [];
    const body = { roomId: room, occupancy: members.length, members, next: null };
    const etag = `"${JSON.stringify(body).replaceAll(/[^ -~]/g, "")}"`;
    const headers = { get: (name) => (name.toLowerCase() === "etag" ? etag : null) };
    if (init.headers["If-None-Match"] === etag) return { status: 304, ok: false, headers, json: async () => null };
    return { status: 200, ok: true, headers, json: async () => body };
  };
  return { fetch, rooms, requests };
}

test("useRoom joins on mount, shows the room, sets state and leaves on unmount or a new room", { skip: !deps }, async () => {
  const time = fakeTime();
  const service = fakeRoomService();
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
  const seen = [];
  let controls;
  function Room({ roomId }) {
    const { room, setState, typing } = useRoom(client, roomId, { state: { page: 1 } });
    controls = { setState, typing };
    seen.push(room);
    return React.createElement("p", null, room ? `${room.roomId}:${room.occupancy}:${JSON.stringify(room.members[0]?.state)}` : "joining");
  }
  const container = document.createElement("div");
  const root = createRoot(container);
  const render = (roomId) => React.act(() => root.render(React.createElement(Room, { roomId })));
  await render("doc:1");
  assert.equal(container.textContent, "joining");
  await time.advance(0);
  assert.equal(container.textContent, 'doc:1:1:{"page":1}');
  const renders = seen.length;
  await time.advance(30_000);
  assert.equal(seen.length, renders, "unchanged polls cost no render");
  assert.ok(service.requests.filter((request) => request.startsWith("PUT")).length >= 2, "renewed on the server's interval");

  await React.act(async () => controls.setState({ page: 2 }));
  await time.advance(0);
  assert.equal(container.textContent, 'doc:1:1:{"page":2}');

  // Another room: the first is left, the second joined; nothing of the first shows meanwhile.
  await render("doc:2");
  assert.equal(container.textContent, "joining");
  assert.ok(service.requests.includes("DELETE /api/rooms/doc%3A1/presence/tab-1"));
  await time.advance(0);
  assert.equal(container.textContent, 'doc:2:1:{"page":1}');
  await React.act(() => root.unmount());
  assert.ok(service.requests.includes("DELETE /api/rooms/doc%3A2/presence/tab-1"));
  assert.equal(time.pending(), 0, "no renewal or poll left scheduled");
});
