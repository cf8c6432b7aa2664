/** What every relay handler works with. */
import type { Store } from "../store/types.ts";
import type { Authenticator } from "./auth.ts";
import type { EventBus } from "./events.ts";
import type { Hub } from "./hub.ts";
import type { AuditWriter } from "./audit.ts";
import type { Budget } from "./tunnel.ts";
import type { Admission } from "./admission.ts";
import type { PresenceWriter } from "./presence.ts";
import type { Membership } from "./membership.ts";
import type { PropsMirror } from "./props_push.ts";
import type { Mesh } from "./mesh.ts";
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
  /** This relay's id among the relays of the store. */
  relayId: string;
  /** Where other relays reach this one ("" without a mesh). */
  meshUrl: string;
  /** Interval of the relays' heartbeats (the same on every relay of a store). */
  heartbeatMs: number;
  /** This relay's row, heartbeat and device links (membership.ts). */
  members: Membership;
  /** What connected daemons know of their properties (props_push.ts). */
  mirror: PropsMirror;
  /** Links to the other relays of the store (mesh.ts). */
  mesh: Mesh;
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
