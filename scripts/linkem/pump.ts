/**
 * One direction of one emulated connection on real sockets: reads the sender's socket while the
 * link admits more (otherwise it leaves the bytes in the kernel, so TCP holds the sender back),
 * hands them to the link, and writes them to the receiver's socket once the link says they
 * have arrived, in order, then passes the sender's EOF on as a half-close.
 */
import { Flow, type Link, MSS } from "./link.ts";

// Reads are about a millisecond of the link's rate: small enough that the queue limit holds
// to a packet or two at 20 Mbit/s, large enough that 1 Gbit/s costs few system calls.
const READ_MAX = 64 * 1024;
// Reads that fill less than this much of their buffer are copied out so a 1-byte keystroke
// does not pin a large buffer until it is written.
const COPY_BELOW = 4096;
// Bytes that arrived together are written with one call, copied together up to this size: a
// copy costs far less than a system call.
const WRITE_MAX = 256 * 1024;

/** What a pump needs from the emulator around it. */
export interface PumpHost {
  /** The current time on the `performance.now()` scale. */
  now(): number;
  /** Asks for a scheduler tick once the links' next event is due. */
  changed(): void;
}

/** Moves one direction of a connection across `link`. */
export class Pump {
  readonly flow = new Flow();
  #link: Link;
  #from: Deno.Conn;
  #to: Deno.Conn;
  #host: PumpHost;
  #window: number;
  #data: Uint8Array[] = []; // read, not yet written, in order
  #written = 0;
  #writing = false;
  #wake: (() => void) | null = null; // the reader, waiting for queue room or window
  #closedWrite = false;
  /** Resolves once the EOF has been passed on; rejects if either socket failed. */
  readonly done: Promise<void>;
  #resolve!: () => void;
  #reject!: (err: unknown) => void;

  constructor(link: Link, from: Deno.Conn, to: Deno.Conn, host: PumpHost, window: number) {
    this.#link = link;
    this.#from = from;
    this.#to = to;
    this.#host = host;
    this.#window = window;
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.done.catch(() => {}); // the connection handles failures through `done`
    this.flow.onRelease = () => void this.#write();
  }

  /** Bytes this pump holds: queued, on the wire and arrived but not yet written. */
  get held(): number {
    return this.flow.enqueued - this.#written;
  }

  /** Wakes the reader if it waits and may now go on (called after every scheduler tick). */
  poke(): void {
    if (this.#wake && this.#mayRead()) {
      const wake = this.#wake;
      this.#wake = null;
      wake();
    }
  }

  #mayRead(): boolean {
    if (this.held >= this.#window) return false;
    // A flow with nothing queued may always send (see Link.admits); one with a backlog waits
    // for room for a whole read, so that a fast link costs few, large reads.
    return this.flow.queued === 0 || this.#link.room >= this.#readPackets();
  }

  /** Packets a read of about a millisecond of the link's rate takes, at least 2. */
  #readPackets(): number {
    const { rateBps, queuePackets } = this.#link.params;
    const perMs = Math.min(READ_MAX, rateBps / 8 / 1000) / MSS;
    return Math.max(1, Math.min(Math.ceil(queuePackets / 4), Math.max(2, Math.floor(perMs))));
  }

  /** How many bytes the next read may take. */
  #readSize(): number {
    const room = Math.max(1, this.#link.room);
    return Math.min(room * MSS, READ_MAX, this.#window - this.held);
  }

  /** Reads from the sender once `gate` resolves, until EOF; failures reject `done`. */
  async run(gate: Promise<void>): Promise<void> {
    try {
      await gate;
      while (true) {
        if (!this.#mayRead()) await new Promise<void>((r) => (this.#wake = r));
        const buf = new Uint8Array(this.#readSize());
        const n = await this.#from.read(buf);
        if (n === null) {
          this.#link.enqueue(this.flow, 0, true, this.#host.now());
          this.#host.changed();
          return;
        }
        this.#data.push(n < COPY_BELOW && n < buf.length ? buf.slice(0, n) : buf.subarray(0, n));
        this.#link.enqueue(this.flow, n, false, this.#host.now());
        this.#host.changed();
      }
    } catch (err) {
      this.#reject(err);
    }
  }

  /** Takes up to `limit` bytes off the front of the data, as one buffer. */
  #take(limit: number): Uint8Array {
    const first = this.#data[0];
    if (first.length >= limit || this.#data.length === 1 || first.length >= WRITE_MAX) {
      const piece = first.subarray(0, Math.min(limit, first.length));
      if (piece.length === first.length) this.#data.shift();
      else this.#data[0] = first.subarray(piece.length);
      return piece;
    }
    const out = new Uint8Array(Math.min(limit, WRITE_MAX));
    let filled = 0;
    while (filled < out.length) {
      const head = this.#data[0];
      const n = Math.min(head.length, out.length - filled);
      out.set(head.subarray(0, n), filled);
      filled += n;
      if (n === head.length) this.#data.shift();
      else this.#data[0] = head.subarray(n);
    }
    return out;
  }

  async #write(): Promise<void> {
    if (this.#writing) return;
    this.#writing = true;
    try {
      while (this.#written < this.flow.released) {
        const piece = this.#take(this.flow.released - this.#written);
        for (let off = 0; off < piece.length;) off += await this.#to.write(piece.subarray(off));
        this.#written += piece.length;
        this.poke();
      }
      if (this.flow.finReleased && !this.#closedWrite && this.#written === this.flow.enqueued) {
        this.#closedWrite = true;
        await this.#to.closeWrite();
        this.#resolve();
      }
    } catch (err) {
      this.#reject(err);
    } finally {
      this.#writing = false;
    }
  }
}
