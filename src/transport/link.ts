/**
 * A FrameLink carries whole protocol frames between two peers: a WebSocket in production, an
 * in-memory pair in unit tests. Roles talk to links only, so they never know which it is.
 *
 * Lifecycle: frames arrive through `onFrame` until `onClose` fires once; after that `send` is a
 * no-op. Neither side can pause the other: the protocol's credit windows bound what is in flight.
 */

/** A message-oriented, never-blocking link carrying protocol frames. */
export interface FrameLink {
  /** Queues one frame. The bytes are captured at once, so the caller may reuse `frame`. */
  send(frame: Uint8Array): void;
  /** Closes the link with a WebSocket close code and a short reason for the peer. */
  close(code?: number, reason?: string): void;
  /** Bytes queued by `send` that the peer has not yet been sent. */
  readonly bufferedAmount: number;
  /** True until the link has closed. */
  readonly open: boolean;
  /** Called with each incoming frame. A throw closes the link with `CloseCode.PROTOCOL`. */
  onFrame: (frame: Uint8Array) => void;
  /** Called once when the link is closed by either side. */
  onClose: (code: number, reason: string) => void;
}

/** WebSocket close codes od uses (4000–4999 is the application range). */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL: 4400, //    the peer sent a malformed or forbidden frame
  REVOKED: 4401, //     the credential was revoked or the share removed
  REPLACED: 4409, //    the same device connected again elsewhere
  TIMEOUT: 4408, //     keepalive or handshake timeout
  LIMIT: 4429, //       too many streams, frames or bytes
} as const;

const MAX_CLOSE_REASON = 120; // WebSocket close reasons are limited to 123 bytes

/** Adapts a WebSocket (client or server side) to a FrameLink. */
export class WebSocketLink implements FrameLink {
  #ws: WebSocket;
  #closed = false;
  #early: Uint8Array[] = []; // frames sent while the socket was still connecting
  #socketClosed: Promise<void>;
  onFrame: (frame: Uint8Array) => void = () => {};
  onClose: (code: number, reason: string) => void = () => {};

  /** Wraps `ws`, which may still be connecting: frames sent before it opens are queued. */
  constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.binaryType = "arraybuffer";
    this.#socketClosed = new Promise((resolve) => ws.addEventListener("close", () => resolve()));
    ws.onmessage = (ev) => {
      if (this.#closed) return;
      if (typeof ev.data === "string") {
        this.close(CloseCode.PROTOCOL, "text messages are not part of the od protocol");
        return;
      }
      try {
        this.onFrame(new Uint8Array(ev.data as ArrayBuffer));
      } catch (err) {
        this.close(CloseCode.PROTOCOL, err instanceof Error ? err.message : String(err));
      }
    };
    ws.onopen = () => {
      for (const frame of this.#early) ws.send(frame);
      this.#early = [];
    };
    ws.onclose = (ev) => this.#finish(ev.code, ev.reason);
    ws.onerror = () => {}; // onclose follows with the code
  }

  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  get open(): boolean {
    return !this.#closed;
  }

  send(frame: Uint8Array): void {
    if (this.#closed) return;
    if (this.#ws.readyState === WebSocket.CONNECTING) this.#early.push(frame.slice());
    else if (this.#ws.readyState === WebSocket.OPEN) this.#ws.send(frame);
  }

  /** Resolves when the socket has really closed (its close handshake done), or after `ms`. */
  async flushed(ms = 2000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#socketClosed,
      new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))),
    ]);
    clearTimeout(timer);
  }

  close(code: number = CloseCode.NORMAL, reason = ""): void {
    if (this.#closed) return;
    try {
      this.#ws.close(code, truncateUtf8(reason, MAX_CLOSE_REASON));
    } catch {
      // already closing
    }
    this.#finish(code, reason);
  }

  #finish(code: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#early = [];
    this.onClose(code, reason);
  }
}

function truncateUtf8(text: string, maxBytes: number): string {
  const bytes = new TextEncoder().encode(text);
  if (bytes.length <= maxBytes) return text;
  return new TextDecoder().decode(bytes.subarray(0, maxBytes)).replace(/\uFFFD$/, "");
}

/** Two FrameLinks joined in memory; delivery is asynchronous like a real socket. */
export function linkPair(): [FrameLink, FrameLink] {
  const a = new MemoryLink();
  const b = new MemoryLink();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

class MemoryLink implements FrameLink {
  peer: MemoryLink | null = null;
  #closed = false;
  bufferedAmount = 0;
  onFrame: (frame: Uint8Array) => void = () => {};
  onClose: (code: number, reason: string) => void = () => {};

  get open(): boolean {
    return !this.#closed;
  }

  send(frame: Uint8Array): void {
    if (this.#closed) return;
    const copy = frame.slice();
    const peer = this.peer!;
    this.bufferedAmount += copy.length;
    setTimeout(() => {
      this.bufferedAmount -= copy.length;
      if (!peer.#closed) peer.#deliver(copy);
    }, 0);
  }

  #deliver(frame: Uint8Array): void {
    try {
      this.onFrame(frame);
    } catch (err) {
      this.close(CloseCode.PROTOCOL, err instanceof Error ? err.message : String(err));
    }
  }

  close(code: number = CloseCode.NORMAL, reason = ""): void {
    if (this.#closed) return;
    this.#closed = true;
    this.onClose(code, reason);
    const peer = this.peer!;
    setTimeout(() => {
      if (!peer.#closed) {
        peer.#closed = true;
        peer.onClose(code, reason);
      }
    }, 0);
  }
}
