/**
 * The device-local socket, `od.sock` in the state directory, through which `od props` on a
 * device asks the running daemon to read and edit this device's properties. One JSON request
 * line and one JSON reply line per connection:
 *   {"op":"get"}                              → {"ok":true,"props":{…}}
 *   {"op":"edit","set":{k:v},"rm":[k]}        → {"ok":true,"props":{…}} | {"ok":false,"error":…}
 *   {"op":"status"}                           → {"ok":true,"status":DaemonStatus}
 * The daemon serves it (daemon/local_api.ts); the client sides are client/props.ts and
 * daemon/status_command.ts (`od status`).
 */
import { BadRequest, parsePropsPatch, type PropsPatch } from "./api.ts";

/** The socket's file name inside the state directory. */
export const LOCAL_SOCKET = "od.sock";
/** Largest request line: 256 values of 4 KiB with JSON overhead. */
export const MAX_LOCAL_REQUEST = 2 * 1024 * 1024;

/** A request on the local socket. */
export type LocalRequest = { op: "get" } | { op: "status" } | ({ op: "edit" } & PropsPatch);

/** Where the daemon's link to the relay stands. */
export const LINK_STATES = [
  "enrolling", // no identity yet: asking the relay for one
  "connecting", // an attempt is under way
  "online", // the link is up
  "backing-off", // the last attempt failed; the next one is at retryAt
  "refused", // the relay refused this device (its credential, its ID); retried at retryAt
  "stopping", // SIGTERM: open tunnels may finish, no new ones
] as const;

/** One of LINK_STATES. */
export type LinkState = typeof LINK_STATES[number];

/** What `od status` shows: the daemon's own account of itself. */
export interface DaemonStatus {
  state: LinkState;
  /** When the daemon entered this state (ISO 8601). */
  since: string;
  /** For backing-off and refused: when the next attempt starts (ISO 8601). */
  retryAt?: string;
  /** For backing-off and refused: the sentence of the failure behind it. */
  reason?: string;
  relay: string;
  /** The proxy used for the relay (without its password), or null for a direct connection. */
  proxy: string | null;
  /** Device ID and account, once enrolled. */
  device?: string;
  account?: string;
  /** Exposed services, name → target. */
  services: Record<string, string>;
  /** The last failure, whenever it was (ISO 8601 time and sentence). */
  lastError?: { at: string; message: string };
  /** Tunnels open through this daemon now. */
  tunnels: number;
  /** Seconds between keepalive pings on the link. */
  keepalive: number;
  version: string;
  pid: number;
}

/** The daemon's reply. */
export type LocalReply = { ok: true; props: Record<string, string> } | { ok: false; error: string };

/** Validates a request line's JSON; throws BadRequest with a sentence. */
export function parseLocalRequest(value: unknown): LocalRequest {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new BadRequest("a local request must be a JSON object");
  }
  const { op, ...rest } = value as Record<string, unknown>;
  if (op === "get" || op === "status") return { op };
  if (op === "edit") return { op, ...parsePropsPatch(rest) };
  throw new BadRequest(`unknown request ${JSON.stringify(String(op).slice(0, 40))}`);
}

/** Validates the daemon's reply; throws BadRequest if it is not one. */
export function parseLocalReply(value: unknown): LocalReply {
  const r = value as Record<string, unknown> | null;
  if (r?.ok === true && typeof r.props === "object" && r.props !== null) {
    const props = r.props as Record<string, unknown>;
    if (Object.values(props).every((v) => typeof v === "string")) {
      return { ok: true, props: props as Record<string, string> };
    }
  }
  if (r?.ok === false && typeof r.error === "string") return { ok: false, error: r.error };
  throw new BadRequest("the daemon's reply is not a local API reply");
}

/** Validates the daemon's answer to a status request; throws BadRequest if it is not one. */
export function parseStatusReply(value: unknown): DaemonStatus {
  const r = value as Record<string, unknown> | null;
  const s = r?.status as Record<string, unknown> | undefined;
  if (r?.ok === false && typeof r.error === "string") throw new BadRequest(r.error);
  if (
    r?.ok !== true || typeof s !== "object" || s === null ||
    !(LINK_STATES as readonly unknown[]).includes(s.state) || typeof s.since !== "string" ||
    typeof s.relay !== "string" || typeof s.services !== "object" || s.services === null
  ) {
    throw new BadRequest("the daemon's reply is not a status");
  }
  return s as unknown as DaemonStatus;
}
