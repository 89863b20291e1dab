// Uses the package as an application would, through its exports, so that
// `tsc -p tsconfig.json` checks the declarations as well as the JSDoc.
import { PresenceClient, tabDeviceId, type PresenceError, type UserStatus } from "@presence/client";
import { usePresence } from "@presence/client/react";
import type { components, paths } from "@presence/client/api";

const client = new PresenceClient({ token: () => "a token", baseUrl: "https://presence.example" });
client.start();
const stop: () => void = client.watch(["0b6c3f1e-8f4a-4e55-9a2b-1c2d3e4f5a6b"], (changed, all) => {
  const status: components["schemas"]["Status"] = all[0].status;
  const when: string | null = changed[0].nextChangeAt;
  return [status, when];
});
stop();
client.setManualStatus("dnd", new Date(Date.now() + 3600e3)).then((self: UserStatus) => self.invisible);
client.setStatusMessage("In a meeting", "2026-12-01T10:00:00Z").catch((error: PresenceError) => error.code);
client.history({ from: Date.now() - 86_400_000 }).then((day) => day.segments.map((segment) => segment.status));
// @ts-expect-error: not a manual status
client.setManualStatus("busy");
const device: string = tabDeviceId();
const statuses: ReadonlyMap<string, UserStatus> = usePresence(client, [device]);
const query: paths["/api/status/query"]["post"]["requestBody"] = {
  content: { "application/json": { userIds: [...statuses.keys()] } },
};
export { query };
