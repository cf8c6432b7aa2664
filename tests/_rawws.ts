/**
 * A raw WebSocket client for tests that must misbehave where Deno's WebSocket cannot: never
 * read, send a header announcing a huge message, or write frames as fast as the socket takes
 * them. It does the opening handshake by hand and then exposes the socket.
 */
import { SUBPROTOCOL } from "../src/protocol/frame.ts";
import { headEnd, parseResponseHead } from "../src/transport/http1.ts";
import { encodeFrame, newHandshakeKey, Opcode } from "../src/transport/ws_codec.ts";

/** An upgraded connection the test drives byte by byte. */
export interface RawSocket {
  conn: Deno.Conn;
  /** Bytes that arrived with the 101 (the relay's first frames). */
  first: Uint8Array;
  /** Sends one od frame as a masked binary message. */
  send(frame: Uint8Array): Promise<void>;
  close(): void;
}

/** Upgrades a plain connection to `path`; throws with the status if the relay refuses. */
export async function rawSocket(port: number, secret: string, path: string): Promise<RawSocket> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const key = newHandshakeKey();
  const request = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
    `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
    `Sec-WebSocket-Protocol: ${SUBPROTOCOL}\r\nAuthorization: Bearer ${secret}\r\n\r\n`;
  await writeAll(conn, new TextEncoder().encode(request));
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(16 * 1024);
  while (headEnd(buf) < 0) {
    const n = await conn.read(chunk);
    if (n === null) throw new Error(`${path}: the relay closed during the handshake`);
    buf = new Uint8Array([...buf, ...chunk.subarray(0, n)]);
  }
  const end = headEnd(buf);
  const head = parseResponseHead(buf.subarray(0, end));
  if (head.status !== 101) {
    conn.close();
    throw new Error(`${path}: HTTP ${head.status}`);
  }
  return {
    conn,
    first: buf.slice(end),
    send: (frame) => writeAll(conn, encodeFrame(Opcode.BINARY, frame, true)),
    close: () => {
      try {
        conn.close();
      } catch {
        // closed
      }
    },
  };
}

/** Writes all of `bytes`. */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}
