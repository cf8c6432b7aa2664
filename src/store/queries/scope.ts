/** Builds the StoreScope (accounts, devices, …) that runs on one Executor. */
import {
  type AccountStore,
  type AuditStore,
  DEAD_AFTER_BEATS,
  type DeviceStore,
  type EventStore,
  type PropStore,
  type RelayStore,
  type SessionStore,
  type ShareStore,
  type StoreScope,
} from "../types.ts";
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

/**
 * What both backends' stores share: every aspect's queries over the store's own executor, and
 * transactions whose scope is the same queries over the transaction.
 */
export abstract class ScopedStore implements StoreScope {
  readonly accounts: AccountStore;
  readonly devices: DeviceStore;
  readonly props: PropStore;
  readonly events: EventStore;
  readonly shares: ShareStore;
  readonly audit: AuditStore;
  readonly relays: RelayStore;
  readonly sessions: SessionStore;
  readonly #executor: Executor;
  readonly #heartbeatMs: number;

  constructor(executor: Executor, heartbeatMs: number) {
    this.#executor = executor;
    this.#heartbeatMs = heartbeatMs;
    const scope = scopeOf(executor, heartbeatMs);
    this.accounts = scope.accounts;
    this.devices = scope.devices;
    this.props = scope.props;
    this.events = scope.events;
    this.shares = scope.shares;
    this.audit = scope.audit;
    this.relays = scope.relays;
    this.sessions = scope.sessions;
  }

  /** Runs `fn` in one transaction: all of it commits, or none (it rejects). */
  tx<T>(fn: (t: StoreScope) => Promise<T>): Promise<T> {
    return this.#executor.tx((e) => fn(scopeOf(e, this.#heartbeatMs)));
  }
}
