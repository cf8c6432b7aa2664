/**
 * od's WebSocket client (RFC 6455, wire format in ws_codec.ts) for the links of daemons and
 * clients. Deno's built-in WebSocket turns TCP_NODELAY off, so every pair of small writes waits
 * for a delayed ACK: about 40 ms on each TLS handshake and on many round trips of an ssh
 * handshake through a tunnel. Here the socket is ours: NODELAY on, an HTTP CONNECT proxy when
 * the environment names one, TLS with an optional private CA, the 101 checked header by header,
 * and the relay's refusal read straight from the HTTP response.
 *
 * Lifecycle: `openWebSocket` resolves once the upgrade has succeeded; frames then arrive through
 * the SocketLink until it closes. Failures to connect are DialErrors (connection.ts); an HTTP
 * answer other than 101 is UpgradeRefused.
 */
import { MAX_FRAME_SIZE } from "../protocol/frame.ts";
import { SocketLink } from "./socket_link.ts";
import { newHandshakeKey, upgradeResponseProblem } from "./ws_codec.ts";
import { HeadReader, openConnection, Step, writeAll } from "./connection.ts";
import { connectFailure, DialError } from "./dial_error.ts";
import { redactProxy } from "./proxy.ts";

/** How to open a client WebSocket. */
export interface WsOptions {
  url: URL;
  protocol: string;
  headers: Record<string, string>;
  /** PEM of a CA to trust besides the system roots. */
  ca?: string;
  /** An explicit proxy URL, `none`, or undefined for the environment's. */
  proxy?: string;
  timeoutMs: number;
}

/** The relay answered the upgrade with something other than 101. */
export class UpgradeRefused extends Error {
  override name = "UpgradeRefused";
  constructor(readonly status: number, readonly headers: Headers, readonly body: string) {
    super(`HTTP ${status}`);
  }
}

const MAX_MESSAGE = MAX_FRAME_SIZE; // one od frame per WebSocket message
const encoder = new TextEncoder();

/** Opens a WebSocket; throws UpgradeRefused for an HTTP answer, DialError for the network. */
export async function openWebSocket(opts: WsOptions): Promise<SocketLink> {
  const deadline = Date.now() + opts.timeoutMs;
  const { conn, proxy, relay } = await openConnection({
    url: opts.url,
    ca: opts.ca,
    proxy: opts.proxy,
    deadline,
  });
  const step = new Step(deadline);
  try {
    return await step.run(
      handshake(conn, opts, relay),
      (err) =>
        err instanceof DialError || err instanceof UpgradeRefused
          ? err
          : connectFailure(err, "relay", relay, `the relay ${relay}`),
      () =>
        new DialError(
          "relay",
          "timeout",
          relay,
          `the relay ${relay} accepted the connection but did not answer the WebSocket upgrade in time`,
        ),
    );
  } catch (err) {
    try {
      conn.close();
    } catch {
      // already closed
    }
    if (err instanceof DialError) err.proxy = proxy && redactProxy(proxy);
    throw err;
  }
}

async function handshake(conn: Deno.Conn, opts: WsOptions, relay: string): Promise<SocketLink> {
  const key = newHandshakeKey();
  await writeAll(conn, encoder.encode(upgradeRequest(opts, key)));
  const reader = new HeadReader(conn);
  const head = await reader.readHead();
  if (head === null) {
    throw new DialError(
      "relay",
      "closed",
      relay,
      `the relay ${relay} closed the connection during the WebSocket handshake`,
    );
  }
  if (head.status !== 101) {
    throw new UpgradeRefused(head.status, head.headers, await reader.readBody(head.headers));
  }
  const problem = await upgradeResponseProblem(head.headers, key, opts.protocol);
  if (problem) {
    throw new DialError(
      "relay",
      "protocol",
      relay,
      `the relay's WebSocket handshake is invalid: ${problem}`,
    );
  }
  return new SocketLink(conn, {
    role: "client",
    maxMessage: MAX_MESSAGE,
    leftover: reader.rest(),
    nudge: opts.url.protocol === "wss:",
  });
}

function upgradeRequest(opts: WsOptions, key: string): string {
  const lines = [
    `GET ${opts.url.pathname}${opts.url.search} HTTP/1.1`,
    `Host: ${opts.url.host}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${key}`,
    "Sec-WebSocket-Version: 13",
    `Sec-WebSocket-Protocol: ${opts.protocol}`,
    ...Object.entries(opts.headers).map(([k, v]) => `${k}: ${v}`),
  ];
  return lines.join("\r\n") + "\r\n\r\n";
}
