/**
 * The emulated bottleneck of one direction of a link, in virtual time (milliseconds on the
 * `performance.now()` scale, passed in by the caller so tests can drive it without sockets).
 *
 * Bytes a connection hands to the link wait in that connection's queue; the transmitter sends
 * one packet of up to `MSS` bytes (plus `OVERHEAD` bytes of headers) at a time at the link's
 * rate, taking connections with queued bytes in round robin, one packet each; a sent packet
 * arrives `delayMs` after its last bit left. The queues together hold about `queuePackets`
 * packets: while they are full, a connection that already has bytes queued may not add more
 * (the caller stops reading its socket) — a connection with nothing queued always may, as
 * fq_codel admits a thin flow's packet and drops from the fattest. A lost packet (`loss`, per
 * packet) costs its transmission twice and arrives one round trip late, and every later byte of
 * its connection waits for it: TCP's fast retransmit and in-order delivery.
 */

/** Payload bytes per packet, as TCP over Ethernet with timestamps carries. */
export const MSS = 1448;
/** Header bytes each packet also puts on the wire: IPv4 20 + TCP 20 + timestamp option 12. */
export const OVERHEAD = 52;
// Packets of one connection that arrive this close together are released together: one write
// instead of many at high rates, and no byte ever arrives early (the group waits for its last).
const MERGE_MS = 0.25;

/** A direction's settings. */
export interface LinkParams {
  /** Bits per second on the wire, headers included. */
  rateBps: number;
  /** One-way propagation delay in ms. */
  delayMs: number;
  /** How many packets the queues may hold before senders are held back. */
  queuePackets: number;
  /** Probability that a packet is lost and retransmitted, 0..1. */
  loss: number;
}

/** Counters of one direction, for tests and the bench. */
export interface LinkStats {
  bytes: number;
  packets: number;
  lost: number;
  /** Most packets ever queued at once. */
  maxQueue: number;
}

/** A point in a flow's delivery schedule: bytes up to `upTo` arrive at `at`. */
interface Checkpoint {
  at: number;
  first: number; // when the first packet merged into it would have arrived
  upTo: number;
  fin: boolean;
}

/** One direction of one connection as the link sees it: byte counters and its schedule. */
export class Flow {
  /** Bytes handed to the link, ever. */
  enqueued = 0;
  /** Bytes that have left the transmitter. */
  sent = 0;
  /** Bytes that have arrived at the far end (may be written out). */
  released = 0;
  /** The sender's EOF was handed to the link / has arrived. */
  finQueued = false;
  finReleased = false;
  #finSent = false;
  #schedule: Checkpoint[] = [];
  #head = 0; // index of the first pending checkpoint in #schedule
  #lastAt = 0; // arrival times never go backwards: TCP delivers in order
  /** Called when `released` or `finReleased` changed. */
  onRelease: () => void = () => {};

  /** Bytes queued before the transmitter. */
  get queued(): number {
    return this.enqueued - this.sent;
  }

  /** Whether the transmitter has anything left to send for this flow. */
  get backlogged(): boolean {
    return this.queued > 0 || (this.finQueued && !this.#finSent);
  }

  /** Packets this flow occupies in the queue. */
  get packets(): number {
    return Math.ceil(this.queued / MSS);
  }

  /** Records a packet of `size` bytes (or the FIN) that arrives at `at`, or later. */
  schedule(size: number, fin: boolean, at: number): void {
    if (fin) this.#finSent = true;
    this.sent += size;
    at = Math.max(at, this.#lastAt);
    this.#lastAt = at;
    const last = this.#schedule.at(-1);
    if (last && this.#schedule.length > this.#head && !last.fin && at - last.first < MERGE_MS) {
      last.at = at;
      last.upTo = this.sent;
      last.fin = fin;
    } else this.#schedule.push({ at, first: at, upTo: this.sent, fin });
  }

  /** When the next scheduled packet arrives, or Infinity. */
  get nextArrival(): number {
    return this.#head < this.#schedule.length ? this.#schedule[this.#head].at : Infinity;
  }

  /** Releases everything due by `now`; whether anything was. */
  release(now: number): boolean {
    let moved = false;
    while (this.#head < this.#schedule.length && this.#schedule[this.#head].at <= now) {
      const c = this.#schedule[this.#head++];
      this.released = c.upTo;
      if (c.fin) this.finReleased = true;
      moved = true;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#schedule.length) {
      this.#schedule = this.#schedule.slice(this.#head); // compact now and then, not per packet
      this.#head = 0;
    }
    return moved;
  }
}

/** One direction's bottleneck shared by every flow that crosses it that way. */
export class Link {
  params: LinkParams;
  #busyUntil = 0; // when the transmitter finishes its current packet
  #backlog: Flow[] = []; // flows with something to send, in round-robin order
  #next = 0; // index in #backlog of the flow whose turn it is
  #queued = 0; // packets in all queues
  #pending = new Set<Flow>(); // flows with packets on the wire
  #stats: LinkStats = { bytes: 0, packets: 0, lost: 0, maxQueue: 0 };
  /** Returns a random number in [0, 1); replaceable so tests can fix the losses. */
  random: () => number = Math.random;

  constructor(params: LinkParams) {
    this.params = { ...params };
  }

  /** Packets waiting for the transmitter. */
  get queuedPackets(): number {
    return this.#queued;
  }

  /** Whether `flow` may hand the link more bytes now. */
  admits(flow: Flow): boolean {
    return this.#queued < this.params.queuePackets || flow.queued === 0;
  }

  /** Free queue room in packets (0 when full). */
  get room(): number {
    return Math.max(0, this.params.queuePackets - this.#queued);
  }

  /** Hands `n` bytes of `flow` (and its FIN if `fin`) to the link at `now`. */
  enqueue(flow: Flow, n: number, fin: boolean, now: number): void {
    this.transmit(now); // catch up first: the queue as it stood before these bytes came
    if (!flow.backlogged) {
      if (this.#backlog.length === 0) this.#busyUntil = Math.max(this.#busyUntil, now);
      this.#backlog.push(flow);
    }
    this.#queued -= flow.packets;
    flow.enqueued += n;
    if (fin) flow.finQueued = true;
    this.#queued += flow.packets;
    this.#stats.maxQueue = Math.max(this.#stats.maxQueue, this.#queued);
    this.transmit(now);
  }

  /** Sends every packet whose transmission starts by `now`. */
  transmit(now: number): void {
    const { rateBps, delayMs, loss } = this.params;
    while (this.#backlog.length > 0 && this.#busyUntil <= now) {
      if (this.#next >= this.#backlog.length) this.#next = 0;
      const flow = this.#backlog[this.#next];
      const size = Math.min(MSS, flow.queued);
      const fin = size === flow.queued && flow.finQueued;
      const wire = ((size + OVERHEAD) * 8 * 1000) / rateBps; // ms on the wire
      const lost = size > 0 && loss > 0 && this.random() < loss;
      this.#busyUntil += lost ? 2 * wire : wire; // the retransmission crosses the wire again
      // Fast retransmit: the loss shows at the sender after a round trip of duplicate ACKs.
      const late = lost ? 2 * delayMs : 0;
      this.#queued -= flow.packets;
      flow.schedule(size, fin, this.#busyUntil + delayMs + late);
      this.#queued += flow.packets;
      this.#pending.add(flow);
      this.#stats.bytes += size;
      this.#stats.packets++;
      if (lost) this.#stats.lost++;
      if (flow.backlogged) this.#next++;
      else this.#backlog.splice(this.#next, 1); // the next flow moves into this turn
    }
  }

  /** Releases what has arrived by `now` at the far ends; calls each flow's `onRelease`. */
  release(now: number): void {
    for (const flow of this.#pending) {
      if (flow.release(now)) flow.onRelease();
      if (flow.nextArrival === Infinity) this.#pending.delete(flow);
    }
  }

  /** When something next happens: a packet arrives, or the transmitter frees queue room. */
  nextEvent(): number {
    let next = this.#backlog.length > 0 ? this.#busyUntil : Infinity;
    for (const flow of this.#pending) next = Math.min(next, flow.nextArrival);
    return next;
  }

  /** Takes a flow off the link (its connection was reset): its bytes are dropped. */
  forget(flow: Flow): void {
    const i = this.#backlog.indexOf(flow);
    if (i >= 0) {
      this.#queued -= flow.packets;
      this.#backlog.splice(i, 1);
      if (i < this.#next) this.#next--;
    }
    this.#pending.delete(flow);
  }

  /** A copy of the counters. */
  stats(): LinkStats & { queue: number } {
    return { ...this.#stats, queue: this.#queued };
  }
}
