/**
 * One end of a tunnel stream: bridges a byte connection (a TCP socket on the device, stdin and
 * stdout in `od pipe`) to protocol frames, with the credit flow control of frame.ts.
 *
 * Outbound, it reads only while it holds credit, straight into a frame buffer with room for the
 * header, so bytes are copied once on their way out. When the credit runs out while everything
 * it sent has left (so the link is not what holds it back), it tells the peer with BLOCKED.
 * Inbound, it queues DATA, writes it out in order and grants credit for what has been written:
 * a slow reader stops the far writer after one window, and this end never holds more than one
 * window per stream. With growing windows ("windows" negotiated), the window starts small and
 * doubles each time the sender reports BLOCKED while we keep up, up to `maxWindow`, and decays
 * by a quarter every few seconds in which it did not, so it follows the path's
 * bandwidth-delay product instead of a fixed guess.
 *
 * Lifecycle: `start()` once; feed frames for this stream to `handle()`. `done` resolves once
 * both directions have ended (EOF each way) or the stream was reset, and the connection has
 * been closed; it resolves with the reason if the stream ended abnormally.
 */
import {
  dataFrame,
  encodeBlocked,
  encodeCredit,
  encodeEof,
  encodeReset,
  type Frame,
  FrameType,
  HEADER_SIZE,
  MAX_DATA,
  MAX_WINDOW,
  ResetCode,
  STREAM_WINDOW,
} from "../protocol/frame.ts";

/** A byte connection a stream can bridge: Deno.Conn fits, so do stdio adapters. */
export interface ByteIO {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  /** Ends the outgoing direction (TCP half-close, or closing stdout). */
  closeWrite(): Promise<void> | void;
  close(): void;
}

/** How a stream ended: null if cleanly, else the reset it ended with. */
export type StreamEnding = null | { code: number; reason: string; local: boolean };

/** Options for a StreamEnd. */
export interface StreamEndOptions {
  /** Stream id used in outgoing frames. */
  id: number;
  /** Sends a frame to the peer (a FrameLink's send; `onSent` once it reached the network). */
  send: (frame: Uint8Array, onSent?: () => void) => void;
  /** The local byte connection. */
  io: ByteIO;
  /** Counts bytes as they pass, for audit and benchmarks. */
  onBytes?: (direction: "in" | "out", n: number) => void;
  /**
   * How far this end's receive window may grow (negotiated with the relay); STREAM_WINDOW, the
   * default, keeps the fixed window that peers without "windows" expect, and sends no BLOCKED.
   */
  maxWindow?: number;
}

const START_WINDOW = 256 * 1024; // a growing window starts here: 1/4 of the first grant
const DECAY_MS = 4_000; // a window not asked to grow for this long shrinks by a quarter
// Credit goes out once a quarter of the window can be granted: one CREDIT per 64 KiB at the
// smallest window instead of one per DATA frame, with three quarters left to send meanwhile.
const BATCH_FRACTION = 4;

/** A bridge between one ByteIO and one protocol stream. */
export class StreamEnd {
  readonly id: number;
  readonly done: Promise<StreamEnding>;
  #send: (frame: Uint8Array, onSent?: () => void) => void;
  #io: ByteIO;
  #onBytes: StreamEndOptions["onBytes"];
  #resolveDone!: (ending: StreamEnding) => void;
  #finished = false;

  #credit = STREAM_WINDOW; // bytes we may still send
  #creditWaiter: (() => void) | null = null;
  #readEnded = false; // we sent EOF
  #unsent = 0; // DATA bytes handed to send() that have not reached the network yet
  #blockedSent = false; // BLOCKED went out and no CREDIT came since
  #blockWhenSent = false; // out of credit while data was still queued for the link

  #queue: Uint8Array[] = []; // received, not yet written
  #queuedBytes = 0;
  #growing: boolean; // "windows" negotiated: BLOCKED is spoken, the window may grow
  #maxWindow: number;
  #window: number; // what the peer may have outstanding: in flight, its credit, our queue
  #granted = 0; // credit granted beyond the initial STREAM_WINDOW, in all
  #received = 0;
  #consumed = 0; // bytes written out
  #lastBlockedAt = 0;
  #lastDecayAt = 0;
  #peerEof = false; // peer sent EOF
  #writeEnded = false; // we closed our write side after the peer's EOF
  #writing = false;

  constructor(options: StreamEndOptions) {
    this.id = options.id;
    this.#send = options.send;
    this.#io = options.io;
    this.#onBytes = options.onBytes;
    this.#maxWindow = Math.min(MAX_WINDOW, options.maxWindow ?? STREAM_WINDOW);
    this.#growing = this.#maxWindow > STREAM_WINDOW;
    this.#window = this.#growing ? START_WINDOW : STREAM_WINDOW;
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
  }

  /** The current receive window (for tests and benchmarks). */
  get window(): number {
    return this.#window;
  }

  /** Starts copying the connection's bytes to the peer. */
  start(): void {
    this.#pump().catch((err) => {
      this.reset(ResetCode.CANCELLED, `Reading from the connection failed: ${describe(err)}`);
    });
  }

  /** True once the stream has ended either way. */
  get finished(): boolean {
    return this.#finished;
  }

  /** Handles a frame addressed to this stream. Protocol violations reset the stream. */
  handle(frame: Frame): void {
    if (this.#finished) return;
    switch (frame.type) {
      case FrameType.DATA:
        return this.#onData(frame.data);
      case FrameType.CREDIT:
        this.#credit += frame.bytes;
        if (this.#credit > MAX_WINDOW) {
          return this.reset(ResetCode.PROTOCOL, "Peer granted more credit than the window");
        }
        this.#blockedSent = false;
        this.#blockWhenSent = false;
        this.#creditWaiter?.();
        return;
      case FrameType.BLOCKED:
        return this.#onBlocked();
      case FrameType.EOF:
        if (this.#peerEof) return this.reset(ResetCode.PROTOCOL, "Peer sent EOF twice");
        this.#peerEof = true;
        this.#drain();
        return;
      case FrameType.RESET:
        return this.#end({ code: frame.code, reason: frame.reason, local: false });
      default:
        return this.reset(ResetCode.PROTOCOL, `Unexpected frame type ${frame.type} on a stream`);
    }
  }

  /** Aborts the stream: tells the peer why and closes the connection. */
  reset(code: number, reason: string): void {
    if (this.#finished) return;
    this.#send(encodeReset(this.id, code, reason));
    this.#end({ code, reason, local: true });
  }

  async #pump(): Promise<void> {
    const buf = dataFrame(this.id, MAX_DATA);
    while (!this.#finished) {
      if (this.#credit <= 0) {
        this.#reportBlocked();
        await new Promise<void>((resolve) => (this.#creditWaiter = resolve));
        this.#creditWaiter = null;
        continue;
      }
      const size = Math.min(this.#credit, MAX_DATA);
      let n: number | null;
      try {
        n = await this.#io.read(buf.subarray(HEADER_SIZE, HEADER_SIZE + size));
      } catch (err) {
        if (this.#finished) return; // closed under us by a reset
        throw err;
      }
      if (this.#finished) return;
      if (n === null) {
        this.#readEnded = true;
        this.#send(encodeEof(this.id));
        this.#maybeDone();
        return;
      }
      if (n === 0) continue;
      this.#credit -= n;
      this.#onBytes?.("out", n);
      // send() captures the bytes (FrameLink contract), so the buffer is reused at once.
      if (!this.#growing) this.#send(buf.subarray(0, HEADER_SIZE + n));
      else {
        this.#unsent += n;
        this.#send(buf.subarray(0, HEADER_SIZE + n), () => this.#sent(n));
      }
    }
  }

  /**
   * Out of credit: if everything we sent has left, the window (not the link) holds us back, and
   * the peer should know; otherwise we say so once the link has taken the rest.
   */
  #reportBlocked(): void {
    if (!this.#growing || this.#blockedSent || this.#readEnded) return;
    if (this.#unsent > 0) {
      this.#blockWhenSent = true;
      return;
    }
    this.#blockedSent = true;
    this.#send(encodeBlocked(this.id));
  }

  #sent(n: number): void {
    this.#unsent -= n;
    if (this.#unsent === 0 && this.#blockWhenSent && this.#credit <= 0 && !this.#finished) {
      this.#blockWhenSent = false;
      this.#reportBlocked();
    }
  }

  /** The peer had data and no credit: grow the window, unless we are the slow part. */
  #onBlocked(): void {
    if (!this.#growing || this.#peerEof) return;
    this.#lastBlockedAt = Date.now();
    if (this.#queuedBytes > this.#window / 2) return; // our writer is the bottleneck
    this.#window = Math.min(this.#window * 2, this.#maxWindow);
    this.#grant(true);
  }

  /** Grants credit up to the window, in batches (or at once when `now`). */
  #grant(now = false): void {
    if (this.#peerEof || this.#finished) return;
    if (this.#growing) this.#decay();
    const open = STREAM_WINDOW + this.#granted - this.#consumed; // what the peer may have out
    const grant = Math.min(this.#window - open, MAX_WINDOW);
    if (grant <= 0 || (!now && grant < this.#window / BATCH_FRACTION)) return;
    this.#granted += grant;
    this.#send(encodeCredit(this.id, grant));
  }

  #decay(): void {
    const now = Date.now();
    if (now - this.#lastBlockedAt < DECAY_MS || now - this.#lastDecayAt < DECAY_MS) return;
    this.#lastDecayAt = now;
    this.#window = Math.max(START_WINDOW, Math.floor((this.#window * 3) / 4));
  }

  #onData(data: Uint8Array): void {
    if (this.#peerEof) return this.reset(ResetCode.PROTOCOL, "Peer sent data after EOF");
    this.#received += data.length;
    if (this.#received > STREAM_WINDOW + this.#granted) {
      return this.reset(ResetCode.PROTOCOL, "Peer sent more data than its credit allowed");
    }
    this.#queue.push(data);
    this.#queuedBytes += data.length;
    this.#drain();
  }

  #drain(): void {
    if (this.#writing || this.#finished) return;
    this.#writing = true;
    this.#writeQueued().catch((err) => {
      this.reset(ResetCode.CANCELLED, `Writing to the connection failed: ${describe(err)}`);
    });
  }

  // Clears #writing in the same synchronous step that finds nothing left to do, so a frame that
  // arrives in between always finds a writer running or starts one.
  async #writeQueued(): Promise<void> {
    try {
      while (!this.#finished) {
        const chunk = this.#queue.shift();
        if (chunk) {
          this.#queuedBytes -= chunk.length;
          await this.#writeAll(chunk);
          this.#grant();
        } else if (this.#peerEof && !this.#writeEnded) {
          this.#writeEnded = true;
          await this.#io.closeWrite();
          this.#maybeDone();
        } else {
          return;
        }
      }
    } finally {
      this.#writing = false;
    }
  }

  async #writeAll(chunk: Uint8Array): Promise<void> {
    while (chunk.length > 0 && !this.#finished) {
      const n = await this.#io.write(chunk);
      chunk = chunk.subarray(n);
      this.#consumed += n;
      this.#onBytes?.("in", n);
    }
  }

  #maybeDone(): void {
    if (this.#readEnded && this.#writeEnded) this.#end(null);
  }

  #end(ending: StreamEnding): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#creditWaiter?.();
    try {
      this.#io.close();
    } catch {
      // already closed
    }
    this.#resolveDone(ending);
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
