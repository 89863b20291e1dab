// react.js: the React hook of the presence client (`@presence/client/react`).
//
//   const client = useMemo(() => new PresenceClient({ token }), [token]);
//   useEffect(() => { client.start(); return () => client.stop(); }, [client]);
//   const statuses = usePresence(client, contactIds); // Map: userId -> UserStatus

import { useEffect, useMemo, useState } from "react";

/** @typedef {import("./presence.js").PresenceClient} PresenceClient */
/** @typedef {import("./presence.js").UserStatus} UserStatus */

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
