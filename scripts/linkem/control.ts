/**
 * Starting and steering the link emulator (scripts/linkem.ts) from tests and the bench: it runs
 * as its own process, so its scheduler never waits for the measuring process and its CPU is
 * its own. `startLinkem` resolves once it listens; disposing it stops it.
 */
import type { EmulatorStats, LinkSettings, Side } from "./emulator.ts";

const SCRIPT = new URL("../linkem.ts", import.meta.url).pathname;
const START_TIMEOUT_MS = 30_000; // a cold Deno start compiles the emulator first
const REPLY_TIMEOUT_MS = 10_000; // answers are immediate; this only catches a dead emulator
const STOP_TIMEOUT_MS = 5_000; // then SIGKILL

/** A link as people describe it; the same both ways unless `up`/`down` say otherwise. */
export interface LinkOptions {
  /** Bits per second, e.g. 20e6. */
  rate: number;
  /** One-way delay in ms. */
  delayMs: number;
  /** Queue limit in packets (default 100). */
  queue?: number;
  /** Packet loss probability (default 0). */
  loss?: number;
  /** Overrides for device-to-relay and relay-to-device. */
  up?: { rate?: number; delayMs?: number };
  down?: { rate?: number; delayMs?: number };
}

/** The emulator's settings for `o`. */
export function linkSettings(o: LinkOptions): LinkSettings {
  const dir = (d?: { rate?: number; delayMs?: number }) => ({
    rateBps: d?.rate ?? o.rate,
    delayMs: d?.delayMs ?? o.delayMs,
    queuePackets: o.queue ?? 100,
    loss: o.loss ?? 0,
  });
  return { up: dir(o.up), down: dir(o.down) };
}

/** "20M", "1.5G", "64k" or a plain number of bits per second; NaN if it is none of these. */
export function parseRate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([kMG]?)$/.exec(text.trim());
  if (!m) return NaN;
  return Number(m[1]) * ({ "": 1, k: 1e3, M: 1e6, G: 1e9 }[m[2]] ?? NaN);
}

/** "HOST:PORT" or a port on 127.0.0.1, as Deno.connect takes it. */
export function parseTarget(target: string | number): Deno.ConnectOptions {
  if (typeof target === "number") return { hostname: "127.0.0.1", port: target };
  const colon = target.lastIndexOf(":");
  const port = Number(target.slice(colon + 1));
  if (colon < 1 || !(port > 0 && port < 65536)) throw new Error(`not HOST:PORT: ${target}`);
  return { hostname: target.slice(0, colon).replace(/^\[(.*)\]$/, "$1"), port };
}

/** A running emulator. */
export interface Linkem extends AsyncDisposable {
  pid: number;
  /** Listening port of each mapping, by name. */
  ports: Record<string, number>;
  /** Adds a mapping; resolves to its port (also in `ports`). */
  map(side: Side, name: string, target: string | number): Promise<number>;
  /** Changes the link; bytes already on their way keep their arrival times. */
  set(link: LinkOptions): Promise<void>;
  stats(): Promise<EmulatorStats>;
  /** What the emulator printed on stderr. */
  stderr(): string;
}

/** Starts the emulator with `link` and the given mappings (name to HOST:PORT or port). */
export async function startLinkem(
  link: LinkOptions,
  maps: { toRelay?: Record<string, string | number>; toDevice?: Record<string, string | number> } =
    {},
): Promise<Linkem> {
  const s = linkSettings(link);
  const args = [
    ...["--up-rate", String(s.up.rateBps), "--down-rate", String(s.down.rateBps)],
    ...["--up-delay", String(s.up.delayMs), "--down-delay", String(s.down.delayMs)],
    ...["--queue", String(s.up.queuePackets), "--loss", String(s.up.loss)],
  ];
  for (const [flag, m] of [["--to-relay", maps.toRelay], ["--to-device", maps.toDevice]] as const) {
    for (const [name, t] of Object.entries(m ?? {})) {
      args.push(flag, `${name}=${typeof t === "number" ? `127.0.0.1:${t}` : t}`);
    }
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--no-prompt", "--allow-net", "--allow-read", SCRIPT, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = new LineReader(child.stdout);
  let stderr = "";
  const errDone = child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({ write: (t) => void (stderr += t) }),
  ).catch(() => {});
  const writer = child.stdin.getWriter();
  const stop = async () => {
    await writer.close().catch(() => {});
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // exited
      }
    }, STOP_TIMEOUT_MS);
    await child.status;
    clearTimeout(timer);
    await lines.cancel();
    await errDone;
  };
  let ports: Record<string, number>;
  try {
    ports = (await lines.next(START_TIMEOUT_MS, () => stderr) as { ports: Record<string, number> })
      .ports;
  } catch (err) {
    await stop();
    throw err;
  }
  // Requests are answered in order; one at a time keeps replies matched to their requests.
  let queue = Promise.resolve<unknown>(null);
  const ask = (msg: unknown) => {
    const reply = queue.then(async () => {
      await writer.write(new TextEncoder().encode(JSON.stringify(msg) + "\n"));
      const r = await lines.next(REPLY_TIMEOUT_MS, () => stderr) as { error?: string };
      if (r.error) throw new Error(`linkem: ${r.error}`);
      return r;
    });
    queue = reply.catch(() => null);
    return reply;
  };
  return {
    pid: child.pid,
    ports,
    async map(side, name, target) {
      const t = typeof target === "number" ? `127.0.0.1:${target}` : target;
      const { port } = await ask({ op: "map", side, name, target: t }) as { port: number };
      ports[name] = port;
      return port;
    },
    async set(l) {
      await ask({ op: "set", ...linkSettings(l) });
    },
    async stats() {
      return await ask({ op: "stats" }) as EmulatorStats;
    },
    stderr: () => stderr,
    [Symbol.asyncDispose]: stop,
  };
}

/** JSON lines from a stream, one at a time. */
class LineReader {
  #reader: ReadableStreamDefaultReader<string>;
  #buffered = "";

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }

  async next(timeoutMs: number, why: () => string): Promise<unknown> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`linkem did not answer within ${timeoutMs} ms: ${why()}`)),
        timeoutMs,
      );
    });
    try {
      while (!this.#buffered.includes("\n")) {
        const { value, done } = await Promise.race([this.#reader.read(), late]);
        if (done) throw new Error(`linkem exited: ${why()}`);
        this.#buffered += value;
      }
    } finally {
      clearTimeout(timer);
    }
    const nl = this.#buffered.indexOf("\n");
    const line = this.#buffered.slice(0, nl);
    this.#buffered = this.#buffered.slice(nl + 1);
    return JSON.parse(line);
  }

  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}
