/** Builds the StoreScope (accounts, devices, …) that runs on one Executor. */
import { DEAD_AFTER_BEATS, type StoreScope } from "../types.ts";
import type { Executor } from "./executor.ts";
import { AccountQueries } from "./accounts.ts";
import { DeviceQueries } from "./devices.ts";
import { PropQueries } from "./props.ts";
import { EventQueries } from "./events.ts";
import { ShareQueries } from "./shares.ts";
import { AuditQueries } from "./audit.ts";
import { RelayQueries } from "./relays.ts";
import { SessionQueries } from "./sessions.ts";

/** The queries of every aspect over `e`; `heartbeatMs` is the relays' heartbeat interval. */
export function scopeOf(e: Executor, heartbeatMs: number): StoreScope {
  return {
    accounts: new AccountQueries(e),
    devices: new DeviceQueries(e, DEAD_AFTER_BEATS * heartbeatMs),
    props: new PropQueries(e),
    events: new EventQueries(e),
    shares: new ShareQueries(e),
    audit: new AuditQueries(e),
    relays: new RelayQueries(e, heartbeatMs),
    sessions: new SessionQueries(e),
  };
}
