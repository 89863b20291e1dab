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
export function useRoom(client: PresenceClient | null | undefined, roomId: string | null | undefined, options?: {
    state?: Record<string, unknown> | null;
    limit?: number;
    pollIntervalMs?: number;
    typingTtlMs?: number;
}): {
    room: Room | null;
    setState: (state: Record<string, unknown> | null) => void;
    typing: () => void;
};
export type PresenceClient = import("./presence.js").PresenceClient;
export type UserStatus = import("./presence.js").UserStatus;
export type Room = import("./presence.js").Room;
export type RoomHandle = import("./presence.js").RoomHandle;
