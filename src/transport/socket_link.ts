/**
 * A FrameLink over a WebSocket on a byte connection we own: the relay's side of every device
 * and client link, and the daemon's and client's side of theirs. The wire format is ws_codec.ts;
 * this file is the I/O around it.
 *
 * Reading: the buffer starts small (an idle device link costs a couple of KiB) and grows while
 * reads fill it. A frame's header is checked and admitted before its payload is buffered, so a
 * message over `maxMessage` closes the link having cost no more than its header. Payloads of
 * 4 KiB and more are handed on as views of the read buffer; smaller ones are copied, so a buffer
 * that held only small messages is read into again.
 *
 * Writing never blocks the caller, but nothing is unbounded either: `bufferedAmount` says what
 * is queued, `send`'s callback says when a frame reached the socket (the relay's credit
 * accounting uses it), `onDrain` fires when the queue has emptied, and a peer that stops reading
 * until more than `maxQueued` bytes wait is disconnected. WebSocket pings are answered at a
 * bounded rate and never while the queue is backed up.
 *
 * Lifecycle: frames arrive through `onFrame` until `onClose` fires once (BaseLink). `close()`
 * sends a close frame and drops the connection once the peer answers, or after a second.
 */
import { MAX_WINDOW } from "../protocol/frame.ts";
import { BaseLink, type FrameLink } from "./link.ts";
import {
  Assembler,
  encodeClosePayload,
  headerSize,
  maskInPlace,
  Opcode,
  parseHeader,
  type Role,
  writeFrame,
  WsClose,
  type WsEvent,
  WsProtocolError,
} from "./ws_codec.ts";

/** A byte connection: Deno.TcpConn and Deno.TlsConn fit. */
export interface ByteConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/** Options for a SocketLink. */
export interface SocketLinkOptions {
  /** Our end: "server" on the relay, "client" in daemons and clients. */
  role: Role;
  /** Largest message accepted from the peer, in bytes. */
  maxMessage: number;
  /** Bytes already read past the HTTP head (the first frames). */
  leftover?: Uint8Array;
  /** Bytes to write before any frame, in the same write as the first ones (a 101 answer). */
  head?: Uint8Array;
  /** Bytes queued for writing beyond which the peer counts as not reading; default 16 MiB. */
  maxQueued?: number;
  /**
   * Acknowledge received data promptly: a TLS relay may hold small writes (Nagle) until our
   * kernel's delayed ACK; after receiving, if we send nothing within NUDGE_MS, an empty pong
   * carries the ACK at once.
   */
  nudge?: boolean;
}

const IDLE_READ = 2 * 1024; // what an idle link holds while its read is pending
const MAX_READ = 256 * 1024; // bulk transfers read this much per call
const SHRINK_AFTER = 64; // small reads in a row before the buffer shrinks again
const ZERO_COPY = 4096; // payloads from this size on are views of the read buffer
const COALESCE = 256 * 1024; // queued frames are joined into writes of up to this
// A whole stream window (which can grow to MAX_WINDOW) plus control traffic, framing and the
// scheduler's in-flight data may be queued toward an honest peer that is slow to read.
const DEFAULT_MAX_QUEUED = MAX_WINDOW + 4 * 1024 * 1024;
const NUDGE_MS = 2; // well inside the 40 ms delayed-ACK timer, long enough to ride on a reply
const PONG_BURST = 20; // WebSocket pings answered back to back
const PONGS_PER_SECOND = 5; // then this many a second; od's own keepalive uses od PINGs
const PONG_QUEUE_LIMIT = 64 * 1024; // a peer that lets this much pile up gets no pongs
const CLOSE_WAIT_MS = 1000; // how long a closing link waits for the peer's close frame
// A read of data that is already there completes without passing through the event loop, so a
// peer that never stops sending would starve every other connection; after this long of
// back-to-back work the read loop lets the event loop run.
const YIELD_AFTER_MS = 5;

interface Queued {
  bytes: Uint8Array;
  onSent?: () => void;
}

/** A FrameLink over a WebSocket on a ByteConn. */
export class SocketLink extends BaseLink implements FrameLink {
  /** Set after the queue has emptied; the relay uses it to release credit it held back. */
  onDrain: (() => void) | null = null;
  /** When the last bytes arrived from the peer (performance.now()). */
  lastReceivedAt = performance.now();

  #conn: ByteConn;
  #role: Role;
  #masked: boolean;
  #assembler: Assembler;
  #maxQueued: number;
  #queue: Queued[] = [];
  #queued = 0;
  #writing = false;
  #pumpScheduled = false;
  #closeSent = false;
  #dropped = false;
  #dropTimer: ReturnType<typeof setTimeout> | undefined;
  #socketClosed: Promise<void>;
  #resolveSocketClosed!: () => void;
  #pongTokens = PONG_BURST;
  #pongAt = performance.now();
  #nudge: boolean;
  #nudgeTimer: ReturnType<typeof setTimeout> | undefined;
  #lastWrite = 0;

  constructor(conn: ByteConn, options: SocketLinkOptions) {
    super();
    this.#conn = conn;
    this.#role = options.role;
    this.#masked = options.role === "client";
    this.#assembler = new Assembler(options.maxMessage);
    this.#maxQueued = options.maxQueued ?? DEFAULT_MAX_QUEUED;
    this.#nudge = options.nudge ?? false;
    this.#socketClosed = new Promise((r) => (this.#resolveSocketClosed = r));
    if (options.head) this.#enqueue(options.head);
    this.#readLoop(options.leftover ?? new Uint8Array(0)).catch((err) => {
      if (err instanceof WsProtocolError) this.#fail(err.code, err.message);
      else this.#fail(WsClose.ABNORMAL, `reading failed: ${errText(err)}`);
    });
  }

  /** Bytes queued and not yet written to the socket. */
  get bufferedAmount(): number {
    return this.#queued;
  }

  /** Queues a binary message; `onSent` runs once it has been written to the socket. */
  send(frame: Uint8Array, onSent?: () => void): void {
    if (this.closed) return;
    const out = new Uint8Array(headerSize(frame.length, this.#masked) + frame.length);
    writeFrame(out, 0, Opcode.BINARY, frame, this.#masked);
    this.#enqueue(out, onSent);
    if (this.#queued > this.#maxQueued) {
      this.close(4429, "the peer stopped reading");
    }
  }

  /** Closes with a code and a reason for the peer (cut to fit a close frame). */
  close(code = 1000, reason = ""): void {
    if (this.closed) return;
    this.#sendClose(code, reason);
    this.finish(code, reason);
    this.#dropLater(CLOSE_WAIT_MS);
  }

  /** Resolves when the connection has really closed, or after `ms`. */
  async flushed(ms = 2000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.#socketClosed, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
  }

  #sendClose(code: number, reason: string): void {
    if (this.#closeSent || this.#dropped) return;
    this.#closeSent = true;
    const payload = encodeClosePayload(code, reason);
    const out = new Uint8Array(headerSize(payload.length, this.#masked) + payload.length);
    writeFrame(out, 0, Opcode.CLOSE, payload, this.#masked);
    this.#enqueue(out);
  }

  #enqueue(bytes: Uint8Array, onSent?: () => void): void {
    if (this.#dropped) return;
    this.#lastWrite = performance.now();
    this.#queue.push({ bytes, onSent });
    this.#queued += bytes.length;
    // Writes start on a microtask, so frames sent in the same turn share one write.
    if (!this.#writing && !this.#pumpScheduled) {
      this.#pumpScheduled = true;
      queueMicrotask(() => {
        this.#pumpScheduled = false;
        if (!this.#writing) this.#pump();
      });
    }
  }

  async #pump(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && !this.#dropped) {
        const { chunk, callbacks } = this.#takeChunk();
        let off = 0;
        while (off < chunk.length) off += await this.#conn.write(chunk.subarray(off));
        this.#queued -= chunk.length;
        for (const cb of callbacks) cb();
      }
    } catch (err) {
      this.#fail(WsClose.ABNORMAL, `writing failed: ${errText(err)}`);
    } finally {
      this.#writing = false;
    }
    if (this.#queued === 0 && !this.closed) this.onDrain?.();
    if (this.#closeSent && this.#queued === 0 && this.#peerClosed) this.#drop();
  }

  /** Joins queued frames into one write of up to COALESCE bytes. */
  #takeChunk(): { chunk: Uint8Array; callbacks: (() => void)[] } {
    const first = this.#queue.shift()!;
    const callbacks = first.onSent ? [first.onSent] : [];
    if (this.#queue.length === 0 || first.bytes.length >= COALESCE) {
      return { chunk: first.bytes, callbacks };
    }
    let size = first.bytes.length;
    let n = 0;
    while (n < this.#queue.length && size + this.#queue[n].bytes.length <= COALESCE) {
      size += this.#queue[n++].bytes.length;
    }
    if (n === 0) return { chunk: first.bytes, callbacks };
    const chunk = new Uint8Array(size);
    chunk.set(first.bytes);
    let off = first.bytes.length;
    for (const q of this.#queue.splice(0, n)) {
      chunk.set(q.bytes, off);
      off += q.bytes.length;
      if (q.onSent) callbacks.push(q.onSent);
    }
    return { chunk, callbacks };
  }

  #peerClosed = false;

  async #readLoop(leftover: Uint8Array): Promise<void> {
    let readSize = IDLE_READ;
    let smallReads = 0;
    let buf = new Uint8Array(Math.max(readSize, leftover.length));
    buf.set(leftover);
    let len = leftover.length;
    let yielded = performance.now();
    while (!this.#dropped) {
      // Decode every complete frame in buf[0..len).
      let off = 0;
      let need = 0; // bytes the frame at `off` needs in all, once its header is known
      let pinned = false;
      while (!this.#dropped) {
        const h = parseHeader(buf.subarray(0, len), off, this.#role);
        if (!h) break;
        this.#assembler.admit(h); // refuses oversized and out-of-order frames up front
        if (len - off < h.size + h.length) {
          need = h.size + h.length;
          break;
        }
        let payload = buf.subarray(off + h.size, off + h.size + h.length);
        if (h.mask) maskInPlace(payload, h.mask);
        if (payload.length < ZERO_COPY) payload = payload.slice();
        else pinned = true;
        off += h.size + h.length;
        const event = this.#assembler.complete(h, payload);
        if (event) this.#onEvent(event);
      }
      if (this.#dropped || this.#peerClosed) return;
      // Keep the unparsed rest at the start of a buffer big enough for the next read.
      const rest = len - off;
      const size = Math.max(readSize, need, rest + IDLE_READ);
      if (pinned || buf.length < size || (buf.length > size * 4 && rest <= size)) {
        const next = new Uint8Array(size);
        next.set(buf.subarray(off, len));
        buf = next;
      } else if (off > 0) buf.copyWithin(0, off, len);
      len = rest;
      if (performance.now() - yielded > YIELD_AFTER_MS) {
        await new Promise((r) => setTimeout(r, 0));
        yielded = performance.now();
        if (this.#dropped) return;
      }
      const asked = performance.now();
      const n = await this.#conn.read(buf.subarray(len)).catch(() => null);
      if (performance.now() - asked > 1) yielded = performance.now(); // it waited: others ran
      if (n === null) {
        return this.#fail(WsClose.ABNORMAL, this.#closeSent ? "" : "the connection closed");
      }
      this.lastReceivedAt = performance.now();
      this.#scheduleNudge();
      // Grow while reads fill the buffer; shrink back after a run of small ones.
      if (len + n === buf.length && readSize < MAX_READ) {
        readSize = Math.min(MAX_READ, readSize * 4);
      } else if (n < readSize / 8 && ++smallReads > SHRINK_AFTER) {
        readSize = Math.max(IDLE_READ, readSize / 4);
        smallReads = 0;
      }
      len += n;
    }
  }

  #onEvent(event: WsEvent): void {
    switch (event.kind) {
      case "message":
        return this.deliver(event.data);
      case "ping":
        if (this.#takePongToken() && this.#queued < PONG_QUEUE_LIMIT) {
          const out = new Uint8Array(headerSize(event.payload.length, this.#masked) + 125);
          const n = writeFrame(out, 0, Opcode.PONG, event.payload, this.#masked);
          this.#enqueue(out.subarray(0, n));
        }
        return;
      case "pong":
        return;
      case "close": {
        this.#peerClosed = true;
        const code = event.code === WsClose.NO_STATUS ? WsClose.NORMAL : event.code;
        this.#sendClose(code, "");
        this.finish(event.code, event.reason);
        // Our close frame goes out first; the pump drops the connection once it is written.
        if (!this.#writing && !this.#pumpScheduled) this.#drop();
        else this.#dropLater(CLOSE_WAIT_MS);
      }
    }
  }

  #takePongToken(): boolean {
    const now = performance.now();
    this.#pongTokens = Math.min(
      PONG_BURST,
      this.#pongTokens + ((now - this.#pongAt) / 1000) * PONGS_PER_SECOND,
    );
    this.#pongAt = now;
    if (this.#pongTokens < 1) return false;
    this.#pongTokens--;
    return true;
  }

  #scheduleNudge(): void {
    if (!this.#nudge || this.#nudgeTimer !== undefined || this.closed) return;
    const received = performance.now();
    this.#nudgeTimer = setTimeout(() => {
      this.#nudgeTimer = undefined;
      if (this.#lastWrite < received && !this.closed) {
        this.#enqueue(new Uint8Array([0x80 | Opcode.PONG, 0x80, 0, 0, 0, 0])); // empty, zero mask
      }
    }, NUDGE_MS);
  }

  /** Ends the link after a failure: tells the peer why when it still can, then drops. */
  #fail(code: number, reason: string): void {
    if (!this.closed) {
      if (code !== WsClose.ABNORMAL) this.#sendClose(code, reason);
      this.finish(code, reason);
    }
    if (code === WsClose.ABNORMAL) this.#drop();
    else this.#dropLater(100);
  }

  #dropLater(ms: number): void {
    if (this.#dropped) return;
    clearTimeout(this.#dropTimer);
    this.#dropTimer = setTimeout(() => this.#drop(), ms);
  }

  #drop(): void {
    if (this.#dropped) return;
    this.#dropped = true;
    clearTimeout(this.#dropTimer);
    clearTimeout(this.#nudgeTimer);
    this.#queue = [];
    this.#queued = 0;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    this.#resolveSocketClosed();
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
