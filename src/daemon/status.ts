/**
 * What the daemon tells `od status` over its local socket: the link's state and since when,
 * when the next attempt is due and why the last one failed, and who this device is. The connect
 * loop reports each change here; the local API serves `snapshot()`.
 */
import type { DaemonStatus, LinkState } from "../protocol/local.ts";
import { VERSION } from "../version.ts";

/** Where the snapshot's other facts come from. */
export interface StatusSources {
  relay: () => string;
  proxy: () => string | null;
  device: () => { device?: string; account?: string };
  services: () => Record<string, string>;
  tunnels: () => number;
  keepalive: () => number;
}

/** The daemon's current state, kept up to date by the connect loop. */
export class StatusBoard {
  #state: LinkState = "connecting";
  #since = new Date();
  #retryAt: Date | null = null;
  #reason: string | null = null;
  #lastError: { at: Date; message: string } | null = null;
  #sources: StatusSources;

  constructor(sources: StatusSources) {
    this.#sources = sources;
  }

  /** The state now. */
  get state(): LinkState {
    return this.#state;
  }

  /** Enters `state`; a backing-off or refused state says why and when the next attempt is. */
  set(state: LinkState, wait?: { reason: string; retryInMs: number }): void {
    if (state !== this.#state) this.#since = new Date();
    this.#state = state;
    this.#reason = wait?.reason ?? null;
    this.#retryAt = wait ? new Date(Date.now() + wait.retryInMs) : null;
    if (wait) this.error(wait.reason);
  }

  /** Records a failure as the last error. */
  error(message: string): void {
    this.#lastError = { at: new Date(), message };
  }

  /** The status as `od status` shows it. */
  snapshot(): DaemonStatus {
    const who = this.#sources.device();
    return {
      state: this.#state,
      since: this.#since.toISOString(),
      ...(this.#retryAt ? { retryAt: this.#retryAt.toISOString() } : {}),
      ...(this.#reason ? { reason: this.#reason } : {}),
      relay: this.#sources.relay(),
      proxy: this.#sources.proxy(),
      ...(who.device ? { device: who.device } : {}),
      ...(who.account ? { account: who.account } : {}),
      services: this.#sources.services(),
      ...(this.#lastError
        ? { lastError: { at: this.#lastError.at.toISOString(), message: this.#lastError.message } }
        : {}),
      tunnels: this.#sources.tunnels(),
      keepalive: this.#sources.keepalive(),
      version: VERSION,
      pid: Deno.pid,
    };
  }
}
