/**
 * od's HTTP/1.1 client for the relay's API: one request per connection, opened like the links
 * (connection.ts: the same proxy choice, CONNECT, TLS and CA), so an API call and a link fail
 * with the same sentence naming the same hop. The runtime's fetch chooses proxies by its own
 * rules and reports failures as "fetch failed" with the reason buried in a cause chain; here
 * both are od's.
 *
 * Lifecycle: `httpRequest` resolves with a Response once the head has arrived; its body streams
 * from the socket (Content-Length, chunked, or until the relay closes) and the connection is
 * closed when the body ends, is cancelled, or `signal` aborts.
 */
import { ChunkedDecoder } from "./http1.ts";
import { HeadReader, openConnection, Step, writeAll } from "./connection.ts";
import { connectFailure, DialError } from "./dial_error.ts";
import { redactProxy } from "./proxy.ts";

/** One request to the relay. */
export interface HttpRequest {
  url: URL;
  method: string;
  headers: Record<string, string>;
  body?: string;
  ca?: string;
  /** An explicit proxy URL, `none`, or undefined for the environment's. */
  proxy?: string;
  /** For connecting and the response head. */
  timeoutMs: number;
  /** Aborting closes the connection, ending the body. */
  signal?: AbortSignal;
}

const encoder = new TextEncoder();
const READ_SIZE = 64 * 1024;

/** Sends the request; resolves at the response head. Throws DialError for the network. */
export async function httpRequest(req: HttpRequest): Promise<Response> {
  const deadline = Date.now() + req.timeoutMs;
  const { conn, proxy, relay } = await openConnection({
    url: req.url,
    ca: req.ca,
    proxy: req.proxy,
    deadline,
  });
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    req.signal?.removeEventListener("abort", close);
    try {
      conn.close();
    } catch {
      // already closed
    }
  };
  req.signal?.addEventListener("abort", close, { once: true });
  const reader = new HeadReader(conn);
  const step = new Step(deadline);
  let head;
  try {
    const body = req.body === undefined ? undefined : encoder.encode(req.body);
    const lines = [
      `${req.method} ${req.url.pathname}${req.url.search} HTTP/1.1`,
      `Host: ${req.url.host}`,
      "Connection: close",
      ...Object.entries(req.headers).map(([k, v]) => `${k}: ${v}`),
      ...(body ? [`Content-Length: ${body.length}`] : []),
    ];
    const bytes = encoder.encode(lines.join("\r\n") + "\r\n\r\n");
    head = await step.run(
      (async () => {
        await writeAll(conn, body ? concat(bytes, body) : bytes);
        return await reader.readHead();
      })(),
      (err) =>
        err instanceof DialError ? err : connectFailure(err, "relay", relay, `the relay ${relay}`),
      () =>
        new DialError(
          "relay",
          "timeout",
          relay,
          `the relay ${relay} accepted the connection but did not answer the request in time`,
        ),
    );
  } catch (err) {
    close();
    if (err instanceof DialError) err.proxy = proxy && redactProxy(proxy);
    throw err;
  }
  if (head === null) {
    close();
    throw new DialError(
      "relay",
      "closed",
      relay,
      `the relay ${relay} closed the connection without answering`,
    );
  }
  const status = head.status;
  const nobody = req.method === "HEAD" || status === 204 || status === 304;
  const stream = nobody ? null : bodyStream(conn, reader.rest(), head.headers, close);
  if (nobody) close();
  return new Response(stream, { status, statusText: head.reason, headers: head.headers });
}

/** The response body as a stream of bytes, framed by the head's headers. */
function bodyStream(
  conn: Deno.Conn,
  first: Uint8Array,
  headers: Headers,
  close: () => void,
): ReadableStream<Uint8Array> {
  const chunked = /chunked/i.test(headers.get("transfer-encoding") ?? "");
  const length = headers.get("content-length");
  let left = chunked || length === null ? Infinity : Number(length);
  const decoder = chunked ? new ChunkedDecoder() : null;
  let pending: Uint8Array | null = first.length > 0 ? first : null;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      while (true) {
        if (left <= 0 || decoder?.done) {
          close();
          controller.close();
          return;
        }
        let bytes = pending;
        pending = null;
        if (!bytes) {
          const buf = new Uint8Array(READ_SIZE);
          const n = await conn.read(buf).catch(() => null);
          if (n === null) {
            close();
            if (decoder || Number.isFinite(left)) {
              controller.error(new Error("the relay closed the connection mid-answer"));
            } else controller.close();
            return;
          }
          bytes = buf.subarray(0, n);
        }
        const data = decoder
          ? decoder.push(bytes)
          : [bytes.subarray(0, Math.min(left, bytes.length))];
        let got = false;
        for (const d of data) {
          if (d.length === 0) continue;
          if (!decoder) left -= d.length;
          controller.enqueue(d.slice());
          got = true;
        }
        if (got) {
          if (left <= 0 || decoder?.done) {
            close();
            controller.close();
          }
          return;
        }
      }
    },
    cancel() {
      close();
    },
  });
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
