/**
 * The API view of a device: what the store knows, overlaid with its live session on this relay
 * (state, address, what the daemon reported) or its link on another relay (state, since), and
 * the relay's read-only `on:` properties. Its own module
 * so that access checks (access.ts) and endpoints (api.ts) both use it without importing each
 * other.
 */
import type { Device } from "../protocol/api.ts";
import type { DeviceRecord } from "../store/types.ts";
import type { Hub } from "./hub.ts";
import type { RemoteLink } from "./whereabouts.ts";

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/**
 * The API view of a stored device, with its live state from the hub, or from `remote` (its
 * link on another live relay, see whereabouts.ts).
 */
export function deviceView(
  hub: Hub,
  d: DeviceRecord,
  props: Record<string, string>,
  viewerAccountId = d.accountId,
  remote?: RemoteLink,
): Device {
  const live = hub.get(d.rowid);
  const online = live !== undefined || remote !== undefined;
  const view: Device = {
    id: d.name,
    account: d.account,
    ref: viewerAccountId === d.accountId ? d.name : `${d.account}.${d.name}`,
    state: online ? "online" : "offline",
    since: live ? iso(live.since) : remote ? iso(remote.since) : null,
    lastSeen: online ? new Date().toISOString() : iso(d.lastSeen),
    ip: live ? live.ip : d.lastIp,
    version: live?.info?.version ?? d.version,
    parent: d.parent,
    createdAt: new Date(d.createdAt).toISOString(),
    services: live?.info?.services ?? d.services,
    hostKeys: live?.info?.hostKeys ?? d.hostKeys,
    props: {},
  };
  const on: Record<string, string | null> = {
    "on:state": view.state,
    "on:since": view.since,
    "on:lastSeen": view.lastSeen,
    "on:ip": view.ip,
    "on:version": view.version,
    "on:parent": view.parent,
    "on:createdAt": view.createdAt,
  };
  for (const [k, v] of Object.entries(on)) if (v !== null) view.props[k] = v;
  Object.assign(view.props, props);
  return view;
}
