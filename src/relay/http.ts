/** HTTP plumbing for the relay: errors with a status, JSON responses, request facts. */
import { SUBPROTOCOL } from "../protocol/frame.ts";

/** A refusal with an HTTP status and one sentence for the user. */
export class HttpError extends Error {
  override name = "HttpError";
  /** Set when the refusal was already written to the audit log. */
  audited = false;
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** A JSON response. */
export function json(value: unknown, status = 200, headers: Record<string, string> = {}) {
  const body = new TextEncoder().encode(JSON.stringify(value));
  return new Response(body, {
    status,
    headers: {
      "content-type": "application/json",
      "content-length": String(body.length),
      "cache-control": "no-store",
      ...headers,
    },
  });
}

/** The JSON error response for an HttpError: `{"error": "…"}`. */
export function errorResponse(err: HttpError): Response {
  return json({ error: err.message }, err.status, err.headers);
}

/** The bearer token of a request, or null. */
export function bearer(req: Request): string | null {
  const h = req.headers.get("authorization");
  if (!h) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m ? m[1] : null;
}

/** True if the request asks for a WebSocket upgrade. */
export function isUpgrade(req: Request): boolean {
  return req.headers.get("upgrade")?.toLowerCase() === "websocket";
}

/**
 * Checks that the peer speaks our protocol version. WebSocket requests offer it as a
 * subprotocol; the diagnostic GET a client sends after a failed upgrade names it in
 * `x-od-protocol`. Throws 426 with a sentence naming both versions.
 */
export function checkProtocol(req: Request): void {
  const offered = (req.headers.get("sec-websocket-protocol") ??
    req.headers.get("x-od-protocol") ?? "")
    .split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (offered.includes(SUBPROTOCOL)) return;
  const theirs = offered.filter((p) => p.startsWith("od.")).join(", ") || "none";
  throw new HttpError(
    426,
    `protocol mismatch: the relay speaks ${SUBPROTOCOL} but this peer offered ${theirs}; ` +
      `upgrade od so both sides match`,
  );
}

/** Reads a JSON object body of at most `limit` bytes; 400/413 otherwise. */
export async function readJson(req: Request, limit = 64 * 1024): Promise<Record<string, unknown>> {
  const length = Number(req.headers.get("content-length") ?? "0");
  if (length > limit) throw new HttpError(413, `request body exceeds ${limit} bytes`);
  const reader = req.body?.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (reader) {
    const { value, done } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > limit) {
      await reader.cancel();
      throw new HttpError(413, `request body exceeds ${limit} bytes`);
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    body.set(c, offset);
    offset += c.length;
  }
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(body));
  } catch {
    throw new HttpError(400, "request body is not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new HttpError(400, "request body must be a JSON object");
  }
  return value as Record<string, unknown>;
}
