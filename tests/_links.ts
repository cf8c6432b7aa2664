/**
 * Fixtures for measuring od across an emulated link (scripts/linkem.ts): a relay, and a daemon
 * whose one link to the relay crosses the emulator; on the device side an echo server, an
 * endless bulk source, a fixed-size source and a sink. The same link carries direct TCP connections
 * from the relay side to those servers, the baseline od is compared with.
 *
 * Measurements: keystroke-sized (1-byte) echo round trips while a bulk download runs, through
 * od (two `od pipe` processes, so two tunnels on the device's one link) or direct (two TCP
 * connections); and a download's duration with a byte-for-byte check.
 */
import { type Linkem, type LinkOptions, startLinkem } from "../scripts/linkem/control.ts";
import { Proc, tempDir } from "./_harness.ts";
import {
  addAccount,
  clientEnv,
  type Download,
  echoServer,
  type LocalServer,
  readPattern,
  type Relay,
  sourceServer,
  startDaemon,
  startRelay,
} from "./_fleet.ts";

/** The device id the daemon enrols as. */
export const DEVICE = "edge-link";
const ENDLESS = 2 ** 50; // bytes: the bulk source runs until its reader goes away
const MiB = 1024 * 1024;

/** A 1-byte echo: one round trip per call. */
export interface Echo extends AsyncDisposable {
  /** Sends one byte and waits for it to come back; milliseconds. */
  roundTrip(): Promise<number>;
}

/** A running bulk download whose bytes are counted and dropped. */
export interface Bulk extends AsyncDisposable {
  received(): number;
}

/** Everything on both sides of the emulated link; disposing stops it all. */
export interface LinkFleet extends AsyncDisposable {
  emu: Linkem;
  relay: Relay;
  daemon: Proc;
  /** Environment for od clients of the relay. */
  env: Record<string, string>;
  /** Device-side servers: `echo`, endless `bulk`, `blob` of `blobBytes` bytes and `sink`; the
   * emulator maps each (and every extra service) under the same name in `emu.ports`. */
  servers: {
    echo: LocalServer;
    bulk: LocalServer;
    blob: LocalServer & { data: Uint8Array };
    sink: SinkServer;
  };
  /** The link as started. */
  link: LinkOptions;
  /** A temporary directory for this fleet's files, removed on dispose. */
  dir: string;
}

/** What else a link fleet carries besides the echo and the sources. */
export interface LinkFleetOptions {
  /** Size of the `blob` service's download (default 16 MiB). */
  blobBytes?: number;
  /** More device-side services by name and port, mapped across the link like the others. */
  services?: Record<string, number>;
  /** Relay-side servers by name and port, reachable from the device side across the link. */
  toRelay?: Record<string, number>;
  /** Extra `od daemon` arguments, e.g. `--host-key`. */
  daemonArgs?: string[];
}

/**
 * Starts the relay, the emulator with `link`, the device-side servers and a daemon exposing
 * them as services `echo`, `bulk`, `blob` and `sink` (and `options.services`) through the emulated link.
 */
export async function startLinkFleet(
  link: LinkOptions,
  options: LinkFleetOptions = {},
): Promise<LinkFleet> {
  const stack = new AsyncDisposableStack();
  try {
    const dir = stack.use(await tempDir("od-links-"));
    const relay = stack.use(await startRelay(`${dir}/data`));
    const keys = await addAccount(relay.dataDir, "links");
    const servers = {
      echo: stack.use(echoServer()),
      bulk: stack.use(sourceServer(ENDLESS)),
      blob: stack.use(sourceServer(options.blobBytes ?? 16 * MiB)),
      sink: stack.use(sinkServer()),
    };
    const services = {
      echo: servers.echo.port,
      bulk: servers.bulk.port,
      blob: servers.blob.port,
      sink: servers.sink.port,
      ...options.services,
    };
    const emu = stack.use(
      await startLinkem(link, {
        toRelay: { ...options.toRelay, relay: relay.port },
        toDevice: services,
      }),
    );
    const viaLink = { ...relay, url: `http://127.0.0.1:${emu.ports.relay}` };
    const daemon = stack.use(
      await startDaemon(viaLink, {
        key: keys.deviceKey,
        id: DEVICE,
        stateDir: `${dir}/state`,
        services,
        extraArgs: options.daemonArgs,
      }),
    );
    const env = clientEnv(relay, keys.clientKey, `${dir}/config`);
    const moved = stack.move();
    return {
      emu,
      relay,
      daemon,
      env,
      servers,
      link,
      dir,
      [Symbol.asyncDispose]: () => moved.disposeAsync(),
    };
  } catch (err) {
    await stack.disposeAsync();
    throw err;
  }
}

/** A device-side server that drops what it reads, counting bytes per connection. */
export interface SinkServer extends AsyncDisposable {
  port: number;
  /** Bytes read so far on each connection accepted, in order of acceptance. */
  counts(): number[];
}

/** Starts a SinkServer on 127.0.0.1. */
export function sinkServer(): SinkServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const counts: number[] = [];
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  const accepting = (async () => {
    for await (const conn of listener) {
      const i = counts.push(0) - 1;
      conns.add(conn);
      const task = (async () => {
        const buf = new Uint8Array(256 * 1024);
        for (let n; (n = await conn.read(buf)) !== null;) counts[i] += n;
      })().catch(() => {}).finally(() => {
        conns.delete(conn);
        tasks.delete(task);
        try {
          conn.close();
        } catch {
          // closed by dispose
        }
      });
      tasks.add(task);
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    counts: () => [...counts],
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // closed
        }
      }
      await accepting;
      await Promise.all(tasks);
    },
  };
}

/** A 1-byte echo over one TCP connection to `port` (through the emulator: direct). */
export async function tcpEcho(port: number): Promise<Echo> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  const b = new Uint8Array(1);
  return {
    async roundTrip() {
      const started = performance.now();
      await conn.write(b);
      if ((await conn.read(b)) === null) throw new Error(`the echo on port ${port} closed`);
      return performance.now() - started;
    },
    [Symbol.asyncDispose]: () => Promise.resolve(conn.close()),
  };
}

/** A download of everything `port` sends, counted and dropped, until disposed. */
export async function tcpBulk(port: number): Promise<Bulk> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let received = 0;
  const reading = (async () => {
    const buf = new Uint8Array(256 * 1024);
    for (let n; (n = await conn.read(buf)) !== null;) received += n;
  })().catch(() => {}); // closed by dispose
  return {
    received: () => received,
    async [Symbol.asyncDispose]() {
      conn.close();
      await reading;
    },
  };
}

/** A 1-byte echo through `od pipe DEVICE SERVICE` (one tunnel). */
export function odEcho(env: Record<string, string>, service = "echo"): Promise<Echo> {
  const proc = new Proc("od pipe echo", ["pipe", DEVICE, service], {
    env,
    stdin: "piped",
    stdout: "piped",
  });
  const writer = proc.child.stdin.getWriter();
  const reader = proc.child.stdout.getReader();
  const b = new Uint8Array(1);
  return Promise.resolve({
    async roundTrip() {
      const started = performance.now();
      await writer.write(b);
      const { value, done } = await reader.read();
      if (done) throw new Error(`od pipe ended: ${proc.stderr}`);
      if (value.length !== 1) throw new Error(`${value.length} bytes came back, not 1`);
      return performance.now() - started;
    },
    async [Symbol.asyncDispose]() {
      await writer.close().catch(() => {});
      reader.releaseLock();
      await proc[Symbol.asyncDispose]();
    },
  });
}

/** A download through `od pipe DEVICE SERVICE`, counted and dropped, until disposed. */
export function odBulk(
  env: Record<string, string>,
  service = "bulk",
): Promise<Bulk & { failure(): string | null }> {
  const proc = new Proc("od pipe bulk", ["pipe", DEVICE, service], { env, stdout: "piped" });
  let received = 0;
  let failure: string | null = null;
  proc.status.then(({ code }) => {
    if (code !== 0) failure = proc.stderr.trim() || `od pipe exited ${code}`;
  });
  const reading = (async () => {
    for await (const chunk of proc.child.stdout) received += chunk.length;
  })().catch(() => {});
  return Promise.resolve({
    received: () => received,
    failure: () => failure,
    async [Symbol.asyncDispose]() {
      await proc.stop();
      await reading;
    },
  });
}

/** How long to run and when the bulk transfer counts as under way. */
export interface EchoPlan {
  /** Round trips to collect at most… */
  samples: number;
  /** …or for this long, whichever ends first (at least 3 are taken). */
  maxMs: number;
  /** Bytes the bulk download must have delivered before the first measured round trip. */
  settleBytes: number;
  /** Give up waiting for the bulk download after this long. */
  settleTimeoutMs?: number;
}

/** Round trips measured on `echo` while `bulk` runs, after one unmeasured warm-up round trip. */
export async function echoUnderBulk(echo: Echo, bulk: Bulk, plan: EchoPlan): Promise<number[]> {
  await echo.roundTrip(); // opens the path (tunnel set-up, handshake): not a keystroke
  const deadline = Date.now() + (plan.settleTimeoutMs ?? 30_000);
  while (bulk.received() < plan.settleBytes) {
    if (Date.now() > deadline) {
      throw new Error(`the bulk download moved only ${bulk.received()} bytes`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const times: number[] = [];
  const end = performance.now() + plan.maxMs;
  while (times.length < 3 || (times.length < plan.samples && performance.now() < end)) {
    times.push(await echo.roundTrip());
  }
  if (bulk.received() <= plan.settleBytes) throw new Error("the bulk download stalled");
  return times;
}

/** Downloads the `blob` service through `od pipe`. */
export async function odDownload(fleet: LinkFleet): Promise<Download> {
  await using proc = new Proc("od pipe blob", ["pipe", DEVICE, "blob"], {
    env: fleet.env,
    stdout: "piped",
  });
  const got = await readPattern(proc.child.stdout, fleet.servers.blob.data);
  const { code, stderr } = await proc.output();
  if (code !== 0) throw new Error(`od pipe blob exited ${code}: ${stderr}`);
  return got;
}

/** Downloads the `blob` server over one TCP connection through the emulator. */
export async function directDownload(fleet: LinkFleet): Promise<Download> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: fleet.emu.ports.blob });
  try {
    return await readPattern(conn.readable, fleet.servers.blob.data);
  } finally {
    try {
      conn.close();
    } catch {
      // closed with its readable
    }
  }
}

/** The p-th percentile (0..100) of `values`, nearest-rank. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}
