// presence.js: the browser client of the presence service. A dependency-free
// ES module; import it from the server (`/client/presence.js`) or copy it.
//
//   const presence = new PresenceClient({ token, baseUrl: "https://presence.example" });
//   presence.start();                       // activity pings on input, heartbeats, sign-out on pagehide
//   const stop = presence.watch(ids, (changed, all) => render(all));
//   presence.setStatusMessage("In a meeting", new Date(Date.now() + 3600e3));
//   const room = presence.joinRoom("doc:42", { state: { page: 1 }, onChange: (room) => render(room) });
//   input.oninput = () => room.typing();    // throttled; shows for the server's typing TTL
//   room.leave();                           // also on pagehide

/**
 * The API's own types, generated from its OpenAPI document (`api.d.ts`).
 * @typedef {import("./api.js").components["schemas"]} Schemas
 * @typedef {Schemas["Status"]} Status
 * @typedef {Schemas["StatusView"]} UserStatus A user's status as the caller sees it; the caller's own (the self view) adds the fields marked "Self view".
 * @typedef {Schemas["HistoryBody"]} History
 * @typedef {Schemas["PingRequest"]} PingFields
 * @typedef {Schemas["Room"]} Room Who is in a room: its occupancy and one page of members.
 * @typedef {Schemas["RoomMember"]} RoomMember One user in a room, as the caller may see them.
 * @typedef {Schemas["RoomPresence"]} RoomPresence The caller's device's membership of a room.
 * @typedef {{
 *   state?: Record<string, unknown> | null,
 *   onChange?: (room: Room) => void,
 *   limit?: number,
 *   pollIntervalMs?: number,
 *   typingTtlMs?: number,
 * }} RoomOptions `state`: this device's state in the room at the join; `onChange`: called with
 *   the room whenever its answer changes (polled every `pollIntervalMs`, default the client's);
 *   `limit`: how many members to list (default 100; 0 for the occupancy alone); `typingTtlMs`:
 *   the server's `PRESENCE_TYPING_TTL` (default 6 s), which `typing()` renews at half of.
 * @typedef {Date | string | number} Moment A `Date`, an RFC 3339 string or milliseconds since the epoch.
 * @typedef {Error & { status: number, code: string | undefined }} PresenceError An HTTP error answer: its status and the contract's error code.
 * @typedef {{
 *   token: string | (() => string),
 *   baseUrl?: string,
 *   deviceId?: string,
 *   platform?: "web" | "desktop" | "mobile",
 *   activityThrottleMs?: number,
 *   pollIntervalMs?: number,
 *   maxBackoffMs?: number,
 *   fetch?: typeof fetch,
 *   setTimeout?: (callback: () => void, ms: number) => unknown,
 *   clearTimeout?: (handle: unknown) => void,
 *   now?: () => number,
 *   random?: () => number,
 *   window?: EventTarget & { addEventListener: Function, removeEventListener: Function },
 *   document?: EventTarget & { visibilityState?: string },
 *   storage?: DeviceIdStorage,
 * }} PresenceOptions
 * @typedef {{ getItem(key: string): string | null, setItem(key: string, value: string): void }} DeviceIdStorage
 */

const STORAGE_KEY = "presence.deviceId";
// Interactions; the frequent ones (pointermove, wheel, touchstart) cost nothing
// between pings: activity() returns at once within the throttle window.
const INPUT_EVENTS = ["pointerdown", "keydown", "focus", "pointermove", "wheel", "touchstart"];

/**
 * A device id that stays the same for this tab across reloads (sessionStorage), new per tab.
 * @param {DeviceIdStorage | undefined} [storage]
 * @returns {string}
 */
export function tabDeviceId(storage = globalThis.sessionStorage) {
  let id = storage?.getItem(STORAGE_KEY);
  if (!id) {
    const random = globalThis.crypto?.randomUUID?.() ?? Math.random().toString(36).slice(2);
    id = `web-${random}`.slice(0, 64);
    storage?.setItem(STORAGE_KEY, id);
  }
  return id;
}

/** Pings the service for this browser tab and watches other users' statuses. */
export class PresenceClient {
  /** @param {PresenceOptions} options */
  constructor(options) {
    this.options = options;
    this.baseUrl = (options.baseUrl ?? "").replace(/\/$/, "");
    this.platform = options.platform ?? "web";
    this.deviceId = options.deviceId ?? tabDeviceId(options.storage);
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    /** @type {(callback: () => void, ms: number) => unknown} */
    this.setTimeout = options.setTimeout ?? globalThis.setTimeout.bind(globalThis);
    /** @type {(handle: unknown) => void} */
    this.clearTimeout =
      options.clearTimeout ?? /** @type {(handle: unknown) => void} */ (globalThis.clearTimeout.bind(globalThis));
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.window = options.window ?? globalThis.window;
    this.document = options.document ?? globalThis.document;
    this.activityThrottleMs = options.activityThrottleMs ?? 10_000;
    this.pollIntervalMs = options.pollIntervalMs ?? 3_000;
    this.maxBackoffMs = options.maxBackoffMs ?? 60_000;
    this.pingIntervalMs = 30_000;
    this.lastActivityAt = -Infinity;
    /** @type {unknown} */
    this.heartbeatTimer = null;
    this.started = false;
    /** @type {Set<() => void>} Each watch's "poll now", to catch up after a back/forward-cache restore. */
    this.watchers = new Set();
    this.onInput = () => this.activity();
    this.onPageHide = () => this.signOut();
    /** @param {Partial<PageTransitionEvent>} [event] */
    this.onPageShow = (event) => {
      if (!event?.persisted) return;
      // Restored from the back/forward cache: the device was signed out on pagehide.
      this.start();
      for (const pollNow of this.watchers) pollNow();
    };
  }

  /** Starts pinging: one activity ping now, one per interaction (throttled), heartbeats in between. */
  start() {
    if (this.started) return;
    this.started = true;
    for (const type of INPUT_EVENTS) this.window?.addEventListener(type, this.onInput, { passive: true });
    this.window?.addEventListener("pagehide", this.onPageHide);
    // Kept across stop(): a page restored from the back/forward cache starts again.
    this.window?.addEventListener("pageshow", this.onPageShow);
    this.activity(true);
  }

  /** Stops pinging (the device then goes offline for others after the offline threshold). */
  stop() {
    this.started = false;
    for (const type of INPUT_EVENTS) this.window?.removeEventListener(type, this.onInput);
    this.window?.removeEventListener("pagehide", this.onPageHide);
    if (this.heartbeatTimer !== null) this.clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }

  /**
   * An interaction: an activity ping, unless one went out within the throttle window.
   * @returns {Promise<UserStatus> | undefined} the ping's answer, if one was sent
   */
  activity(force = false) {
    if (!force && this.now() - this.lastActivityAt < this.activityThrottleMs) return;
    if (this.document?.visibilityState === "hidden") return this.ping({ active: false });
    return this.ping({ active: true });
  }

  /**
   * Sets or clears (`null`) the manual status, optionally until a moment.
   * @param {"away" | "dnd" | null} status
   * @param {Moment | null} [until]
   * @returns {Promise<UserStatus>} the self view
   */
  setManualStatus(status, until = null) {
    return this.ping({ active: true, manualStatus: status, ...(until ? { manualStatusUntil: iso(until) } : {}) });
  }

  /**
   * Appears offline to everyone else, or not.
   * @param {boolean} invisible
   * @returns {Promise<UserStatus>} the self view
   */
  setInvisible(invisible) {
    return this.ping({ active: true, invisible });
  }

  /**
   * Sets or clears (`null` or `""`) the status message, optionally until a moment.
   * @param {string | null} message
   * @param {Moment | null} [until]
   * @returns {Promise<UserStatus>} the self view
   */
  setStatusMessage(message, until = null) {
    return this.ping({ active: true, statusMessage: message, ...(until ? { statusMessageUntil: iso(until) } : {}) });
  }

  /**
   * Sends one ping with `fields`; resolves to the caller's self view.
   * @param {Omit<PingFields, "deviceId" | "platform">} fields
   * @returns {Promise<UserStatus>}
   */
  async ping(fields) {
    const sentAt = this.now();
    if (fields.active !== false) this.lastActivityAt = sentAt;
    this.scheduleHeartbeat(this.jittered(this.pingIntervalMs));
    const response = await this.request("PUT", "/api/status", {
      deviceId: this.deviceId,
      platform: this.platform,
      ...fields,
    });
    if (!response.ok) throw await apiError(response);
    const self = await response.json();
    if (self.pingIntervalSeconds) this.pingIntervalMs = self.pingIntervalSeconds * 1000;
    // Counted from when the ping was sent, as polls are: tabs whose pings a
    // paused server answered together do not go on heartbeating together.
    this.scheduleHeartbeat(this.afterPoll(this.pingIntervalMs, this.now() - sentAt));
    return self;
  }

  /**
   * The caller's own past (`GET /api/status/history`): status segments and
   * device sessions between `from` and `to` (default: the last 24 hours).
   * @param {{ from?: Moment, to?: Moment }} [range]
   * @returns {Promise<History>}
   */
  async history(range = {}) {
    const query = new URLSearchParams();
    if (range.from !== undefined) query.set("from", iso(range.from));
    if (range.to !== undefined) query.set("to", iso(range.to));
    const suffix = query.size ? `?${query}` : "";
    const response = await this.request("GET", `/api/status/history${suffix}`);
    if (!response.ok) throw await apiError(response);
    return response.json();
  }

  /**
   * Signs this device out at once; survives the page unloading (`keepalive`).
   * @returns {Promise<Response | undefined>}
   */
  signOut() {
    this.stop();
    return this.request("DELETE", `/api/status/devices/${encodeURIComponent(this.deviceId)}`, undefined, {
      keepalive: true,
    }).catch(() => undefined);
  }

  /**
   * Polls the statuses of `userIds` and calls `onChange(changed, all)` when any changes.
   * Conditional requests (ETag) make unchanged polls cheap; `Retry-After` is honoured;
   * errors back off with jitter. A status that changes by the clock (`nextChangeAt`)
   * shows at the next regular poll, within the interval as any other change: no poll
   * is brought forward for it, since others see activity floored to the minute and
   * such polls of nearly every watcher would fall in the second after each minute's turn.
   * Returns a function that stops watching.
   * @param {string[]} userIds
   * @param {(changed: UserStatus[], all: UserStatus[]) => void} onChange
   * @returns {() => void}
   */
  watch(userIds, onChange) {
    const ids = [...new Set(userIds)];
    /** @type {string | null} */
    let etag = null;
    /** @type {Map<string, UserStatus>} */
    let known = new Map();
    let failures = 0;
    /** @type {unknown} */
    let timer = null;
    let stopped = false;
    /** @param {number} ms */
    const schedule = (ms) => {
      if (!stopped) timer = this.setTimeout(poll, Math.max(0, ms));
    };
    const poll = async () => {
      timer = null;
      const sentAt = this.now();
      let response;
      try {
        response = await this.request("POST", "/api/status/query", { userIds: ids }, {}, etag);
      } catch {
        failures += 1;
        return schedule(this.backoff(failures));
      }
      if (response.status === 304) {
        failures = 0;
        return schedule(this.afterPoll(this.pollIntervalMs, this.now() - sentAt));
      }
      if (!response.ok) {
        failures += 1;
        const retryAfter = Number(response.headers.get("Retry-After"));
        return schedule(retryAfter > 0 ? retryAfter * 1000 : this.backoff(failures));
      }
      failures = 0;
      etag = response.headers.get("ETag");
      /** @type {{ statuses: UserStatus[] }} */
      const { statuses } = await response.json();
      const changed = statuses.filter((status) => JSON.stringify(known.get(status.userId)) !== JSON.stringify(status));
      known = new Map(statuses.map((status) => [status.userId, status]));
      if (changed.length > 0 && !stopped) onChange(changed, statuses);
      schedule(this.afterPoll(this.pollIntervalMs, this.now() - sentAt));
    };
    const pollNow = () => {
      if (timer !== null) this.clearTimeout(timer);
      schedule(0);
    };
    this.watchers.add(pollNow);
    schedule(0);
    return () => {
      stopped = true;
      this.watchers.delete(pollNow);
      if (timer !== null) this.clearTimeout(timer);
    };
  }

  /**
   * Joins `roomId` with this device and keeps the membership while the page is open:
   * renews it every `heartbeatIntervalSeconds` the server answers, polls the room
   * (conditionally, with its ETag) and calls `onChange` with each new answer, leaves
   * on `leave()` and on `pagehide` (and joins again if the page comes back from the
   * back/forward cache). The token must grant the room.
   * @param {string} roomId
   * @param {RoomOptions} [options]
   * @returns {RoomHandle}
   */
  joinRoom(roomId, options = {}) {
    return new RoomHandle(this, roomId, options);
  }

  /**
   * The wait before the next regular poll or heartbeat, counted from when the
   * last one was sent, not answered: a slow answer (the server paused) then
   * does not set every client that waited on it polling (or pinging) at the
   * same moment from then on. After an answer that took so long that less
   * than half the interval is left, anywhere from half the interval to the
   * whole of it, at random: a client of an overloaded server does not send
   * again at once, and the many clients a pause answered in the same moment
   * do not send again together.
   * @param {number} intervalMs
   * @param {number} elapsedMs how long the last request took
   * @returns {number} milliseconds
   */
  afterPoll(intervalMs, elapsedMs) {
    const left = this.jittered(intervalMs) - elapsedMs;
    if (left >= intervalMs / 2) return left;
    return (intervalMs / 2) * (1 + this.random());
  }

  /**
   * A poll or heartbeat interval, up to a tenth shorter at random (never
   * longer, so that a change still shows within the interval and a device
   * is not late): clients that once polled or pinged together (after a
   * burst, or a `nextChangeAt` they shared) drift apart instead of staying
   * in step for ever.
   * @param {number} ms
   * @returns {number} milliseconds
   */
  jittered(ms) {
    return ms * (1 - 0.1 * this.random());
  }

  /**
   * Exponential backoff with jitter: about 1 s, 2 s, 4 s... up to `maxBackoffMs`.
   * @param {number} failures how many requests failed in a row
   * @returns {number} milliseconds
   */
  backoff(failures) {
    const base = Math.min(this.maxBackoffMs, 1000 * 2 ** Math.min(failures - 1, 16));
    return base * (0.5 + this.random());
  }

  /**
   * (Re)arms the heartbeat timer while started.
   * @param {number} [waitMs] the wait; by default the ping interval, up to a tenth shorter at random
   */
  scheduleHeartbeat(waitMs = this.jittered(this.pingIntervalMs)) {
    if (!this.started) return;
    if (this.heartbeatTimer !== null) this.clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = this.setTimeout(() => {
      this.heartbeatTimer = null;
      this.ping({ active: false }).catch(() => this.scheduleHeartbeat());
    }, waitMs);
  }

  /**
   * One request to the service with the token; notes the server's clock from `Date`.
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body] sent as JSON
   * @param {RequestInit} [init]
   * @param {string | null} [etag] sent as `If-None-Match`
   * @returns {Promise<Response>}
   */
  request(method, path, body, init = {}, etag = null) {
    const token = typeof this.options.token === "function" ? this.options.token() : this.options.token;
    /** @type {Record<string, string>} */
    const headers = { Authorization: `Bearer ${token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (etag) headers["If-None-Match"] = etag;
    return this.fetch(`${this.baseUrl}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      ...init,
    });
  }
}

/** This device's membership of one room, and the room as last polled (see `PresenceClient.joinRoom`). */
export class RoomHandle {
  /**
   * @param {PresenceClient} client
   * @param {string} roomId
   * @param {RoomOptions} options
   */
  constructor(client, roomId, options) {
    this.client = client;
    this.roomId = roomId;
    this.path = `/api/rooms/${encodeURIComponent(roomId)}`;
    this.onChange = options.onChange;
    this.limit = options.limit ?? 100;
    this.pollIntervalMs = options.pollIntervalMs ?? client.pollIntervalMs;
    this.typingTtlMs = options.typingTtlMs ?? 6_000;
    /** @type {Room | null} The room as last answered. */
    this.room = null;
    /** @type {string | null} */
    this.etag = null;
    this.renewIntervalMs = 20_000;
    /** @type {unknown} */
    this.renewTimer = null;
    /** @type {unknown} */
    this.pollTimer = null;
    this.failures = 0;
    this.lastTypingAt = -Infinity;
    this.left = false;
    this.onPageHide = () => this.leaveRoom();
    /** @param {Partial<PageTransitionEvent>} [event] */
    this.onPageShow = (event) => {
      if (event?.persisted && !this.left) this.join(undefined).catch(() => undefined);
    };
    client.window?.addEventListener("pagehide", this.onPageHide);
    client.window?.addEventListener("pageshow", this.onPageShow);
    /** @type {Promise<RoomPresence>} The first join's answer (rejects if refused: a room the token does not grant, too many rooms). */
    this.joined = this.join(options.state);
    this.joined.catch(() => undefined);
    this.schedulePoll(0);
  }

  /**
   * Sets (or clears, with `null`) this device's state in the room; the room's next answer shows it.
   * @param {Record<string, unknown> | null} state
   * @returns {Promise<RoomPresence>}
   */
  setState(state) {
    return this.send({ state }).then((presence) => {
      this.pollNow();
      return presence;
    });
  }

  /**
   * The user is typing: call it on every keystroke. Sends `typing: true` at most
   * every half typing TTL, so the flag lasts while keystrokes keep coming and ends
   * by itself at most a TTL after the last one.
   * @returns {Promise<RoomPresence> | undefined} the ping's answer, if one was sent
   */
  typing() {
    const now = this.client.now();
    if (now - this.lastTypingAt < this.typingTtlMs / 2) return undefined;
    this.lastTypingAt = now;
    return this.send({ typing: true });
  }

  /**
   * The user stopped typing (sent a message, cleared the input): the flag ends now.
   * @returns {Promise<RoomPresence>}
   */
  stopTyping() {
    this.lastTypingAt = -Infinity;
    return this.send({ typing: false });
  }

  /**
   * Leaves the room and stops polling it.
   * @returns {Promise<Response | undefined>}
   */
  leave() {
    this.left = true;
    this.client.window?.removeEventListener("pagehide", this.onPageHide);
    this.client.window?.removeEventListener("pageshow", this.onPageShow);
    if (this.pollTimer !== null) this.client.clearTimeout(this.pollTimer);
    this.pollTimer = null;
    return this.leaveRoom();
  }

  /** Ends the membership (on leave and pagehide); survives the page unloading (`keepalive`). */
  leaveRoom() {
    if (this.renewTimer !== null) this.client.clearTimeout(this.renewTimer);
    this.renewTimer = null;
    const device = encodeURIComponent(this.client.deviceId);
    return this.client
      .request("DELETE", `${this.path}/presence/${device}`, undefined, { keepalive: true })
      .catch(() => undefined);
  }

  /**
   * Joins or renews, with `state` when given.
   * @param {Record<string, unknown> | null | undefined} state
   * @returns {Promise<RoomPresence>}
   */
  join(state) {
    return this.send(state === undefined ? {} : { state });
  }

  /**
   * One room ping with `fields`; reschedules the renewal when it is answered,
   * counted from when it was sent (as heartbeats are).
   * @param {{ state?: Record<string, unknown> | null, typing?: boolean }} fields
   * @returns {Promise<RoomPresence>}
   */
  async send(fields) {
    if (this.left) throw Object.assign(new Error("the room was left"), { status: 0, code: undefined });
    const sentAt = this.client.now();
    const response = await this.client.request("PUT", `${this.path}/presence`, {
      deviceId: this.client.deviceId,
      ...fields,
    });
    if (!response.ok) throw await apiError(response);
    /** @type {RoomPresence} */
    const presence = await response.json();
    this.renewIntervalMs = presence.heartbeatIntervalSeconds * 1000;
    this.scheduleRenewal(this.client.afterPoll(this.renewIntervalMs, this.client.now() - sentAt));
    return presence;
  }

  /**
   * (Re)arms the renewal timer until the room is left.
   * @param {number} [waitMs] the wait; by default the interval, up to a tenth shorter at random
   */
  scheduleRenewal(waitMs = this.client.jittered(this.renewIntervalMs)) {
    if (this.left) return;
    if (this.renewTimer !== null) this.client.clearTimeout(this.renewTimer);
    this.renewTimer = this.client.setTimeout(() => {
      this.renewTimer = null;
      this.send({}).catch(() => this.scheduleRenewal());
    }, waitMs);
  }

  /** @param {number} ms */
  schedulePoll(ms) {
    if (!this.left) this.pollTimer = this.client.setTimeout(() => this.poll(), Math.max(0, ms));
  }

  /** Polls at once (after a change of this device's own). */
  pollNow() {
    if (this.left) return;
    if (this.pollTimer !== null) this.client.clearTimeout(this.pollTimer);
    this.schedulePoll(0);
  }

  /** One conditional read of the room; `onChange` when its answer changed. */
  async poll() {
    this.pollTimer = null;
    const sentAt = this.client.now();
    let response;
    try {
      response = await this.client.request("GET", `${this.path}?limit=${this.limit}`, undefined, {}, this.etag);
    } catch {
      this.failures += 1;
      return this.schedulePoll(this.client.backoff(this.failures));
    }
    if (response.status === 304) {
      this.failures = 0;
      return this.schedulePoll(this.client.afterPoll(this.pollIntervalMs, this.client.now() - sentAt));
    }
    if (!response.ok) {
      this.failures += 1;
      const retryAfter = Number(response.headers.get("Retry-After"));
      return this.schedulePoll(retryAfter > 0 ? retryAfter * 1000 : this.client.backoff(this.failures));
    }
    this.failures = 0;
    this.etag = response.headers.get("ETag");
    /** @type {Room} */
    const room = await response.json();
    if (this.left) return;
    this.room = room;
    this.onChange?.(room);
    this.schedulePoll(this.client.afterPoll(this.pollIntervalMs, this.client.now() - sentAt));
  }
}

/**
 * @param {Moment} moment
 * @returns {string}
 */
function iso(moment) {
  return (moment instanceof Date ? moment : new Date(moment)).toISOString();
}

/**
 * @param {Response} response
 * @returns {Promise<PresenceError>}
 */
async function apiError(response) {
  /** @type {{ message?: string, code?: string }} */
  let detail = {};
  try {
    detail = (await response.json()).error ?? {};
  } catch {
    // not JSON
  }
  return Object.assign(new Error(detail.message ?? `HTTP ${response.status}`), {
    status: response.status,
    code: detail.code,
  });
}
