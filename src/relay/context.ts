/** What every relay handler works with. */
import type { Store } from "../store/store.ts";
import type { Authenticator } from "./auth.ts";
import type { EventBus } from "./events.ts";
import type { Hub } from "./hub.ts";
import type { AuditWriter } from "./audit.ts";
import type { Budget } from "./tunnel.ts";
import type { Admission } from "./admission.ts";
import type { PresenceWriter } from "./presence.ts";
import type { SessionAuth } from "./dashboard/session.ts";

/** The relay's shared state, passed to handlers. */
export interface RelayContext {
  store: Store;
  hub: Hub;
  auth: Authenticator;
  events: EventBus;
  audit: AuditWriter;
  limits: RelayLimits;
  /** Seconds between the daemon's keepalive pings; 2.5 silent periods end a link. */
  keepaliveS: number;
  /** What all streams together may hold in the relay beyond their initial windows. */
  relayBudget: Budget;
  /** Rate of new device links (admission.ts). */
  admission: Admission;
  /** Batched presence writes (presence.ts). */
  presence: PresenceWriter;
  /** Dashboard sessions (dashboard/session.ts). */
  sessions: SessionAuth;
}

/** Limits on what peers control. */
export interface RelayLimits {
  /** Streams open at once on one device. */
  maxStreams: number;
  /** Opens a device has not answered yet. */
  maxPendingOpens: number;
  /** Tunnels open at once with one key. */
  maxTunnelsPerKey: number;
  /** Bytes one device link's streams may hold in the relay beyond their initial windows. */
  linkBudget: number;
}
