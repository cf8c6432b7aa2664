/**
 * The device-local socket, `od.sock` in the state directory, through which `od props` on a
 * device asks the running daemon to read and edit this device's properties. One JSON request
 * line and one JSON reply line per connection:
 *   {"op":"get"}                              → {"ok":true,"props":{…}}
 *   {"op":"edit","set":{k:v},"rm":[k]}        → {"ok":true,"props":{…}} | {"ok":false,"error":…}
 * The daemon serves it (daemon/local_api.ts); the client side is client/props.ts.
 */
import { BadRequest, parsePropsPatch, type PropsPatch } from "./api.ts";

/** The socket's file name inside the state directory. */
export const LOCAL_SOCKET = "od.sock";
/** Largest request line: 256 values of 4 KiB with JSON overhead. */
export const MAX_LOCAL_REQUEST = 2 * 1024 * 1024;

/** A request on the local socket. */
export type LocalRequest = { op: "get" } | ({ op: "edit" } & PropsPatch);

/** The daemon's reply. */
export type LocalReply = { ok: true; props: Record<string, string> } | { ok: false; error: string };

/** Validates a request line's JSON; throws BadRequest with a sentence. */
export function parseLocalRequest(value: unknown): LocalRequest {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new BadRequest("a local request must be a JSON object");
  }
  const { op, ...rest } = value as Record<string, unknown>;
  if (op === "get") return { op };
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
