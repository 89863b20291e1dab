/**
 * A device id that stays the same for this tab across reloads (sessionStorage), new per tab.
 * @param {DeviceIdStorage | undefined} [storage]
 * @returns {string}
 */
export function tabDeviceId(storage?: DeviceIdStorage | undefined): string;
/** Pings the service for this browser tab and watches other users' statuses. */
export class PresenceClient {
    /** @param {PresenceOptions} options */
    constructor(options: PresenceOptions);
    options: PresenceOptions;
    baseUrl: string;
    platform: "mobile" | "web" | "desktop";
    deviceId: string;
    fetch: typeof fetch;
    /** @type {(callback: () => void, ms: number) => unknown} */
    setTimeout: (callback: () => void, ms: number) => unknown;
    /** @type {(handle: unknown) => void} */
    clearTimeout: (handle: unknown) => void;
    now: () => number;
    random: () => number;
    window: EventTarget & {
        addEventListener: Function;
        removeEventListener: Function;
    };
    document: Document | (EventTarget & {
        visibilityState?: string;
    });
    activityThrottleMs: number;
    pollIntervalMs: number;
    maxBackoffMs: number;
    pingIntervalMs: number;
    lastActivityAt: number;
    /** @type {unknown} */
    heartbeatTimer: unknown;
    started: boolean;
    /** @type {Set<() => void>} Each watch's "poll now", to catch up after a back/forward-cache restore. */
    watchers: Set<() => void>;
    onInput: () => Promise<{
        devices?: import("./api.js").components["schemas"]["Device"][];
        invisible?: boolean;
        lastSeen: string | null;
        manualStatus?: import("./api.js").components["schemas"]["ManualStatus"] | null;
        manualStatusUntil?: string | null;
        nextChangeAt: string | null;
        pingIntervalSeconds?: number;
        platforms: import("./api.js").components["schemas"]["Platform"][];
        status: import("./api.js").components["schemas"]["Status"];
        statusMessage: string | null;
        statusMessageUntil?: string | null;
        userId: string;
    }> | undefined;
    onPageHide: () => Promise<Response | undefined>;
    /** @param {Partial<PageTransitionEvent>} [event] */
    onPageShow: (event?: Partial<PageTransitionEvent>) => void;
    /** Starts pinging: one activity ping now, one per interaction (throttled), heartbeats in between. */
    start(): void;
    /** Stops pinging (the device then goes offline for others after the offline threshold). */
    stop(): void;
    /**
     * An interaction: an activity ping, unless one went out within the throttle window.
     * @returns {Promise<UserStatus> | undefined} the ping's answer, if one was sent
     */
    activity(force?: boolean): Promise<UserStatus> | undefined;
    /**
     * Sets or clears (`null`) the manual status, optionally until a moment.
     * @param {"away" | "dnd" | null} status
     * @param {Moment | null} [until]
     * @returns {Promise<UserStatus>} the self view
     */
    setManualStatus(status: "away" | "dnd" | null, until?: Moment | null): Promise<UserStatus>;
    /**
     * Appears offline to everyone else, or not.
     * @param {boolean} invisible
     * @returns {Promise<UserStatus>} the self view
     */
    setInvisible(invisible: boolean): Promise<UserStatus>;
    /**
     * Sets or clears (`null` or `""`) the status message, optionally until a moment.
     * @param {string | null} message
     * @param {Moment | null} [until]
     * @returns {Promise<UserStatus>} the self view
     */
    setStatusMessage(message: string | null, until?: Moment | null): Promise<UserStatus>;
    /**
     * Sends one ping with `fields`; resolves to the caller's self view.
     * @param {Omit<PingFields, "deviceId" | "platform">} fields
     * @returns {Promise<UserStatus>}
     */
    ping(fields: Omit<PingFields, "deviceId" | "platform">): Promise<UserStatus>;
    /**
     * The caller's own past (`GET /api/status/history`): status segments and
     * device sessions between `from` and `to` (default: the last 24 hours).
     * @param {{ from?: Moment, to?: Moment }} [range]
     * @returns {Promise<History>}
     */
    history(range?: {
        from?: Moment;
        to?: Moment;
    }): Promise<History>;
    /**
     * Signs this device out at once; survives the page unloading (`keepalive`).
     * @returns {Promise<Response | undefined>}
     */
    signOut(): Promise<Response | undefined>;
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
    watch(userIds: string[], onChange: (changed: UserStatus[], all: UserStatus[]) => void): () => void;
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
    joinRoom(roomId: string, options?: RoomOptions): RoomHandle;
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
    afterPoll(intervalMs: number, elapsedMs: number): number;
    /**
     * A poll or heartbeat interval, up to a tenth shorter at random (never
     * longer, so that a change still shows within the interval and a device
     * is not late): clients that once polled or pinged together (after a
     * burst, or a `nextChangeAt` they shared) drift apart instead of staying
     * in step for ever.
     * @param {number} ms
     * @returns {number} milliseconds
     */
    jittered(ms: number): number;
    /**
     * Exponential backoff with jitter: about 1 s, 2 s, 4 s... up to `maxBackoffMs`.
     * @param {number} failures how many requests failed in a row
     * @returns {number} milliseconds
     */
    backoff(failures: number): number;
    /**
     * (Re)arms the heartbeat timer while started.
     * @param {number} [waitMs] the wait; by default the ping interval, up to a tenth shorter at random
     */
    scheduleHeartbeat(waitMs?: number): void;
    /**
     * One request to the service with the token; notes the server's clock from `Date`.
     * @param {string} method
     * @param {string} path
     * @param {unknown} [body] sent as JSON
     * @param {RequestInit} [init]
     * @param {string | null} [etag] sent as `If-None-Match`
     * @returns {Promise<Response>}
     */
    request(method: string, path: string, body?: unknown, init?: RequestInit, etag?: string | null): Promise<Response>;
}
/** This device's membership of one room, and the room as last polled (see `PresenceClient.joinRoom`). */
export class RoomHandle {
    /**
     * @param {PresenceClient} client
     * @param {string} roomId
     * @param {RoomOptions} options
     */
    constructor(client: PresenceClient, roomId: string, options: RoomOptions);
    client: PresenceClient;
    roomId: string;
    path: string;
    onChange: ((room: Room) => void) | undefined;
    limit: number;
    pollIntervalMs: number;
    typingTtlMs: number;
    /** @type {Room | null} The room as last answered. */
    room: Room | null;
    /** @type {string | null} */
    etag: string | null;
    renewIntervalMs: number;
    /** @type {unknown} */
    renewTimer: unknown;
    /** @type {unknown} */
    pollTimer: unknown;
    failures: number;
    lastTypingAt: number;
    left: boolean;
    onPageHide: () => Promise<Response | undefined>;
    /** @param {Partial<PageTransitionEvent>} [event] */
    onPageShow: (event?: Partial<PageTransitionEvent>) => void;
    /** @type {Promise<RoomPresence>} The first join's answer (rejects if refused: a room the token does not grant, too many rooms). */
    joined: Promise<RoomPresence>;
    /**
     * Sets (or clears, with `null`) this device's state in the room; the room's next answer shows it.
     * @param {Record<string, unknown> | null} state
     * @returns {Promise<RoomPresence>}
     */
    setState(state: Record<string, unknown> | null): Promise<RoomPresence>;
    /**
     * The user is typing: call it on every keystroke. Sends `typing: true` at most
     * every half typing TTL, so the flag lasts while keystrokes keep coming and ends
     * by itself at most a TTL after the last one.
     * @returns {Promise<RoomPresence> | undefined} the ping's answer, if one was sent
     */
    typing(): Promise<RoomPresence> | undefined;
    /**
     * The user stopped typing (sent a message, cleared the input): the flag ends now.
     * @returns {Promise<RoomPresence>}
     */
    stopTyping(): Promise<RoomPresence>;
    /**
     * Leaves the room and stops polling it.
     * @returns {Promise<Response | undefined>}
     */
    leave(): Promise<Response | undefined>;
    /** Ends the membership (on leave and pagehide); survives the page unloading (`keepalive`). */
    leaveRoom(): Promise<Response | undefined>;
    /**
     * Joins or renews, with `state` when given.
     * @param {Record<string, unknown> | null | undefined} state
     * @returns {Promise<RoomPresence>}
     */
    join(state: Record<string, unknown> | null | undefined): Promise<RoomPresence>;
    /**
     * One room ping with `fields`; reschedules the renewal when it is answered,
     * counted from when it was sent (as heartbeats are).
     * @param {{ state?: Record<string, unknown> | null, typing?: boolean }} fields
     * @returns {Promise<RoomPresence>}
     */
    send(fields: {
        state?: Record<string, unknown> | null;
        typing?: boolean;
    }): Promise<RoomPresence>;
    /**
     * (Re)arms the renewal timer until the room is left.
     * @param {number} [waitMs] the wait; by default the interval, up to a tenth shorter at random
     */
    scheduleRenewal(waitMs?: number): void;
    /** @param {number} ms */
    schedulePoll(ms: number): void;
    /** Polls at once (after a change of this device's own). */
    pollNow(): void;
    /** One conditional read of the room; `onChange` when its answer changed. */
    poll(): Promise<void>;
}
/**
 * The API's own types, generated from its OpenAPI document (`api.d.ts`).
 */
export type Schemas = import("./api.js").components["schemas"];
/**
 * The API's own types, generated from its OpenAPI document (`api.d.ts`).
 */
export type Status = Schemas["Status"];
/**
 * A user's status as the caller sees it; the caller's own (the self view) adds the fields marked "Self view".
 */
export type UserStatus = Schemas["StatusView"];
/**
 * The API's own types, generated from its OpenAPI document (`api.d.ts`).
 */
export type History = Schemas["HistoryBody"];
/**
 * The API's own types, generated from its OpenAPI document (`api.d.ts`).
 */
export type PingFields = Schemas["PingRequest"];
/**
 * Who is in a room: its occupancy and one page of members.
 */
export type Room = Schemas["Room"];
/**
 * One user in a room, as the caller may see them.
 */
export type RoomMember = Schemas["RoomMember"];
/**
 * The caller's device's membership of a room.
 */
export type RoomPresence = Schemas["RoomPresence"];
/**
 * `state`: this device's state in the room at the join; `onChange`: called with
 * the room whenever its answer changes (polled every `pollIntervalMs`, default the client's);
 * `limit`: how many members to list (default 100; 0 for the occupancy alone); `typingTtlMs`:
 * the server's `PRESENCE_TYPING_TTL` (default 6 s), which `typing()` renews at half of.
 */
export type RoomOptions = {
    state?: Record<string, unknown> | null;
    onChange?: (room: Room) => void;
    limit?: number;
    pollIntervalMs?: number;
    typingTtlMs?: number;
};
/**
 * A `Date`, an RFC 3339 string or milliseconds since the epoch.
 */
export type Moment = Date | string | number;
/**
 * An HTTP error answer: its status and the contract's error code.
 */
export type PresenceError = Error & {
    status: number;
    code: string | undefined;
};
/**
 * The API's own types, generated from its OpenAPI document (`api.d.ts`).
 */
export type PresenceOptions = {
    token: string | (() => string);
    baseUrl?: string;
    deviceId?: string;
    platform?: "web" | "desktop" | "mobile";
    activityThrottleMs?: number;
    pollIntervalMs?: number;
    maxBackoffMs?: number;
    fetch?: typeof fetch;
    setTimeout?: (callback: () => void, ms: number) => unknown;
    clearTimeout?: (handle: unknown) => void;
    now?: () => number;
    random?: () => number;
    window?: EventTarget & {
        addEventListener: Function;
        removeEventListener: Function;
    };
    document?: EventTarget & {
        visibilityState?: string;
    };
    storage?: DeviceIdStorage;
};
/**
 * The API's own types, generated from its OpenAPI document (`api.d.ts`).
 */
export type DeviceIdStorage = {
    getItem(key: string): string | null;
    setItem(key: string, value: string): void;
};
