/**
 * The emulator: one link between a "device side" and a "relay side", each direction its own
 * bottleneck (link.ts), and TCP mappings across it. A mapping listens on 127.0.0.1 and connects
 * every accepted connection to its target; `toRelay` mappings are dialled from the device side
 * (the daemon's link to the relay, `ssh -R` to a gateway), `toDevice` mappings from the relay
 * side (direct connections to servers on the device). Every mapping's bytes cross the same two
 * bottlenecks, driven by one scheduler tick on a precise clock (clock.ts).
 */
import { Clock } from "./clock.ts";
import { Link, type LinkParams, type LinkStats } from "./link.ts";
import { Pump } from "./pump.ts";

/** Which side dials through a mapping. */
export type Side = "toRelay" | "toDevice";

/** Settings of both directions: `up` is device to relay, `down` relay to device. */
export interface LinkSettings {
  up: LinkParams;
  down: LinkParams;
}

/** Counters of both directions and of connections. */
export interface EmulatorStats {
  up: LinkStats & { queue: number };
  down: LinkStats & { queue: number };
  connections: number;
}

// The most one direction of one connection may hold in the emulator: TCP's receive window.
// Linux lets it grow to several MiB; it must not be what limits a flow, so it is at least
// twice the bandwidth-delay product.
const MIN_WINDOW = 4 * 1024 * 1024;
const MIN_TICK_MS = 0.5; // ticks at most this often: at 1 Gbit/s that is still 17 packets each

/** The link and its mappings; `close()` ends everything. */
export class Emulator {
  readonly up: Link;
  readonly down: Link;
  #clock: Clock;
  #listeners = new Set<Deno.Listener>();
  #conns = new Set<Connection>();
  #lastTick = 0;

  constructor(settings: LinkSettings) {
    this.up = new Link(settings.up);
    this.down = new Link(settings.down);
    this.#clock = new Clock(() => this.#tick());
  }

  /** Changes the link's settings; bytes already on the wire keep their arrival times. */
  configure(settings: LinkSettings): void {
    this.#tick(); // account what was sent under the old settings first
    this.up.params = { ...settings.up };
    this.down.params = { ...settings.down };
    this.#schedule();
  }

  /** Listens on 127.0.0.1 (port 0: any free one) for a mapping to `target`; returns the port. */
  map(side: Side, target: Deno.ConnectOptions, port = 0): number {
    const listener = Deno.listen({ hostname: "127.0.0.1", port });
    this.#listeners.add(listener);
    (async () => {
      for await (const conn of listener) {
        const c = new Connection(this, side, conn, target);
        this.#conns.add(c);
        c.run().finally(() => this.#conns.delete(c));
      }
    })().catch(() => {}); // the listener was closed
    return (listener.addr as Deno.NetAddr).port;
  }

  /** The receive window of one direction of a connection: see MIN_WINDOW. */
  window(link: Link): number {
    const bdp = (link.params.rateBps / 8) * ((this.up.params.delayMs + this.down.params.delayMs) /
      1000);
    return Math.max(MIN_WINDOW, 2 * bdp);
  }

  /** Current time in ms on the `performance.now()` scale. */
  now(): number {
    return performance.now();
  }

  /** Asks for a tick when the next event on either link is due. */
  changed(): void {
    this.#clock.wakeAt(Math.max(this.#nextEvent(), this.#lastTick + MIN_TICK_MS));
  }

  #nextEvent(): number {
    return Math.min(this.up.nextEvent(), this.down.nextEvent());
  }

  #tick(): void {
    const now = this.now();
    this.#lastTick = now;
    for (const link of [this.up, this.down]) {
      link.transmit(now);
      link.release(now);
    }
    for (const c of this.#conns) c.poke();
    this.#schedule();
  }

  #schedule(): void {
    const next = this.#nextEvent();
    this.#clock.reset(next === Infinity ? Infinity : Math.max(next, this.#lastTick + MIN_TICK_MS));
  }

  /** Counters of both directions. */
  stats(): EmulatorStats {
    return { up: this.up.stats(), down: this.down.stats(), connections: this.#conns.size };
  }

  /** Stops listening, resets every connection and stops the clock. */
  close(): void {
    for (const l of this.#listeners) l.close();
    for (const c of this.#conns) c.abort();
    this.#clock.close();
  }
}

/** One accepted connection and the one dialled for it, with a pump each way. */
class Connection {
  #emu: Emulator;
  #side: Side;
  #accepted: Deno.TcpConn;
  #target: Deno.ConnectOptions;
  #dialled: Deno.TcpConn | null = null;
  #pumps: Pump[] = [];

  constructor(emu: Emulator, side: Side, accepted: Deno.TcpConn, target: Deno.ConnectOptions) {
    this.#emu = emu;
    this.#side = side;
    this.#accepted = accepted;
    this.#target = target;
  }

  poke(): void {
    for (const p of this.#pumps) p.poke();
  }

  /** Dials the target, then pumps both ways until both have ended or one fails. */
  async run(): Promise<void> {
    try {
      this.#dialled = await Deno.connect(this.#target);
      this.#accepted.setNoDelay(true);
      this.#dialled.setNoDelay(true);
      const emu = this.#emu;
      // Bytes from the dialling side go the way the mapping points: towards the target.
      const [there, back] = this.#side === "toRelay" ? [emu.up, emu.down] : [emu.down, emu.up];
      const out = new Pump(there, this.#accepted, this.#dialled, emu, emu.window(there));
      const ret = new Pump(back, this.#dialled, this.#accepted, emu, emu.window(back));
      this.#pumps = [out, ret];
      // TCP's handshake: the dialler may send after one round trip (SYN, SYN-ACK), the target
      // from when the SYN reached it, one way in.
      const rtt = there.params.delayMs + back.params.delayMs;
      const after = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
      await Promise.all([
        out.run(after(rtt)),
        ret.run(after(there.params.delayMs)),
        out.done,
        ret.done,
      ]);
    } catch {
      // a reset or a refused dial: the other side sees its connection closed, without delay
    } finally {
      this.abort();
    }
  }

  /** Closes both sockets and takes the pumps' bytes off the links. */
  abort(): void {
    for (const p of this.#pumps) {
      this.#emu.up.forget(p.flow);
      this.#emu.down.forget(p.flow);
    }
    for (const c of [this.#accepted, this.#dialled]) {
      try {
        c?.close();
      } catch {
        // already closed
      }
    }
  }
}
