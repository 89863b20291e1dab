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
export function usePresence(client: PresenceClient | null | undefined, userIds: readonly string[]): ReadonlyMap<string, UserStatus>;
export type PresenceClient = import("./presence.js").PresenceClient;
export type UserStatus = import("./presence.js").UserStatus;
