// react.js: the React hook of the presence client (`@presence/client/react`).
//
//   const client = useMemo(() => new PresenceClient({ token }), [token]);
//   useEffect(() => { client.start(); return () => client.stop(); }, [client]);
//   const statuses = usePresence(client, contactIds); // Map: userId -> UserStatus
//   const { room, setState, typing } = useRoom(client, "doc:42"); // room: members, occupancy

import { useCallback, useEffect, useMemo, useRef, useState } from "react";

/** @typedef {import("./presence.js").PresenceClient} PresenceClient */
/** @typedef {import("./presence.js").UserStatus} UserStatus */
/** @typedef {import("./presence.js").Room} Room */
/** @typedef {import("./presence.js").RoomHandle} RoomHandle */

/** @type {ReadonlyMap<string, UserStatus>} */
const NONE = new Map();

/**
 * The statuses of `userIds`, polled with `client` while the component is
 * mounted: re-renders only when a status changes (unchanged polls are `304`s
 * and cost no render), stops polling on unmount, and follows a changed id
 * list (the order of the ids does not matter; until the new list is
 * answered, the users it kept keep their statuses). Users not answered yet
 * are missing from the map.
 * @param {PresenceClient | null | undefined} client
 * @param {readonly string[]} userIds
 * @returns {ReadonlyMap<string, UserStatus>}
 */
export function usePresence(client, userIds) {
  const key = [...new Set(userIds)].sort().join(",");
  const [answered, setAnswered] = useState(() => ({ key: "", statuses: NONE }));
  useEffect(() => {
    if (!client || key === "") return undefined;
    return client.watch(key.split(","), (_, all) => {
      setAnswered({ key, statuses: new Map(all.map((status) => [status.userId, status])) });
    });
  }, [client, key]);
  return useMemo(() => {
    if (!client || key === "") return NONE;
    if (answered.key === key) return answered.statuses;
    // A changed list, not answered yet: the statuses of the users it kept.
    const wanted = new Set(key.split(","));
    return new Map([...answered.statuses].filter(([userId]) => wanted.has(userId)));
  }, [answered, key, client]);
}

/**
 * This device in the room `roomId` while the component is mounted: joins on
 * mount (with `options.state`), renews on the server's interval, leaves on
 * unmount, on a changed room id and on `pagehide`. `room` is the room as last
 * polled (`null` until the first answer, and after a change of room until the
 * new one answers); re-renders only when its answer changes. `setState` sets
 * this device's state there; `typing` is for every keystroke (throttled).
 * @param {PresenceClient | null | undefined} client
 * @param {string | null | undefined} roomId
 * @param {{ state?: Record<string, unknown> | null, limit?: number, pollIntervalMs?: number, typingTtlMs?: number }} [options]
 * @returns {{ room: Room | null, setState: (state: Record<string, unknown> | null) => void, typing: () => void }}
 */
export function useRoom(client, roomId, options = {}) {
  const [answered, setAnswered] = useState(() => ({ roomId: "", room: /** @type {Room | null} */ (null) }));
  /** @type {import("react").MutableRefObject<RoomHandle | null>} */
  const handle = useRef(null);
  // The options of the join: read when the room is joined, not watched.
  const joinOptions = useRef(options);
  joinOptions.current = options;
  useEffect(() => {
    if (!client || !roomId) return undefined;
    const joined = client.joinRoom(roomId, {
      ...joinOptions.current,
      onChange: (room) => setAnswered({ roomId, room }),
    });
    handle.current = joined;
    return () => {
      handle.current = null;
      joined.leave();
    };
  }, [client, roomId]);
  const setState = useCallback((/** @type {Record<string, unknown> | null} */ state) => {
    handle.current?.setState(state).catch(() => undefined);
  }, []);
  const typing = useCallback(() => {
    handle.current?.typing()?.catch(() => undefined);
  }, []);
  const room = client && roomId && answered.roomId === roomId ? answered.room : null;
  return { room, setState, typing };
}
