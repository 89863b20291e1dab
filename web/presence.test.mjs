// Unit tests of the browser client's polling: node --test web/
import assert from "node:assert/strict";
import { test } from "node:test";

import { fakeTime } from "./fake-time.mjs";
import { PresenceClient, tabDeviceId } from "./presence.js";


function response(status, body, headers = {}) {
  return {
    status,
    ok: status >= 200 && status < 300,
    headers: { get: (name) => headers[name] ?? headers[name.toLowerCase()] ?? null },
    json: async () => body,
  };
}

function status(userId, overrides = {}) {
  return { userId, status: "online", lastSeen: null, statusMessage: null, platforms: ["web"], nextChangeAt: null, ...overrides };
}

function client(time, replies, extra = {}) {
  const requests = [];
  const fetch = async (url, init) => {
    requests.push({ url, ...init });
    const reply = replies.shift();
    if (reply instanceof Error) throw reply;
    assert.ok(reply, `a reply for request ${requests.length}`);
    return reply;
  };
  const presence = new PresenceClient({
    token: "t0ken",
    deviceId: "tab-1",
    fetch,
    now: time.now,
    setTimeout: time.setTimeout,
    clearTimeout: time.clearTimeout,
    random: () => 0.5,
    ...extra,
  });
  return { presence, requests };
}

// A seeded generator, so that the spreads below are the same in every run.
function seeded(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test("a poll sends back the ETag of the last answer and calls back only on change", async () => {
  const time = fakeTime();
  const first = { statuses: [status("a"), status("b")] };
  const { presence, requests } = client(time, [
    response(200, first, { ETag: '"v1"' }),
    response(304, undefined, { ETag: '"v1"' }),
    response(200, first, { ETag: '"v1b"' }),
    response(200, { statuses: [status("a", { status: "idle" }), status("b")] }, { ETag: '"v2"' }),
  ]);
  const calls = [];
  presence.watch(["a", "b", "a"], (changed, all) => calls.push({ changed, all }));

  await time.next();
  assert.equal(calls.length, 1, "the first answer is a change");
  assert.deepEqual(JSON.parse(requests[0].body), { userIds: ["a", "b"] });
  assert.equal(requests[0].headers.Authorization, "Bearer t0ken");
  assert.equal(requests[0].headers["If-None-Match"], undefined);

  await time.next();
  assert.equal(requests[1].headers["If-None-Match"], '"v1"', "the ETag is reused");
  assert.equal(calls.length, 1, "a 304 calls nothing");

  await time.next();
  assert.equal(calls.length, 1, "an identical body calls nothing");
  assert.equal(requests[2].headers["If-None-Match"], '"v1"');

  await time.next();
  assert.equal(requests[3].headers["If-None-Match"], '"v1b"');
  assert.equal(calls.length, 2);
  assert.deepEqual(calls[1].changed.map((s) => s.userId), ["a"], "only the changed user is reported");
});

test("a status that changes by the clock shows at the next regular poll, which nothing brings forward", async () => {
  const time = fakeTime();
  const soon = new Date(time.now() + 1_000).toISOString();
  const { presence } = client(time, [
    response(200, { statuses: [status("a", { nextChangeAt: soon })] }, { ETag: '"x"' }),
    response(200, { statuses: [status("a", { status: "idle" })] }, { ETag: '"y"' }),
  ]);
  const calls = [];
  presence.watch(["a"], (changed) => calls.push(changed));
  await time.next();
  const waited = await time.next();
  assert.equal(waited, 2_850, "the regular interval (a twentieth less, random() being 0.5), not a poll at the change");
  assert.equal(calls.length, 2, "the change shows at that poll");
});

test("watchers told of the same nextChangeAt do not poll together in the second after it", async () => {
  // Others see activity floored to the minute: at a minute's turn the statuses
  // of everyone who paused in one minute change, and nearly every watcher was
  // told so. 600 watchers, started over one interval, each on its own rhythm.
  const time = fakeTime({ start: "2026-11-23T10:00:00Z" });
  const turn = Date.parse("2026-11-23T10:00:30Z");
  const sent = [];
  const presence = new PresenceClient({
    token: "t0ken", deviceId: "tab-1", now: time.now, setTimeout: time.setTimeout,
    clearTimeout: time.clearTimeout, random: seeded(7),
    fetch: async () => {
      sent.push(time.now());
      const before = time.now() < turn;
      const changing = before ? { nextChangeAt: new Date(turn).toISOString() } : { status: "idle" };
      return response(200, { statuses: [status("a", changing)] }, { ETag: before ? '"1"' : '"2"' });
    },
  });
  for (let i = 0; i < 600; i += 1) {
    presence.watch(["a"], () => {});
    await time.advance(5);
  }
  await time.advance(turn + 3_000 - time.now());
  const inSecondAfter = sent.filter((at) => at >= turn && at < turn + 1_000).length;
  const inIntervalAfter = sent.filter((at) => at >= turn && at < turn + 3_000).length;
  assert.ok(inIntervalAfter >= 600, `every watcher polled within the interval after the change: ${inIntervalAfter}`);
  // Each on its own rhythm, about a third of them poll in that second.
  assert.ok(inSecondAfter <= 300, `${inSecondAfter} of 600 watchers polled in the second after the change`);
});

test("the next poll counts from when the last was sent, so a slow answer does not put clients in step", async () => {
  const time = fakeTime();
  // Each answer comes a second after its request: the server paused.
  let lag = 0;
  const presence = new PresenceClient({
    token: "t0ken", deviceId: "tab-1", now: () => time.now() + lag, setTimeout: time.setTimeout,
    clearTimeout: time.clearTimeout, random: () => 0.5,
    fetch: async () => {
      lag += 1_000;
      return response(304);
    },
  });
  presence.watch(["a"], () => {});
  await time.next();
  const waited = await time.next();
  assert.equal(waited, 1_850, "the interval (2,850 ms with random() at 0.5) less the second the poll took");
  // Never less than half the interval, however slow: an overloaded server is not polled at once.
  assert.equal(presence.afterPoll(3_000, 10_000), 2_250, "half the interval and half of the rest (random() being 0.5)");
});

test("clients a paused server answered in the same moment poll again anywhere from half the interval to the whole of it", () => {
  const client = new PresenceClient({ token: "t0ken", deviceId: "tab-1", fetch: async () => response(304), now: () => 0, random: seeded(3) });
  // A thousand clients whose polls all waited 10 s on a pause, answered together.
  const waits = Array.from({ length: 1_000 }, () => client.afterPoll(3_000, 10_000));
  const tenths = new Array(10).fill(0);
  for (const wait of waits) {
    assert.ok(wait >= 1_500 && wait <= 3_000, `a wait of ${wait} ms: between half the interval and the whole`);
    tenths[Math.min(9, Math.floor((wait - 1_500) / 150))] += 1;
  }
  // Spread evenly over those 1.5 s: no tenth of them takes more than twice its share.
  assert.ok(Math.max(...tenths) <= 200, `polls per tenth of the 1.5 s: ${tenths}`);
  // An answer that leaves half the interval or more keeps the interval counted from the send.
  assert.equal(new PresenceClient({ token: "t", deviceId: "d", fetch: async () => response(304), random: () => 0 }).afterPoll(3_000, 1_500), 1_500);
});

test("a heartbeat counts from when the last ping was sent, up to a tenth sooner at random, so tabs a paused server answered together do not stay in step", async () => {
  const waits = [];
  for (const random of [0.1, 0.9]) {
    const time = fakeTime();
    // Each answer comes 4 s after its ping: the server paused.
    let lag = 0;
    const presence = new PresenceClient({
      token: "t0ken", deviceId: "tab-1", now: () => time.now() + lag, setTimeout: time.setTimeout,
      clearTimeout: time.clearTimeout, random: () => random,
      fetch: async () => {
        lag += 4_000;
        return response(200, { pingIntervalSeconds: 30 });
      },
    });
    presence.start();
    await new Promise((resolve) => setImmediate(resolve));
    waits.push(await time.next(), await time.next());
    presence.stop();
  }
  assert.deepEqual(waits, [25_700, 25_700, 23_300, 23_300], "30 s less a tenth of random(), less the 4 s the ping took");
});

test("regular polls drift apart, so clients that polled together do not stay in step", () => {
  const clients = [1, 2].map((seed) => new PresenceClient({
    token: "t0ken", deviceId: `tab-${seed}`, fetch: async () => response(304), now: () => 0, random: seeded(seed),
  }));
  const intervals = clients.map((client) => Array.from({ length: 50 }, () => client.afterPoll(3_000, 0)));
  for (const interval of intervals.flat()) {
    assert.ok(interval >= 2_700 && interval <= 3_000, `an interval of ${interval} ms: 3 s, or up to a tenth less`);
  }
  const drift = intervals[0].reduce((a, b) => a + b) - intervals[1].reduce((a, b) => a + b);
  assert.ok(Math.abs(drift) >= 150, `after 50 polls the two are ${drift} ms apart`);
});

test("errors back off exponentially with jitter, and Retry-After is honoured", async () => {
  const time = fakeTime();
  const jitters = [0, 0.99, 0.5];
  const { presence } = client(
    time,
    [
      new TypeError("offline"),
      new TypeError("offline"),
      response(503, { error: { code: "DATABASE_UNAVAILABLE" } }, { "Retry-After": "7" }),
      response(200, { statuses: [status("a")] }, { ETag: '"x"' }),
      response(304),
    ],
    { random: () => jitters.shift() ?? 0.5 },
  );
  presence.watch(["a"], () => {});
  await time.next();
  const first = await time.next();
  const second = await time.next();
  const afterRetryAfter = await time.next();
  const afterSuccess = await time.next();
  assert.equal(first, 500, "1 s × 0.5 jitter");
  assert.ok(Math.abs(second - 2_980) < 1, `2 s × 1.49 jitter, got ${second}`);
  assert.equal(afterRetryAfter, 7_000, "Retry-After in seconds");
  assert.equal(afterSuccess, 2_850, "back to the interval (less a twentieth) after a success");
});

test("watching stops when asked", async () => {
  const time = fakeTime();
  const { presence, requests } = client(time, [response(200, { statuses: [status("a")] }, { ETag: '"x"' })]);
  const stop = presence.watch(["a"], () => {});
  await time.next();
  stop();
  assert.equal(time.pending(), 0);
  assert.equal(requests.length, 1);
});

test("pings: an activity ping at start, heartbeats at the server's interval, input throttled", async () => {
  const time = fakeTime();
  const listeners = {};
  const window = {
    addEventListener: (type, listener) => (listeners[type] = listener),
    removeEventListener: (type) => delete listeners[type],
  };
  const self = { pingIntervalSeconds: 20 };
  const { presence, requests } = client(time, [response(200, self), response(200, self), response(200, self), response(200, self)], {
    window,
    document: { visibilityState: "visible" },
    activityThrottleMs: 5_000,
  });
  presence.start();
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(JSON.parse(requests[0].body), { deviceId: "tab-1", platform: "web", active: true });

  listeners.pointerdown();
  assert.equal(requests.length, 1, "input within the throttle window sends nothing");
  const waited = await time.next();
  assert.equal(waited, 19_000, "heartbeat after pingIntervalSeconds, a twentieth less (random() being 0.5)");
  assert.equal(JSON.parse(requests[1].body).active, false);

  listeners.keydown();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(JSON.parse(requests[2].body).active, true, "input after the window is activity");

  presence.signOut();
  assert.equal(requests[3].method, "DELETE");
  assert.equal(requests[3].url, "/api/status/devices/tab-1");
  assert.equal(requests[3].keepalive, true);
  assert.equal(listeners.pointerdown, undefined, "signed out: no more listeners");
});

test("every kind of interaction counts, throttled", async () => {
  const time = fakeTime();
  const listeners = {};
  const window = {
    addEventListener: (type, listener) => (listeners[type] = listener),
    removeEventListener: (type) => delete listeners[type],
  };
  const { presence, requests } = client(time, [response(200, {}), response(200, {}), response(200, {})], {
    window,
    document: { visibilityState: "visible" },
    activityThrottleMs: 10_000,
  });
  presence.start();
  await new Promise((resolve) => setImmediate(resolve));
  for (const type of ["pointermove", "wheel", "touchstart"]) {
    assert.ok(listeners[type], `${type} is listened to`);
    listeners[type]();
  }
  assert.equal(requests.length, 1, "within the throttle window: nothing more");
  time.setTimeout(() => {}, 10_000);
  await time.next();
  listeners.wheel();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(JSON.parse(requests[1].body).active, true, "a wheel after the window is activity");
});

test("a page restored from the back/forward cache signs in again and polls at once", async () => {
  const time = fakeTime();
  const listeners = {};
  const window = {
    addEventListener: (type, listener) => (listeners[type] = listener),
    removeEventListener: (type) => delete listeners[type],
  };
  const { presence, requests } = client(
    time,
    [
      response(200, {}),
      response(200, { statuses: [status("a")] }, { ETag: '"x"' }),
      response(204, {}),
      response(200, {}),
      response(304),
    ],
    { window, document: { visibilityState: "visible" } },
  );
  presence.start();
  presence.watch(["a"], () => {});
  await time.next();
  listeners.pagehide();
  assert.equal(requests[2].method, "DELETE", "signed out on pagehide");
  listeners.pageshow({ persisted: false });
  assert.equal(requests.length, 3, "a normal pageshow does nothing");
  listeners.pageshow({ persisted: true });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(JSON.parse(requests[3].body).active, true, "an activity ping again");
  assert.ok(listeners.pointerdown, "listening to input again");
  const waited = await time.next();
  assert.equal(waited, 0, "a poll at once");
  assert.equal(requests[4].url, "/api/status/query");
});

test("a hidden tab only heartbeats", async () => {
  const time = fakeTime();
  const { presence, requests } = client(time, [response(200, {})], { document: { visibilityState: "hidden" } });
  await presence.activity(true);
  assert.equal(JSON.parse(requests[0].body).active, false);
});

test("the device id is stable for a tab and new for another", () => {
  const store = () => {
    const values = new Map();
    return { getItem: (k) => values.get(k) ?? null, setItem: (k, v) => values.set(k, v) };
  };
  const tab = store();
  assert.equal(tabDeviceId(tab), tabDeviceId(tab));
  assert.notEqual(tabDeviceId(tab), tabDeviceId(store()));
  assert.match(tabDeviceId(tab), /^[A-Za-z0-9._:-]{1,64}$/);
});

test("history asks for the caller's own range and returns the segments", async () => {
  const time = fakeTime();
  const body = { from: "a", to: "b", segments: [{ status: "online", from: "a", to: "b" }], sessions: [] };
  const { presence, requests } = client(time, [response(200, body), response(400, { error: { code: "INVALID_TIMESTAMP", message: "from must be before to" } })]);
  const from = new Date("2026-11-23T00:00:00Z");
  assert.deepEqual(await presence.history({ from, to: Date.parse("2026-11-23T10:00:00Z") }), body);
  assert.equal(
    requests[0].url,
    "/api/status/history?from=2026-11-23T00%3A00%3A00.000Z&to=2026-11-23T10%3A00%3A00.000Z",
  );
  assert.equal(requests[0].headers.Authorization, "Bearer t0ken");
  await assert.rejects(presence.history({ from, to: from }), { code: "INVALID_TIMESTAMP" });
});

/** A client whose fetch answers by `METHOD path` (`path` without the query). */
function routedClient(time, route, extra = {}) {
  const requests = [];
  const fetch = async (url, init) => {
    const path = url.split("?")[0];
    requests.push({ url, path, ...init });
    return route(`${init.method} ${path}`, init, url);
  };
  const presence = new PresenceClient({
    token: "t0ken",
    deviceId: "tab-1",
    fetch,
    now: time.now,
    setTimeout: time.setTimeout,
    clearTimeout: time.clearTimeout,
    random: () => 0.5,
    ...extra,
  });
  return { presence, requests };
}

const joined = (overrides = {}) => ({
  roomId: "doc:42", deviceId: "tab-1", joinedAt: "2026-11-23T10:00:00.000Z",
  state: null, typing: false, heartbeatIntervalSeconds: 20, ...overrides,
});

test("a room is joined, renewed on the server's interval and polled with its ETag", async () => {
  const time = fakeTime();
  const room = { roomId: "doc:42", occupancy: 1, members: [], next: null };
  let polls = 0;
  const { presence, requests } = routedClient(time, (request, init) => {
    if (request === "PUT /api/rooms/doc%3A42/presence") return response(200, joined({ state: JSON.parse(init.body).state ?? null }));
    if (request === "GET /api/rooms/doc%3A42") {
      polls += 1;
      return polls === 1 ? response(200, room, { ETag: '"r1"' }) : response(304, undefined, { ETag: '"r1"' });
    }
    throw new Error(`unexpected ${request}`);
  });
  const changes = [];
  const handle = presence.joinRoom("doc:42", { state: { page: 1 }, onChange: (room) => changes.push(room) });
  const presenceAnswer = await handle.joined;
  assert.deepEqual(presenceAnswer.state, { page: 1 });
  assert.deepEqual(JSON.parse(requests[0].body), { deviceId: "tab-1", state: { page: 1 } });

  await time.next(); // the first poll
  assert.deepEqual(changes, [room]);
  assert.equal(requests.at(-1).url, "/api/rooms/doc%3A42?limit=100");
  await time.next(); // the second poll, 3 s later: a 304 calls nothing
  assert.equal(requests.at(-1).headers["If-None-Match"], '"r1"');
  assert.equal(changes.length, 1);

  // The renewal comes 20 s after the join (or up to a tenth sooner), with no state: the stored one stays.
  await time.advance(20_000);
  const renewals = requests.filter((r) => r.method === "PUT");
  assert.equal(renewals.length, 2);
  assert.deepEqual(JSON.parse(renewals[1].body), { deviceId: "tab-1" });
});

test("a room's renewal counts from when the last was sent, up to a tenth sooner at random", async () => {
  const time = fakeTime();
  // Each join or renewal is answered 2 s after it was sent: the server paused.
  let lag = 0;
  const renewals = [];
  const { presence } = routedClient(time, (request) => {
    if (request === "PUT /api/rooms/doc%3A42/presence") {
      renewals.push(time.now());
      lag += 2_000;
      return response(200, joined());
    }
    return response(304);
  }, { now: () => time.now() + lag });
  const handle = presence.joinRoom("doc:42");
  await handle.joined;
  await time.advance(40_000);
  assert.deepEqual(renewals.map((at) => at - renewals[0]), [0, 17_000, 34_000], "20 s less a twentieth (random() being 0.5), less the 2 s each took");
  handle.leave();
});

test("typing is sent at most every half TTL, and leaving stops everything", async () => {
  const time = fakeTime();
  const { presence, requests } = routedClient(time, (request) => {
    if (request.startsWith("PUT ")) return response(200, joined());
    if (request.startsWith("GET ")) return response(304);
    if (request.startsWith("DELETE ")) return response(204);
    throw new Error(`unexpected ${request}`);
  });
  const handle = presence.joinRoom("doc:42", { typingTtlMs: 6_000 });
  await handle.joined;
  const typed = () => requests.filter((r) => r.method === "PUT" && JSON.parse(r.body).typing === true).length;
  handle.typing();
  handle.typing();
  assert.equal(typed(), 1, "keystrokes within half the TTL send nothing more");
  await time.advance(2_999);
  handle.typing();
  assert.equal(typed(), 1);
  await time.advance(1);
  handle.typing();
  assert.equal(typed(), 2, "renewed half a TTL later, before it could end");
  await handle.stopTyping();
  assert.equal(JSON.parse(requests.filter((r) => r.method === "PUT").at(-1).body).typing, false);

  await handle.leave();
  const last = requests.at(-1);
  assert.equal(`${last.method} ${last.path}`, "DELETE /api/rooms/doc%3A42/presence/tab-1");
  assert.equal(last.keepalive, true, "a leave survives the page unloading");
  const count = requests.length;
  await time.advance(60_000);
  assert.equal(requests.length, count, "no renewal or poll after leaving");
  await assert.rejects(handle.setState({ page: 2 }), /left/);
});

test("a room is left on pagehide and joined again when the page comes back", async () => {
  const time = fakeTime();
  const window = new EventTarget();
  const { presence, requests } = routedClient(
    time,
    (request) => {
      if (request.startsWith("PUT ")) return response(200, joined());
      if (request.startsWith("GET ")) return response(304);
      return response(204);
    },
    { window },
  );
  const handle = presence.joinRoom("doc:42");
  await handle.joined;
  window.dispatchEvent(new Event("pagehide"));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(requests.at(-1).method, "DELETE");
  const back = Object.assign(new Event("pageshow"), { persisted: true });
  window.dispatchEvent(back);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(requests.at(-1).method, "PUT", "joined again after a back/forward-cache restore");
});

test("a refused join rejects with the contract's code", async () => {
  const time = fakeTime();
  const { presence } = routedClient(time, (request) => {
    if (request.startsWith("PUT ")) {
      return response(404, { error: { code: "NOT_FOUND", message: "no such room" } });
    }
    return response(404, { error: { code: "NOT_FOUND", message: "no such room" } });
  });
  const handle = presence.joinRoom("secret");
  await assert.rejects(handle.joined, (error) => error.status === 404 && error.code === "NOT_FOUND");
  handle.leave();
});
