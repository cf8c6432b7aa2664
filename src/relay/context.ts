/** What every relay handler works with. */
import type { Store } from "../store/store.ts";
import type { Authenticator } from "./auth.ts";
import type { EventBus } from "./events.ts";
import type { Hub } from "./hub.ts";

/** The relay's shared state, passed to handlers. */
export interface RelayContext {
  store: Store;
  hub: Hub;
  auth: Authenticator;
  events: EventBus;
  limits: { maxStreams: number };
}
