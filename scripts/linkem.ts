/**
 * linkem: a user-space link emulator at the TCP level, for od's tests and `deno task bench
 * --only links`. This kernel has no sch_netem, so instead of shaping packets it relays TCP
 * connections through one emulated link with two bottlenecks, "up" (device to relay) and
 * "down" (relay to device), each with a rate, a one-way delay, a bounded queue and loss.
 *
 *   deno run --allow-net --allow-read scripts/linkem.ts --rate 20M --delay 25 --queue 100 \
 *     [--loss 0.001] [--up-rate R] [--down-rate R] [--up-delay MS] [--down-delay MS] \
 *     [--to-relay NAME=HOST:PORT]… [--to-device NAME=HOST:PORT]…
 *
 * `--to-relay` listens for connections made from the device side (the daemon's link to the
 * relay) and `--to-device` for connections made from the relay side (a direct connection to
 * a server on the device); both on 127.0.0.1, a free port each. Once listening it prints
 * `{"ports":{NAME:PORT,…}}` on stdout, then answers JSON lines on stdin, one line each:
 * `{"op":"set","up":{…},"down":{…}}` (LinkParams, emulator.ts) → `{"ok":true}`,
 * `{"op":"map","side":"toRelay"|"toDevice","name":N,"target":"HOST:PORT"}` → `{"port":P}`,
 * `{"op":"stats"}` → the counters. It exits when stdin closes or on SIGTERM/SIGINT.
 *
 * What it models, per direction: the rate on the wire with 52 bytes of TCP/IP headers per
 * packet of up to 1448 bytes; the one-way delay, accurate to about 0.1–0.3 ms on an idle machine
 * (a timer thread on a futex, see scripts/linkem/clock.ts); a queue of `--queue` packets before
 * the transmitter, served one packet per connection in round robin (per-flow fair queueing, as
 * fq_codel without CoDel does), full queues holding senders back by no longer reading their
 * sockets rather than by dropping; random loss per packet as TCP experiences it: the packet
 * crosses the wire twice and arrives one round trip (twice this direction's delay) late, and
 * every later byte of that connection waits behind it; a connection's first bytes wait for a
 * handshake (one round trip for the dialler, one way for the target).
 *
 * What it does not model:
 * - Congestion control. No sender shrinks its window after a loss or grows it in slow start:
 *   a sender runs at whatever the bottleneck and the receiver let through. Loss costs latency
 *   and a little capacity, never throughput collapse.
 * - ACKs and ACK clocking. ACKs take no capacity on the reverse direction and nothing is
 *   paced by them; a receiver's window is a flat 4 MiB (or twice the BDP, if larger) per
 *   direction of a connection held in the emulator, not its real advertised window.
 * - Where the bytes wait before the bottleneck. Every sender's socket buffers, and this
 *   process's receive buffers, are on loopback in front of the bottleneck: a sender that
 *   writes faster than the link fills them (Linux sizes them itself, up to MiBs) before it
 *   blocks. On a real link its send buffer would be the same, but its congestion window would
 *   also put bytes in the router's queue that here stay in those buffers. The emulated queue
 *   holds only what this process has read.
 * - A FIFO router. Connections do not wait behind each other's queued packets, only for their
 *   turn at the transmitter, so two connections on the link are isolated as well as a
 *   fair-queueing router isolates them; one connection carrying many streams (od's device link,
 *   ssh -R) queues them behind each other in its own queue.
 * - Packets. Bytes are counted in packets but crossed as a byte stream: segment boundaries,
 *   reordering, duplication, corruption, MTU and timeouts are not modelled; a lost FIN or a
 *   tail loss is repaired as fast as any other loss. Resets and refused connections cross at
 *   once, without delay.
 * - Precision beyond the clock's: with a 0.2 ms minimum between ticks, packets that would
 *   arrive within 0.25 ms of each other are released together (never early), and at 1 Gbit/s
 *   the queue limit holds to within about one tick's worth of packets.
 */
import { parseArgs } from "node:util";
import { Emulator, type LinkSettings, type Side } from "./linkem/emulator.ts";
import { parseRate, parseTarget } from "./linkem/control.ts";

const DEFAULT_QUEUE = 100; // packets, a common router buffer

function usage(message: string): never {
  console.error(`linkem: ${message}`);
  console.error(
    "usage: linkem.ts --rate BITS --delay MS [--queue PACKETS] [--loss P] " +
      "[--up-rate|--down-rate BITS] [--up-delay|--down-delay MS] " +
      "[--to-relay NAME=HOST:PORT]… [--to-device NAME=HOST:PORT]…",
  );
  Deno.exit(2);
}

function settingsFrom(args: string[]): { settings: LinkSettings; maps: [Side, string, string][] } {
  const { values } = parseArgs({
    args,
    options: {
      rate: { type: "string" },
      "up-rate": { type: "string" },
      "down-rate": { type: "string" },
      delay: { type: "string" },
      "up-delay": { type: "string" },
      "down-delay": { type: "string" },
      queue: { type: "string", default: String(DEFAULT_QUEUE) },
      loss: { type: "string", default: "0" },
      "to-relay": { type: "string", multiple: true, default: [] },
      "to-device": { type: "string", multiple: true, default: [] },
    },
  });
  const num = (v: string | undefined, what: string) => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n) || n < 0) usage(`${what} must be a number >= 0`);
    return n;
  };
  const rate = (v: string | undefined, what: string) => {
    const r = v === undefined ? NaN : parseRate(v);
    if (!(r > 0)) usage(`${what} must be a rate such as 20M or 1G (bit/s)`);
    return r;
  };
  const queuePackets = num(values.queue, "--queue");
  const loss = num(values.loss, "--loss");
  if (queuePackets < 1 || loss >= 1) usage("--queue must be >= 1 and --loss below 1");
  const dir = (d: "up" | "down") => ({
    rateBps: rate(values[`${d}-rate`] ?? values.rate, `--${d}-rate or --rate`),
    delayMs: num(values[`${d}-delay`] ?? values.delay, `--${d}-delay or --delay`),
    queuePackets,
    loss,
  });
  const maps: [Side, string, string][] = [];
  for (const [side, list] of [["toRelay", values["to-relay"]], ["toDevice", values["to-device"]]]) {
    for (const m of list as string[]) {
      const eq = m.indexOf("=");
      if (eq < 1) usage(`a mapping is NAME=HOST:PORT, not ${m}`);
      maps.push([side as Side, m.slice(0, eq), m.slice(eq + 1)]);
    }
  }
  return { settings: { up: dir("up"), down: dir("down") }, maps };
}

/** Answers one control line. */
function answer(emu: Emulator, line: string): unknown {
  const msg = JSON.parse(line);
  if (msg.op === "set") {
    emu.configure({ up: msg.up, down: msg.down });
    return { ok: true };
  }
  if (msg.op === "map") return { port: emu.map(msg.side, parseTarget(msg.target)) };
  if (msg.op === "stats") return emu.stats();
  throw new Error(`unknown op ${msg.op}`);
}

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = settingsFrom(Deno.args);
  } catch (err) {
    usage((err as Error).message);
  }
  const emu = new Emulator(parsed.settings);
  const ports: Record<string, number> = {};
  for (const [side, name, target] of parsed.maps) ports[name] = emu.map(side, parseTarget(target));
  console.log(JSON.stringify({ ports }));
  const stop = () => {
    emu.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  let buffered = "";
  for await (const text of lines) {
    buffered += text;
    let nl;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (!line) continue;
      let reply: unknown;
      try {
        reply = answer(emu, line);
      } catch (err) {
        reply = { error: (err as Error).message };
      }
      console.log(JSON.stringify(reply));
    }
  }
  stop();
}

if (import.meta.main) await main();
