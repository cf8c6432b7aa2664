/**
 * Fixtures for the mesh tests: a real PostgreSQL (tests/_postgres.ts), relays on it as
 * separate `od serve` processes with a shared mesh key, HAProxy running deploy/haproxy-mesh.cfg
 * in front of them with TLS from a test CA, and daemons connected through HAProxy.
 */
import { eventually, od, Proc } from "./_harness.ts";
import { makeTestCa, type Relay, type TestCa } from "./_fleet.ts";
import { type Postgres, startPostgres } from "./_postgres.ts";
import {
  decodeFrame,
  type Frame,
  FrameType,
  SUBPROTOCOL,
  WINDOWS_HEADER,
} from "../src/protocol/frame.ts";

const DEPLOY = new URL("../deploy/", import.meta.url).pathname;

/** Seconds between relay heartbeats in the tests: a dead relay's devices go offline in 3 s. */
export const HEARTBEAT_S = 1;

/** A relay of the mesh. */
export interface MeshRelay extends Relay {
  id: string;
}

/** PostgreSQL, the mesh key, and the relays started so far. */
export interface MeshStack extends AsyncDisposable {
  pg: Postgres;
  storeUrl: string;
  passwordFile: string;
  keyFile: string;
  ca: TestCa;
  dir: string;
  relays: MeshRelay[];
  /** Starts relay `id` on the store (with `keyFile` instead of the mesh key, if given). */
  startRelay(
    id: string,
    options?: { keyFile?: string; extraArgs?: string[]; listen?: string },
  ): Promise<MeshRelay>;
  /** Runs `od admin --store … ARGS`. */
  admin(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
}

async function secretFile(path: string, text: string): Promise<string> {
  await Deno.writeTextFile(path, `${text}\n`, { mode: 0o600 });
  return path;
}

function hex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

/** Starts PostgreSQL and writes the mesh key; relays are started with `startRelay`. */
export async function meshStack(dir: string): Promise<MeshStack> {
  const pg = await startPostgres();
  const passwordFile = await secretFile(`${dir}/pgpassword`, pg.password);
  const keyFile = await secretFile(`${dir}/mesh.key`, hex(32));
  const ca = await makeTestCa(dir);
  const relays: MeshRelay[] = [];
  const stack: MeshStack = {
    pg,
    storeUrl: pg.tcpUrl,
    passwordFile,
    keyFile,
    ca,
    dir,
    relays,
    async startRelay(id, options = {}) {
      const args = [
        "serve",
        "--listen",
        options.listen ?? "127.0.0.1:0",
        "--store",
        pg.tcpUrl,
        "--store-password-file",
        passwordFile,
        "--mesh-key",
        options.keyFile ?? keyFile,
        "--relay-id",
        id,
        "--heartbeat",
        String(HEARTBEAT_S),
        "--trusted-proxy",
        "127.0.0.1",
        "--trusted-proxy",
        "::1",
        ...(options.extraArgs ?? []),
      ];
      const proc = new Proc(`relay ${id}`, args);
      const m = await proc.waitFor(/relay listening url=(\S+)/).catch(async (err) => {
        await proc.stop();
        throw err;
      });
      const url = m[1];
      const relay: MeshRelay = {
        id,
        proc,
        url,
        port: Number(new URL(url).port),
        dataDir: "",
        [Symbol.asyncDispose]: () => proc[Symbol.asyncDispose](),
      };
      relays.push(relay);
      return relay;
    },
    admin(args) {
      return od(["admin", "--store", pg.tcpUrl, "--store-password-file", passwordFile, ...args]);
    },
    async [Symbol.asyncDispose]() {
      for (const r of relays) await r.proc.stop();
      await pg[Symbol.asyncDispose]();
    },
  };
  return stack;
}

/** HAProxy running deploy/haproxy-mesh.cfg in front of three relays. */
export interface MeshProxy extends AsyncDisposable {
  /** The relay URL devices and clients use through HAProxy. */
  url: string;
  proc: Proc;
  /** A Relay whose URL is HAProxy's, for startDaemon and clientEnv. */
  relay: Relay;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Starts HAProxy in front of `relays` (three) and waits until it routes to all of them. */
export async function startMeshProxy(stack: MeshStack, relays: MeshRelay[]): Promise<MeshProxy> {
  if (relays.length !== 3) throw new Error("deploy/haproxy-mesh.cfg names three relays");
  let last = "";
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = freePort();
    const home = `${stack.dir}/haproxy-${port}`;
    await Deno.mkdir(home, { recursive: true });
    const pem = `${home}/relay.pem`;
    await Deno.writeTextFile(
      pem,
      (await Deno.readTextFile(stack.ca.certFile)) + (await Deno.readTextFile(stack.ca.keyFile)),
    );
    const proc = new Proc("haproxy", ["-db", "-f", `${DEPLOY}haproxy-mesh.cfg`], {
      cmd: "haproxy",
      cwd: home,
      env: {
        OD_BIND: `127.0.0.1:${port}`,
        OD_TLS_PEM: pem,
        OD_RELAY1: `127.0.0.1:${relays[0].port}`,
        OD_RELAY2: `127.0.0.1:${relays[1].port}`,
        OD_RELAY3: `127.0.0.1:${relays[2].port}`,
      },
    });
    const url = `https://localhost:${port}`;
    if (await answers(url, stack.ca.caFile, proc)) {
      const relay: Relay = {
        proc,
        url,
        port,
        dataDir: "",
        ca: stack.ca.caFile,
        [Symbol.asyncDispose]: () => proc[Symbol.asyncDispose](),
      };
      return { url, proc, relay, [Symbol.asyncDispose]: () => proc[Symbol.asyncDispose]() };
    }
    await proc.stop();
    last = proc.stderr;
  }
  throw new Error(`haproxy did not start:\n${last}`);
}

/** True once HAProxy answers /v1/health through TLS (its checks have found the relays up). */
async function answers(url: string, caFile: string, proc: Proc): Promise<boolean> {
  const client = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(caFile)] });
  let exited = false;
  proc.status.then(() => (exited = true));
  try {
    for (let i = 0; i < 100 && !exited; i++) {
      try {
        const res = await fetch(`${url}/v1/health`, { client });
        await res.body?.cancel();
        if (res.status === 200) return true;
      } catch {
        // not yet listening
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return false;
  } finally {
    client.close();
  }
}

/** Device links each relay holds, from `od admin relay list --json`. */
export async function heldByRelay(stack: MeshStack): Promise<Record<string, number>> {
  const out = await stack.admin(["relay", "list", "--json"]);
  if (out.code !== 0) throw new Error(`relay list: ${out.stderr}`);
  const rows = JSON.parse(out.stdout) as { id: string; devices: number }[];
  return Object.fromEntries(rows.map((r) => [r.id, r.devices]));
}

/** An `od pipe DEV echo` that keeps writing 100 bytes every 50 ms until it ends. */
export function livePipe(env: Record<string, string>, device: string) {
  const proc = new Proc(`pipe ${device}`, ["pipe", device, "echo"], { env, stdin: "piped" });
  const writer = proc.child.stdin.getWriter();
  const timer = setInterval(() => writer.write(new Uint8Array(100)).catch(() => {}), 50);
  const ended = proc.output().then((out) => {
    clearInterval(timer);
    writer.close().catch(() => {});
    return { ...out, at: Date.now() };
  });
  // Data echoed back means the tunnel is open end to end.
  const flowing = () => eventually("the pipe to carry data", () => proc.stdout.length > 0);
  return { proc, ended, flowing, stop: () => proc.stop() };
}

/** Waits until `od list` through `relay` shows `device` online (its link claim is written). */
export async function onlineVia(relay: Relay, key: string, device: string): Promise<void> {
  await eventually(`${device} online through ${relay.url}`, async () => {
    const res = await fetch(`${relay.url}/v1/devices/${device}`, {
      headers: { authorization: `Bearer ${key}` },
    });
    const body = await res.json();
    return res.status === 200 && body.state === "online";
  }, 10_000);
}

/** A tunnel opened by hand (a WebSocket the test drives): OPENED's info, then frame by frame. */
export interface RawTunnel extends AsyncDisposable {
  /** The device info OPENED carried (maxWindow, keepalive, …). */
  info: Record<string, unknown>;
  /** Sends one frame as given. */
  send(frame: Uint8Array): void;
  /** Waits for the next frame of `type` from the relay (earlier ones of other types are kept). */
  next(type: number, timeoutMs?: number): Promise<Frame>;
}

/**
 * Opens /v1/tunnel to `device`'s `service` through `relay` with `key`, saying it can grow
 * windows (x-od-windows) if `windows`; rejects unless the relay answers with OPENED.
 */
export async function rawTunnel(
  relay: Relay,
  key: string,
  device: string,
  service: string,
  windows: boolean,
): Promise<RawTunnel> {
  const path = `/v1/tunnel?device=${device}&service=${service}`;
  const ws = new WebSocket(`${relay.url.replace(/^http/, "ws")}${path}`, {
    protocols: [SUBPROTOCOL],
    headers: { authorization: `Bearer ${key}`, ...(windows ? { [WINDOWS_HEADER]: "1" } : {}) },
  } as unknown as string[]);
  ws.binaryType = "arraybuffer";
  const frames: Frame[] = [];
  let wake = () => {};
  ws.onmessage = (e) => {
    frames.push(decodeFrame(new Uint8Array(e.data as ArrayBuffer)));
    wake();
  };
  ws.onclose = () => wake();
  const next = async (type: number, timeoutMs = 10_000): Promise<Frame> => {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const i = frames.findIndex((f) => f.type === type);
      if (i >= 0) return frames.splice(i, 1)[0];
      if (ws.readyState === WebSocket.CLOSED) throw new Error(`the tunnel closed; got ${frames}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame of type ${type} within ${timeoutMs} ms`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        wake = r;
        timer = setTimeout(r, left);
      });
      clearTimeout(timer);
    }
  };
  const close = async () => {
    if (ws.readyState === WebSocket.CLOSED) return;
    const closed = new Promise((r) => ws.addEventListener("close", r));
    ws.close();
    await closed;
  };
  try {
    const opened = await next(FrameType.OPENED);
    if (opened.type !== FrameType.OPENED) throw new Error("unreachable");
    return {
      info: opened.info ?? {},
      send: (frame) => ws.send(frame),
      next,
      [Symbol.asyncDispose]: close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
