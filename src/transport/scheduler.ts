/**
 * The scheduler of a shared device link: every tunnel to a device shares its one WebSocket, and
 * without a scheduler a keystroke waits behind whatever a transfer has already queued (a 1 MiB
 * window at 20 Mbit/s is 420 ms). Two rules fix that:
 *
 * 1. Only about one bandwidth-delay product is handed to the socket at a time. The rest waits
 *    here, per stream, where the next frame can still be chosen. How much is in flight is
 *    measured, not guessed: every so often a PING goes out whose nonce is the count of bytes
 *    handed over before it; the peer answers PINGs in order, so its PONG says those bytes have
 *    arrived. The same probes give the round-trip time and the delivery rate, and the cap on
 *    bytes in flight follows their product (BBR's model: a startup that doubles each round
 *    trip until the round trip grows by an eighth, HyStart++'s sign of a queue, then 1.25 ×
 *    the estimate, so spare capacity is found and queues stay short). A cap that still finds a fifth more each round trip goes
 *    back to doubling (its rate was learnt from light traffic), and one shrunk to almost
 *    nothing whose round trips all take twice the path's least RTT takes the new RTT (the path
 *    got longer; the old one would shrink the cap round after round). The rate is remembered
 *    over ten busy round trips within a minute, so the next transfer after an interactive
 *    pause starts at it instead of doubling up again.
 * 2. The next frame is chosen across streams: control frames, credit and resets first; then a
 *    stream with little queued (a keystroke, a request) before streams with a lot (transfers);
 *    those share fairly among themselves (deficit round robin).
 * 3. On a link measured to be slow a transfer's DATA goes out in pieces of a sixteenth of the
 *    cap (at least 4 KiB): a whole 64 KiB frame is 65 ms at 8 Mbit/s, and whatever is chosen
 *    next waits until the frame before it has crossed; the last piece may also overshoot the
 *    cap (an eighth of it kept keystroke echoes under a transfer at 20 Mbit/s 4–5 ms slower,
 *    p99). Fast links, whose cap is MiBs, and links not measured yet keep whole frames.
 *
 * Peers of every version answer PINGs, so this needs nothing new on the wire.
 */
import { encodePing, FrameType, HEADER_SIZE, MAX_DATA } from "../protocol/frame.ts";
import type { FrameLink } from "./link.ts";

const PROBE_TAG = [0x0d, 0x5c]; // first nonce bytes of a probe; keepalive nonces are random
const INITIAL_CAP = 64 * 1024; // before anything is measured: ~40 packets
const MIN_CAP = 16 * 1024; // never less, so a slow link still carries a frame and a probe
const MAX_CAP = 64 * 1024 * 1024; // a 5 Gbit/s × 100 ms path; beyond, socket buffers rule
const STARTUP_GAIN = 2; // doubles what is in flight, and so the delivery rate, each round trip
const STEADY_GAIN = 1.25; // finds spare capacity; the excess queues at most a quarter RTT
// Acknowledgements are late by the peers' processing and the timers' granularity, which the
// path's minimum RTT does not show: the cap allows this much more time's worth of data, so a
// fast link (a LAN, loopback) keeps a few frames in the pipeline; on slow links it is a few KiB.
const ACK_JITTER_MS = 2;
// The peers' event loops take bigger batches per turn the more bytes flow, so under a fast
// transfer acknowledgements lag further behind: at ~100 MB/s the round trip under load was 8 ms
// against 2.6 ms idle, and a cap on the idle RTT held od ssh at 84 MiB/s where 92 was possible.
// The cap allows up to this much more time's worth, in proportion to the rate up to BUSY_RATE:
// a slow link's cap (where a keystroke waits behind it) does not change.
const BUSY_LAG_MS = 6;
const BUSY_RATE = 100e6; // bytes per second
// The delivery rate is the best of the last ten busy round trips (that delivered at least
// MIN_CAP) within a minute: the light traffic of an idle or interactive link advances rounds
// too, and would otherwise make the link forget its rate seconds after a transfer, so that the
// next one found it again from 16 KiB (a second on a 200 ms path).
const RATE_WINDOW_ROUNDS = 10;
const RATE_MEMORY_MS = 60_000;
const RTT_WINDOW_MS = 10_000; // the path's RTT is the least seen in ten seconds
const LIGHT = 16 * 1024; // a stream with at most this much queued goes first
const QUANTUM = 64 * 1024 + HEADER_SIZE; // a busy stream's turn: one full DATA frame
const MAX_PROBES = 16; // outstanding probes; their answers are tiny
const MIN_PIECE = 4 * 1024; // smallest piece of a DATA frame: ~5 ms at 8 Mbit/s, 0.1% overhead
const PIECES_PER_CAP = 16; // a piece is at most this share of the cap
// In startup, a round trip this much (or an eighth of the least RTT, if more, as HyStart++) above
// the least says a queue is building: timers and the peers' event loops alone add a few ms on a
// fast link. Half the RTT, the bound before, let the cap double once more past the pipe: at 20
// Mbit/s 25 ms each way a new transfer's first keystroke echoes took 130 ms.
const QUEUE_SIGNAL_MS = 10;
const INFLATED_ROUNDS = 3; // loaded round trips at twice the least RTT before taking the new one

interface Queued {
  frame: Uint8Array;
  onSent?: () => void;
  /** For a DATA frame sent in pieces: where its unsent payload starts (HEADER_SIZE if whole). */
  at?: number;
}

interface StreamQueue {
  frames: Queued[];
  bytes: number;
  deficit: number;
}

interface RateSample {
  /** The busy round it was taken in, and when. */
  round: number;
  at: number;
  rate: number;
  /** Taken while there was less to send than the cap allowed: a lower bound only. */
  appLimited: boolean;
  /** Its probe went out with nothing held back by the cap: not a measurement under load. */
  unloaded: boolean;
}

interface Probe {
  counter: number;
  sentAt: number;
  ackedAtSend: number;
  ackTimeAtSend: number;
  appLimited: boolean;
}

/** Schedules frames onto one link; see the module comment. */
export class LinkScheduler {
  #link: FrameLink;
  #urgent: Queued[] = [];
  #streams = new Map<number, StreamQueue>();
  #order: number[] = []; // streams with queued frames, in round-robin order
  #sent = 0; // bytes handed to the link
  #acked = 0; // bytes the peer has confirmed
  #lastAckAt = performance.now();
  #probes: Probe[] = [];
  #lastProbeCounter = 0;
  #cap = INITIAL_CAP;
  /** The largest DATA payload handed over at once (see the module comment), set with the cap. */
  #piece = MAX_DATA;
  // RTT samples of the last ten seconds, only those no later sample undercuts: ascending, so
  // the least is the first (a windowed minimum in O(1); a fast link takes ~400 a second).
  #rtts: { at: number; rtt: number }[] = [];
  #rates: RateSample[] = [];
  #bestRate = 0; // the best sample in #rates that is not app-limited
  #loadedSamples = 0; // samples in #rates taken under load (not `unloaded`)
  #busyRound = 0; // rounds that delivered at least MIN_CAP
  #roundEnd = 0; // the round ends when bytes up to here are acknowledged
  #roundStartAcked = 0; // bytes acknowledged when the round began
  #measured = false; // a rate sample taken under load is remembered
  #startup = true;
  #startupCap = 0; // the largest cap of this startup, which it never goes below
  #plateauRounds = 0;
  #roundLoaded = false; // the cap held data back during this round
  #bestStartupRate = 0;
  #lastRoundRate = 0; // the delivery rate when the last round ended
  #growthRounds = 0; // loaded rounds in a row that each brought a fifth more rate
  #roundMinRtt = Infinity; // the least RTT sampled during this round
  #roundSamples = 0; // RTT samples taken during this round
  #inflatedRounds = 0; // loaded rounds in a row whose least RTT was twice the path's
  #capLimited = false;
  #pumping = false;

  constructor(link: FrameLink) {
    this.#link = link;
  }

  /**
   * Sends any frame where it belongs: a stream's DATA and EOF behind that stream's earlier
   * ones; everything else ahead of all data (a RESET also drops what its stream had queued).
   */
  send(frame: Uint8Array, onSent?: () => void): void {
    const type = frame[0];
    const id = frame.length >= HEADER_SIZE
      ? new DataView(frame.buffer, frame.byteOffset, HEADER_SIZE).getUint32(1)
      : 0;
    if (type === FrameType.DATA || type === FrameType.EOF) return this.stream(id, frame, onSent);
    if (type === FrameType.RESET) this.drop(id);
    this.urgent(frame, onSent);
  }

  /** Sends a frame ahead of every stream's data: control, credit, pongs, resets, opens. */
  urgent(frame: Uint8Array, onSent?: () => void): void {
    if (this.#idle()) {
      // Nothing is waiting: straight to the link, which copies the frame as it frames it.
      this.#hand({ frame, onSent });
      this.#maybeProbe(true);
      return;
    }
    this.#urgent.push({ frame: frame.slice(), onSent });
    this.#pump();
  }

  /** Queues a stream's DATA or EOF frame behind that stream's earlier ones. */
  stream(id: number, frame: Uint8Array, onSent?: () => void): void {
    const whole = frame[0] !== FrameType.DATA || frame.length - HEADER_SIZE <= this.#piece;
    if (this.#idle() && this.inflight < this.#cap && whole) {
      // Nothing waits and the cap allows it: no copy here, the link copies as it frames it.
      this.#hand({ frame, onSent });
      this.#maybeProbe(false);
      this.#maybeProbe(true);
      return;
    }
    let q = this.#streams.get(id);
    if (!q) this.#streams.set(id, q = { frames: [], bytes: 0, deficit: 0 });
    if (q.frames.length === 0) this.#order.push(id);
    q.frames.push({ frame: frame.slice(), onSent }); // callers reuse their buffers (FrameLink)
    q.bytes += frame.length;
    this.#pump();
  }

  /** True when nothing is queued here, so a frame may go to the link at once. */
  #idle(): boolean {
    return !this.#pumping && this.#link.open && this.#urgent.length === 0 &&
      this.#order.length === 0;
  }

  /** Forgets a stream's queued frames (it was reset); their callbacks do not run. */
  drop(id: number): void {
    const q = this.#streams.get(id);
    if (!q) return;
    this.#streams.delete(id);
    const at = this.#order.indexOf(id);
    if (at >= 0) this.#order.splice(at, 1);
  }

  /** Bytes of a stream waiting here. */
  queued(id: number): number {
    return this.#streams.get(id)?.bytes ?? 0;
  }

  /**
   * Takes a PONG's nonce; returns true if it answered one of our probes (then it says nothing
   * else: keepalive needs only that something arrived).
   */
  pong(nonce: Uint8Array): boolean {
    if (nonce.length !== 8 || nonce[0] !== PROBE_TAG[0] || nonce[1] !== PROBE_TAG[1]) return false;
    const counter = readCounter(nonce);
    const i = this.#probes.findIndex((p) => p.counter === counter);
    if (i < 0) return true; // an answer to a probe we gave up on
    const probe = this.#probes[i];
    this.#probes.splice(0, i + 1); // answers come in order; earlier ones were lost with nothing
    this.#onAck(probe);
    this.#pump();
    return true;
  }

  /** Bytes handed to the link and not yet confirmed by the peer. */
  get inflight(): number {
    return this.#sent - this.#acked;
  }

  /** The current cap on bytes in flight. */
  get cap(): number {
    return this.#cap;
  }

  /** The path's round-trip time as measured (ms), or null before the first probe returned. */
  get rttMs(): number | null {
    return this.#rtts.length === 0 ? null : this.#rtts[0].rtt;
  }

  /** The best recent delivery rate (bytes per second), or 0 while it is not known. */
  get rate(): number {
    return this.#bestRate;
  }

  #onAck(probe: Probe): void {
    const now = performance.now();
    const newly = probe.counter - this.#acked;
    if (newly < 0) return;
    this.#acked = probe.counter;
    this.#addRtt(now, now - probe.sentAt);
    this.#roundMinRtt = Math.min(this.#roundMinRtt, now - probe.sentAt);
    // The startup's queue signal as soon as two samples of this round show it, not at the end
    // of the round: by then the doubled cap had put another half a pipe into the queue.
    if (
      this.#startup && this.#roundLoaded && ++this.#roundSamples >= 2 &&
      this.#queueBuilt(this.#roundMinRtt)
    ) this.#startup = false;
    const interval = now - probe.ackTimeAtSend;
    if (interval > 0) {
      const rate = ((this.#acked - probe.ackedAtSend) * 1000) / interval;
      // A sample taken while the sender had too little to send says little about the path,
      // unless it beats what is known.
      const appLimited = probe.appLimited && rate <= this.rate;
      this.#rates.push({
        round: this.#busyRound,
        at: now,
        rate,
        appLimited,
        unloaded: probe.appLimited,
      });
      if (!appLimited && rate > this.#bestRate) this.#bestRate = rate;
      if (!probe.appLimited) this.#loadedSamples++;
    }
    this.#lastAckAt = now;
    if (this.#acked >= this.#roundEnd) this.#nextRound();
    this.#updateCap();
  }

  /** Adds an RTT sample and forgets those older than the window (keeping the newest). */
  #addRtt(at: number, rtt: number): void {
    while (this.#rtts.length > 0 && this.#rtts[this.#rtts.length - 1].rtt >= rtt) this.#rtts.pop();
    this.#rtts.push({ at, rtt });
    while (this.#rtts.length > 1 && at - this.#rtts[0].at > RTT_WINDOW_MS) this.#rtts.shift();
  }

  #nextRound(): void {
    const loaded = this.#roundLoaded;
    if (loaded || this.#acked - this.#roundStartAcked >= MIN_CAP) this.#busyRound++;
    this.#roundEnd = this.#sent;
    this.#roundStartAcked = this.#acked;
    const now = performance.now();
    let expired = false;
    while (
      this.#rates.length > 0 &&
      (this.#rates[0].round < this.#busyRound - RATE_WINDOW_ROUNDS ||
        now - this.#rates[0].at > RATE_MEMORY_MS)
    ) {
      if (!this.#rates.shift()!.unloaded) this.#loadedSamples--;
      expired = true;
    }
    if (expired) {
      this.#bestRate = 0;
      for (const r of this.#rates) {
        if (!r.appLimited && r.rate > this.#bestRate) this.#bestRate = r.rate;
      }
    }
    const measured = this.#loadedSamples > 0;
    // The rate measured under load is forgotten: the next transfer starts over, doubling from
    // the initial cap, as on a new link.
    if (this.#measured && !measured) this.#restartup(0);
    this.#measured = measured;
    this.#roundLoaded = false;
    const roundRtt = this.#roundMinRtt;
    this.#roundMinRtt = Infinity;
    this.#roundSamples = 0;
    const rate = this.rate;
    const previousRate = this.#lastRoundRate;
    this.#lastRoundRate = rate;
    // Held back by the cap for round trips in a row that all took twice the path's least RTT
    // (2.75 times in startup): the cap's own excess queues at most a quarter of a round trip
    // (one in startup), so the path itself got longer (a new route, a queue filled by other
    // traffic). Its old RTT would keep shrinking the cap (what gets through per round trip,
    // times the old, shorter RTT) down to 16 KiB per round trip, for the ten seconds the old
    // RTT is remembered: take the new RTT and find the rate again.
    const least = this.rttMs ?? Infinity;
    const excess = (this.#startup ? STARTUP_GAIN : STEADY_GAIN) + 0.75;
    // Only once the cap has shrunk to almost nothing: above that, a delivery rate read high by a
    // noisy round would look like a longer path, and taking its RTT would feed the queue.
    const inflated = loaded && this.#cap <= 2 * MIN_CAP &&
      roundRtt >= excess * least;
    this.#inflatedRounds = inflated ? this.#inflatedRounds + 1 : 0;
    if (this.#inflatedRounds >= INFLATED_ROUNDS) {
      this.#rtts = [{ at: now, rtt: roundRtt }];
      this.#inflatedRounds = 0;
      return this.#restartup(rate);
    }
    if (this.#startup && loaded && this.#queueBuilt(roundRtt)) {
      // A queue built up during startup: the pipe is full (HyStart's signal). Waiting for three
      // round trips without more rate instead kept the doubled queue long enough that the first
      // keystrokes of a transfer took three times the RTT.
      this.#startup = false;
    } else if (this.#startup && loaded) {
      // Leave startup once three round trips in a row brought less than a quarter more rate.
      if (rate >= this.#bestStartupRate * 1.25) {
        this.#bestStartupRate = rate;
        this.#plateauRounds = 0;
      } else if (++this.#plateauRounds >= 3) this.#startup = false;
    } else if (loaded) {
      // Held back by the cap, and each round trip still brings a fifth more: the rate was
      // learnt from light traffic (an idle ssh session before its transfer), not from the
      // path. Find the path's rate by doubling again instead of growing a quarter per round.
      this.#growthRounds = rate >= previousRate * 1.2 ? this.#growthRounds + 1 : 0;
      if (this.#growthRounds >= 2) this.#restartup(rate);
    } else this.#growthRounds = 0;
  }

  /** Whether a round trip this long says a queue is building (HyStart++'s threshold). */
  #queueBuilt(rtt: number): boolean {
    const least = this.rttMs ?? Infinity;
    return rtt >= least + Math.max(least / 8, QUEUE_SIGNAL_MS);
  }

  /** Back to doubling each round trip, from what is known now. */
  #restartup(rate: number): void {
    this.#startup = true;
    this.#startupCap = 0;
    this.#bestStartupRate = rate;
    this.#plateauRounds = 0;
    this.#growthRounds = 0;
  }

  #updateCap(): void {
    const rtt = this.rttMs;
    const rate = this.rate;
    // Nothing measured under load (an idle link): start over from the initial cap.
    if (rtt === null || rate === 0) {
      this.#cap = INITIAL_CAP;
      // Only a link measured to be slow is worth the extra frames: before a delivery rate is
      // known (and while a sender is held back by its peer rather than the link) whole frames go.
      this.#piece = MAX_DATA;
      return;
    }
    const lag = ACK_JITTER_MS + BUSY_LAG_MS * Math.min(1, rate / BUSY_RATE);
    const bdp = (rate * (rtt + lag)) / 1000;
    const gain = this.#startup ? STARTUP_GAIN : STEADY_GAIN;
    // A rate known only from traffic that never filled the cap (keepalives, keystrokes) says
    // nothing of the path's capacity: the cap does not fall below the initial one for it.
    const floor = this.#loadedSamples > 0 ? MIN_CAP : INITIAL_CAP;
    this.#cap = Math.min(MAX_CAP, Math.max(floor, gain * bdp));
    // In startup the cap only grows: a transfer's first probes each confirm a quarter of the
    // first cap after a whole round trip, and read as rates that would shrink it (to 46 KiB from
    // the initial 64 KiB on a 200 KB path) just as the transfer began.
    if (this.#startup) this.#cap = this.#startupCap = Math.max(this.#cap, this.#startupCap);
    this.#piece = Math.min(MAX_DATA, Math.max(MIN_PIECE, Math.floor(this.#cap / PIECES_PER_CAP)));
  }

  #pump(): void {
    if (this.#pumping || !this.#link.open) return;
    this.#pumping = true;
    try {
      for (const u of this.#urgent.splice(0)) this.#hand(u);
      this.#capLimited = false;
      while (this.#order.length > 0) {
        // Like a congestion window: send while below the cap (the last frame may overshoot it).
        if (this.inflight >= this.#cap) {
          this.#capLimited = true;
          this.#roundLoaded = true;
          break;
        }
        this.#hand(this.#next());
        this.#maybeProbe(false);
      }
      this.#maybeProbe(true);
    } finally {
      this.#pumping = false;
    }
  }

  /** Bytes the head of `q` puts on the link when it is handed over next. */
  #headSize(q: StreamQueue): number {
    const head = q.frames[0];
    const at = head.at ?? HEADER_SIZE;
    if (head.frame[0] !== FrameType.DATA) return head.frame.length;
    return HEADER_SIZE + Math.min(head.frame.length - at, this.#piece);
  }

  /** Chooses the next stream by the rules in the module comment; returns its id. */
  #choose(): number {
    // A light stream first; among busy ones, deficit round robin.
    for (const id of this.#order) {
      if (this.#streams.get(id)!.bytes <= LIGHT) return id;
    }
    for (let spins = 0; spins <= this.#order.length; spins++) {
      const id = this.#order[0];
      const q = this.#streams.get(id)!;
      const size = this.#headSize(q);
      if (q.deficit >= size) return id;
      q.deficit = Math.min(q.deficit + QUANTUM, 2 * QUANTUM);
      if (q.deficit >= size) return id;
      this.#order.push(this.#order.shift()!);
    }
    return this.#order[0];
  }

  /** Takes the next frame, or the next piece of a large DATA frame, off its stream's queue. */
  #next(): Queued {
    const id = this.#choose();
    const q = this.#streams.get(id)!;
    const head = q.frames[0];
    const at = head.at ?? HEADER_SIZE;
    let item: Queued;
    if (head.frame[0] === FrameType.DATA && head.frame.length - at > this.#piece) {
      const size = this.#piece;
      const piece = new Uint8Array(HEADER_SIZE + size);
      piece.set(head.frame.subarray(0, HEADER_SIZE));
      piece.set(head.frame.subarray(at, at + size), HEADER_SIZE);
      head.at = at + size;
      item = { frame: piece }; // the frame's onSent waits for its last piece
      q.bytes -= size;
    } else {
      q.frames.shift();
      item = at === HEADER_SIZE ? head : { frame: cutHead(head.frame, at), onSent: head.onSent };
      q.bytes -= item.frame.length;
    }
    q.deficit = Math.max(0, q.deficit - item.frame.length);
    const order = this.#order.indexOf(id);
    if (q.frames.length === 0) {
      this.#order.splice(order, 1);
      q.deficit = 0;
    } else if (q.bytes <= LIGHT || q.deficit < this.#headSize(q)) {
      // Its turn is over: to the back of the line.
      this.#order.splice(order, 1);
      this.#order.push(id);
    }
    return item;
  }

  #hand(item: Queued): void {
    // Pings and pongs are not counted: otherwise each side's answer to a probe would be new
    // data for the other to probe, and the two would ping-pong forever.
    const type = item.frame[0];
    if (type === FrameType.PING || type === FrameType.PONG) {
      return this.#link.send(item.frame, item.onSent);
    }
    // Bytes on an empty link after a pause: their delivery rate is timed from now, not from the
    // last acknowledgement before the pause (that made the first sample of a transfer after
    // seconds of quiet a few KB/s, and the cap fell to its minimum as the transfer began).
    if (this.#sent === this.#acked) this.#lastAckAt = performance.now();
    this.#sent += item.frame.length;
    this.#link.send(item.frame, item.onSent);
  }

  /**
   * Sends a probe once a quarter of the cap went out since the last, or, when the pump stops
   * (`idle`), if anything handed over is still unconfirmed; without that last probe the final
   * bytes of a burst would never be acknowledged and the cap would hold the queue forever.
   */
  #maybeProbe(idle: boolean): void {
    const since = this.#sent - this.#lastProbeCounter;
    if (since <= 0 || this.#probes.length >= MAX_PROBES) return;
    if (!idle && since < Math.max(MIN_CAP / 2, this.#cap / 4)) return;
    const nonce = new Uint8Array(8);
    nonce.set(PROBE_TAG);
    writeCounter(nonce, this.#sent);
    this.#probes.push({
      counter: this.#sent,
      sentAt: performance.now(),
      ackedAtSend: this.#acked,
      ackTimeAtSend: this.#lastAckAt,
      appLimited: !this.#capLimited && idle,
    });
    this.#lastProbeCounter = this.#sent;
    this.#link.send(encodePing(FrameType.PING, nonce));
  }
}

/** The rest of a DATA frame from payload offset `at`, under its own header. */
function cutHead(frame: Uint8Array, at: number): Uint8Array {
  const rest = new Uint8Array(HEADER_SIZE + frame.length - at);
  rest.set(frame.subarray(0, HEADER_SIZE));
  rest.set(frame.subarray(at), HEADER_SIZE);
  return rest;
}

function writeCounter(nonce: Uint8Array, n: number): void {
  const view = new DataView(nonce.buffer, nonce.byteOffset, 8);
  view.setUint16(2, Math.floor(n / 2 ** 32)); // 48 bits: 256 TiB per link
  view.setUint32(4, n >>> 0);
}

function readCounter(nonce: Uint8Array): number {
  const view = new DataView(nonce.buffer, nonce.byteOffset, 8);
  return view.getUint16(2) * 2 ** 32 + view.getUint32(4);
}
