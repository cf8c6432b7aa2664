/**
 * Fixtures for od end-to-end tests: a relay process, accounts made with `od admin`, daemons,
 * a client environment, local services for daemons to expose, and a test CA made with openssl.
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { baseEnv, OD, od, Proc, randomBytes } from "./_harness.ts";
import { storeFor } from "./_test_store.ts";
import { SUBPROTOCOL } from "../src/protocol/frame.ts";
import { generateCredential } from "../src/protocol/keys.ts";

/** A running relay process. */
export interface Relay extends AsyncDisposable {
  proc: Proc;
  url: string;
  port: number;
  dataDir: string;
  ca?: string;
}

/**
 * Starts `od serve` on a free port (or `port`) and waits until it listens; on the tests' store
 * (tests/_test_store.ts), where `dataDir` may stand for a PostgreSQL database.
 */
export async function startRelay(
  dataDir: string,
  options: {
    tls?: TestCa;
    port?: number;
    env?: Record<string, string>;
    dualStack?: boolean;
    extraArgs?: string[];
  } = {},
): Promise<Relay> {
  // Dual stack ([::]) lets tests be two different clients on loopback: 127.0.0.1 and ::1.
  const host = options.dualStack ? "[::]" : "127.0.0.1";
  await storeFor(dataDir);
  const args = ["serve", "--listen", `${host}:${options.port ?? 0}`, "--data", dataDir];
  if (options.tls) args.push("--tls-cert", options.tls.certFile, "--tls-key", options.tls.keyFile);
  args.push(...(options.extraArgs ?? []));
  const proc = new Proc("relay", args, { env: options.env });
  const m = await proc.waitFor(/relay listening url=(\S+)/).catch(async (err) => {
    await proc.stop();
    throw err;
  });
  let url = m[1].replace("[::]", "127.0.0.1");
  if (options.tls) url = url.replace("127.0.0.1", "localhost");
  return {
    proc,
    url,
    port: Number(new URL(url).port),
    dataDir,
    ca: options.tls?.caFile,
    [Symbol.asyncDispose]: () => proc[Symbol.asyncDispose](),
  };
}

/** Keys of a new account. */
export interface AccountKeys {
  account: string;
  clientKey: string;
  deviceKey: string;
}

/** Creates an account with `od admin account add --json`. */
export async function addAccount(dataDir: string, name: string): Promise<AccountKeys> {
  const out = await od(["admin", "--data", dataDir, "account", "add", name, "--json"]);
  if (out.code !== 0) throw new Error(`account add failed: ${out.stderr}`);
  return JSON.parse(out.stdout);
}

/** Environment that makes od a client of `relay` with `key`, without a config file. */
export function clientEnv(relay: Relay, key: string, configDir: string): Record<string, string> {
  return {
    OD_RELAY: relay.url,
    OD_KEY: key,
    OD_CONFIG_DIR: configDir,
    ...(relay.ca ? { OD_CA: relay.ca } : {}),
  };
}

/** Starts `od daemon` and waits until it is connected. */
export async function startDaemon(relay: Relay, options: {
  key: string;
  id: string;
  stateDir: string;
  services: Record<string, number | string>;
  extraArgs?: string[];
  /** Extra environment, such as a proxy. */
  env?: Record<string, string>;
}): Promise<Proc> {
  const args = ["daemon", "--relay", relay.url, "--key", options.key, "--id", options.id];
  args.push("--state", options.stateDir, "--keepalive", "2");
  for (const [name, target] of Object.entries(options.services)) {
    args.push(
      "--service",
      `${name}=${typeof target === "number" ? `127.0.0.1:${target}` : target}`,
    );
  }
  if (relay.ca) args.push("--ca", relay.ca);
  args.push(...(options.extraArgs ?? []));
  const proc = new Proc(`daemon ${options.id}`, args, { env: options.env });
  await proc.waitFor(/connected to relay/).catch(async (err) => {
    await proc.stop();
    throw err;
  });
  return proc;
}

/** A TCP server on 127.0.0.1 run inside the test process. */
export interface LocalServer extends AsyncDisposable {
  port: number;
  /** Bytes the server has written, over all connections. */
  written(): number;
}

function serve(handler: (conn: Deno.Conn, count: (n: number) => void) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  let written = 0;
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      const task = handler(conn, (n) => (written += n))
        .catch(() => {})
        .finally(() => {
          conns.delete(conn);
          try {
            conn.close();
          } catch {
            // closed
          }
        });
      tasks.add(task);
      task.finally(() => tasks.delete(task));
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    written: () => written,
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

/** Echoes every byte back and half-closes after the peer's EOF. */
export function echoServer(): LocalServer {
  return serve(async (conn, count) => {
    const buf = new Uint8Array(64 * 1024);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await conn.write(buf.subarray(off, n));
      count(n);
    }
    await conn.closeWrite();
  });
}

/** Sends `total` bytes of a fixed pseudo-random pattern as fast as the peer accepts them. */
export function sourceServer(total: number): LocalServer & { data: Uint8Array } {
  const data = randomBytes(1024 * 1024);
  const server = serve(async (conn, count) => {
    let sent = 0;
    while (sent < total) {
      const chunk = data.subarray(0, Math.min(data.length, total - sent));
      let off = 0;
      while (off < chunk.length) off += await conn.write(chunk.subarray(off));
      sent += chunk.length;
      count(chunk.length);
    }
    await conn.closeWrite();
  });
  return Object.assign(server, { data });
}

/** A private CA and a server certificate for localhost, 127.0.0.1 and ::1. */
export interface TestCa {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** Makes a test CA and a server certificate in `dir` with openssl. */
export async function makeTestCa(dir: string): Promise<TestCa> {
  const run = async (...args: string[]) => {
    const out = await new Deno.Command("openssl", { args, cwd: dir, stderr: "piped" }).output();
    if (out.code !== 0) {
      throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(out.stderr)}`);
    }
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await run(
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=od test CA",
  );
  await run("req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost");
  // ::1 too, so a reverse proxy under test can be reached from another address than its own.
  await Deno.writeTextFile(`${dir}/ext.cnf`, "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n");
  await run(
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  );
  return { caFile: `${dir}/ca.pem`, certFile: `${dir}/server.pem`, keyFile: `${dir}/server.key` };
}

/** Asserts a failed od run printed exactly one `od: …` line matching `re`. */
export function assertOneSentence(
  out: { code: number; stderr: string },
  re: RegExp,
  code = 1,
): void {
  const lines = out.stderr.trimEnd().split("\n");
  assertEquals(lines.length, 1, `expected one line, got:\n${out.stderr}`);
  match(lines[0], /^od: /);
  match(lines[0], re);
  assertEquals(out.code, code, out.stderr);
}

/** A pipe that trickles data through `echo` for as long as the test runs. */
export class BackgroundTunnel {
  #proc: Proc;
  #sent = "";
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #timer: ReturnType<typeof setInterval>;
  #n = 0;

  constructor(env: Record<string, string>, device: string) {
    this.#proc = new Proc("background pipe", ["pipe", device, "echo"], { env, stdin: "piped" });
    this.#writer = this.#proc.child.stdin.getWriter();
    this.#timer = setInterval(() => {
      const line = `line ${this.#n++} ${"x".repeat(100)}\n`;
      this.#sent += line;
      this.#writer.write(new TextEncoder().encode(line)).catch(() => {});
    }, 20);
  }

  /** Stops writing, closes stdin and checks everything came back. */
  async finish(): Promise<void> {
    for (let i = 0; i < 100 && this.#n <= 10; i++) await new Promise((r) => setTimeout(r, 20));
    clearInterval(this.#timer);
    await this.#writer.close();
    const out = await this.#proc.output();
    assertEquals(out.code, 0, out.stderr);
    ok(this.#n > 10, `background tunnel ran for only ${this.#n} lines`);
    assertEquals(out.stdout, this.#sent);
  }
}

/** Adds a key with `od admin key add`; returns its id and secret. */
export async function addKey(
  dataDir: string,
  account: string,
  role: "client" | "device" | "full",
): Promise<{ id: string; key: string }> {
  const out = await od([
    "admin",
    "--data",
    dataDir,
    "key",
    "add",
    "--account",
    account,
    "--role",
    role,
    "--json",
  ]);
  if (out.code !== 0) throw new Error(`key add failed: ${out.stderr}`);
  return JSON.parse(out.stdout);
}

/** Enrols a device through the API with a fresh credential, as a daemon would; returns it. */
export async function enrollByApi(relay: Relay, deviceKey: string, id: string): Promise<string> {
  const credential = generateCredential();
  const res = await fetch(`${relay.url}/v1/enroll`, {
    method: "POST",
    headers: { authorization: `Bearer ${deviceKey}`, "content-type": "application/json" },
    body: JSON.stringify({ credential, id }),
  });
  await res.body?.cancel();
  if (res.status !== 201) throw new Error(`enrolling ${id} answered ${res.status}`);
  return credential;
}

/**
 * Opens a WebSocket to `path` on the relay as od would. Resolves to the open socket (binary)
 * or to the HTTP status of the refusal. `answered` resolves at the first message or the close,
 * whichever comes first, even if that happened before the caller looked.
 */
export async function relaySocket(
  relay: Relay,
  secret: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<
  { ws: WebSocket; status: 101; answered: Promise<void> } | { ws: null; status: number }
> {
  const ws = new WebSocket(`${relay.url.replace(/^http/, "ws")}${path}`, {
    protocols: [SUBPROTOCOL],
    headers: { authorization: `Bearer ${secret}`, ...headers },
  } as unknown as string[]);
  ws.binaryType = "arraybuffer";
  const answered = new Promise<void>((resolve) => {
    ws.onmessage = () => resolve();
    ws.addEventListener("close", () => resolve());
  });
  const status = await new Promise<number>((resolve) => {
    ws.onopen = () => resolve(101);
    ws.onerror = (e) =>
      resolve(Number(/status code:? (\d+)/i.exec((e as ErrorEvent).message)?.[1] ?? 0));
  });
  return status === 101 ? { ws, status, answered } : { ws: null, status };
}

/** Runs `od pipe DEV SERVICE`, feeding `input` and collecting stdout concurrently. */
export async function pipeThrough(
  env: Record<string, string>,
  device: string,
  service: string,
  input: Uint8Array,
): Promise<{ code: number; output: Uint8Array; stderr: string }> {
  const child = new Deno.Command(OD, {
    args: ["pipe", device, service],
    env: baseEnv(env),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // If od pipe stops reading (it exited), what it said matters more than the broken pipe.
  const writing = (async () => {
    const w = child.stdin.getWriter();
    for (let off = 0; off < input.length; off += 1 << 20) {
      await w.write(input.subarray(off, off + (1 << 20)));
    }
    await w.close();
  })().then(() => null, (err: Error) => err);
  const [out, writeError] = await Promise.all([child.output(), writing]);
  const stderr = new TextDecoder().decode(out.stderr);
  if (writeError && out.code === 0) {
    throw new Error(`od pipe exited 0 before reading all its input (${writeError}): ${stderr}`);
  }
  return { code: out.code, output: out.stdout, stderr };
}

/** A download's outcome: bytes, the first differing byte (-1: none), ms first to last byte. */
export interface Download {
  received: number;
  mismatch: number;
  ms: number;
}

/** Reads `stream` to its end, comparing it with `data` repeated (a patterned source's bytes). */
export async function readPattern(
  stream: AsyncIterable<Uint8Array>,
  data: Uint8Array,
): Promise<Download> {
  let received = 0;
  let mismatch = -1;
  let first = 0;
  let last = 0;
  for await (const chunk of stream) {
    last = performance.now();
    if (received === 0) first = last;
    for (let i = 0; i < chunk.length && mismatch < 0; i++) {
      if (chunk[i] !== data[(received + i) % data.length]) mismatch = received + i;
    }
    received += chunk.length;
  }
  return { received, mismatch, ms: last - first };
}
