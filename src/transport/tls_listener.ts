/**
 * The relay's TLS listener. Deno.listenTls leaves Nagle's algorithm on for accepted sockets and
 * offers no way to turn it off; a TLS server then holds its first small write after the
 * handshake (the 101) until the client's delayed ACK of the session tickets, 40 ms on every
 * tunnel open. node:tls servers honour `noDelay`, so the relay's own HTTPS/WSS uses them, and
 * this file turns their push-style sockets into the pull-style connections the server reads.
 */
import { createServer, type TLSSocket } from "node:tls";
import type { ByteConn } from "./socket_link.ts";

/** An accepted connection with the peer's address. */
export interface AcceptedConn extends ByteConn {
  readonly remoteAddr: Deno.NetAddr;
}

/** What the HTTP server accepts connections from. */
export interface Acceptor {
  readonly addr: Deno.NetAddr;
  accept(): Promise<AcceptedConn>;
  close(): void;
}

const HIGH_WATER = 256 * 1024; // received and unread bytes beyond which the socket is paused
const HANDSHAKE_TIMEOUT_MS = 10_000; // a client that does not finish TLS in 10 s is dropped

/** Listens for TLS connections with TCP_NODELAY on every accepted socket. */
export async function listenTls(options: {
  hostname: string;
  port: number;
  cert: string;
  key: string;
}): Promise<Acceptor> {
  checkKeyPair(options.cert, options.key);
  const waiting: AcceptedConn[] = [];
  let wake: (() => void) | null = null;
  let closed = false;
  const server = createServer({
    cert: options.cert,
    key: options.key,
    noDelay: true,
    handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    ALPNProtocols: ["http/1.1"],
  }, (socket) => {
    waiting.push(new NodeSocketConn(socket));
    wake?.();
  });
  server.on("tlsClientError", () => {}); // a failed handshake concerns only that client
  server.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = server.address() as { address: string; port: number };
  return {
    addr: { transport: "tcp", hostname: bound.address, port: bound.port },
    async accept() {
      while (waiting.length === 0) {
        if (closed) throw new Deno.errors.BadResource("the listener is closed");
        await new Promise<void>((r) => (wake = r));
        wake = null;
      }
      return waiting.shift()!;
    },
    close() {
      closed = true;
      server.close();
      wake?.();
      for (const c of waiting.splice(0)) c.close();
    },
  };
}

/**
 * Refuses a certificate or key that cannot serve TLS (node:tls would accept it and fail every
 * handshake later): Deno's TLS listener checks the chain and that the key matches it.
 */
function checkKeyPair(cert: string, key: string): void {
  try {
    Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key }).close();
  } catch (err) {
    throw new Error(
      `the TLS certificate and key cannot be used: ${err instanceof Error ? err.message : err}`,
    );
  }
}

/** A node:tls socket as a ByteConn: reads pull from what 'data' events delivered. */
class NodeSocketConn implements AcceptedConn {
  readonly remoteAddr: Deno.NetAddr;
  #socket: TLSSocket;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #ended = false;
  #error: Error | null = null;
  #reader: (() => void) | null = null;

  constructor(socket: TLSSocket) {
    this.#socket = socket;
    this.remoteAddr = {
      transport: "tcp",
      hostname: (socket.remoteAddress ?? "").replace(/^::ffff:/, ""),
      port: socket.remotePort ?? 0,
    };
    socket.on("data", (data: Uint8Array) => {
      this.#chunks.push(data);
      this.#buffered += data.length;
      if (this.#buffered > HIGH_WATER) socket.pause();
      this.#wake();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#wake();
    });
    socket.on("error", (err: Error) => {
      this.#error = err;
      this.#wake();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#wake();
    });
  }

  #wake(): void {
    const r = this.#reader;
    this.#reader = null;
    r?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((r) => (this.#reader = r));
    }
    let n = 0;
    while (n < p.length && this.#chunks.length > 0) {
      const chunk = this.#chunks[0];
      const take = Math.min(chunk.length, p.length - n);
      p.set(chunk.subarray(0, take), n);
      n += take;
      if (take === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(take);
    }
    this.#buffered -= n;
    if (this.#buffered <= HIGH_WATER / 2 && this.#socket.isPaused()) this.#socket.resume();
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#socket.write(p, (err?: Error | null) => (err ? reject(err) : resolve(p.length)));
    });
  }

  close(): void {
    this.#socket.destroy();
  }
}
