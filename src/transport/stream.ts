/**
 * One end of a tunnel stream: bridges a byte connection (a TCP socket on the device, stdin and
 * stdout in `od pipe`) to protocol frames, with the credit flow control of frame.ts.
 *
 * Outbound, it reads only while it holds credit, straight into a frame buffer with room for the
 * header, so bytes are copied once on their way out. Inbound, it queues DATA, writes it out in
 * order and grants credit back only for what has been written: a slow reader stops the far
 * writer after one window, and this end never holds more than one window per stream.
 *
 * Lifecycle: `start()` once; feed frames for this stream to `handle()`. `done` resolves once
 * both directions have ended (EOF each way) or the stream was reset, and the connection has
 * been closed; it resolves with the reason if the stream ended abnormally.
 */
import {
  dataFrame,
  encodeCredit,
  encodeEof,
  encodeReset,
  type Frame,
  FrameType,
  HEADER_SIZE,
  MAX_DATA,
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
  /** Sends a frame to the peer (a FrameLink's send). */
  send: (frame: Uint8Array) => void;
  /** The local byte connection. */
  io: ByteIO;
  /** Counts bytes as they pass, for audit and benchmarks. */
  onBytes?: (direction: "in" | "out", n: number) => void;
}

// Grant credit in batches of a quarter window: one CREDIT frame per 256 KiB instead of one per
// DATA frame, and the writer still has three quarters of a window to send while it waits.
const CREDIT_BATCH = STREAM_WINDOW / 4;

/** A bridge between one ByteIO and one protocol stream. */
export class StreamEnd {
  readonly id: number;
  readonly done: Promise<StreamEnding>;
  #send: (frame: Uint8Array) => void;
  #io: ByteIO;
  #onBytes: StreamEndOptions["onBytes"];
  #resolveDone!: (ending: StreamEnding) => void;
  #finished = false;

  #credit = STREAM_WINDOW; // bytes we may still send
  #creditWaiter: (() => void) | null = null;
  #readEnded = false; // we sent EOF

  #queue: Uint8Array[] = []; // received, not yet written
  #outstanding = 0; // bytes received and not yet granted back: the peer's view of our window
  #ungranted = 0; // bytes written out but not yet granted back
  #peerEof = false; // peer sent EOF
  #writeEnded = false; // we closed our write side after the peer's EOF
  #writing = false;

  constructor(options: StreamEndOptions) {
    this.id = options.id;
    this.#send = options.send;
    this.#io = options.io;
    this.#onBytes = options.onBytes;
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
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
        if (this.#credit > STREAM_WINDOW) {
          return this.reset(ResetCode.PROTOCOL, "Peer granted more credit than the window");
        }
        this.#creditWaiter?.();
        return;
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
      this.#send(buf.subarray(0, HEADER_SIZE + n));
    }
  }

  #onData(data: Uint8Array): void {
    if (this.#peerEof) return this.reset(ResetCode.PROTOCOL, "Peer sent data after EOF");
    this.#outstanding += data.length;
    if (this.#outstanding > STREAM_WINDOW) {
      return this.reset(ResetCode.PROTOCOL, "Peer sent more data than its credit allowed");
    }
    this.#queue.push(data);
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
          await this.#writeAll(chunk);
          if (this.#ungranted >= CREDIT_BATCH && !this.#peerEof) {
            this.#send(encodeCredit(this.id, this.#ungranted));
            this.#outstanding -= this.#ungranted;
            this.#ungranted = 0;
          }
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
      this.#ungranted += n;
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
