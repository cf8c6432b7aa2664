/**
 * End-to-end test harness: runs the real `scripts/od` as separate processes (relay, daemons,
 * clients) on 127.0.0.1 with ports chosen at run time, and waits for the log lines that say a
 * process is ready instead of sleeping. Everything started here is stopped by its PID in
 * `[Symbol.asyncDispose]`, so `await using` cleans up even when an assertion fails. Relays and
 * `od admin` run on the tests' store (tests/_test_store.ts: SQLite, or PostgreSQL under
 * OD_TEST_STORE=postgres).
 */
import { storeEnv, withTestStore } from "./_test_store.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** The od shim that runs the CLI from this checkout. */
export const OD = `${ROOT}/scripts/od`;

/** Environment every od process gets: no proxy for loopback, quiet logs unless debugging. */
export function baseEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    NO_PROXY: "127.0.0.1,localhost,::1",
    no_proxy: "127.0.0.1,localhost,::1",
    HTTPS_PROXY: "",
    HTTP_PROXY: "",
    https_proxy: "",
    http_proxy: "",
    ...storeEnv(),
    ...extra,
  };
}

/** A temporary directory removed on dispose. */
export async function tempDir(prefix = "od-test-"): Promise<string & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix });
  return Object.assign(path.slice(), {
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }).catch(() => {}),
  }) as unknown as string & AsyncDisposable;
}

/** A child process whose stderr (and optionally stdout) is collected as it arrives. */
export class Proc implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly name: string;
  stderr = "";
  stdout = "";
  readonly status: Promise<Deno.CommandStatus>;
  #waiters: (() => void)[] = [];
  #drained: Promise<void>[] = [];
  #piped: boolean; // stdout piped to the caller, who may not have read it all

  constructor(name: string, args: string[], options: {
    env?: Record<string, string>;
    cmd?: string;
    stdin?: "piped" | "null";
    stdout?: "collect" | "piped" | "null";
    cwd?: string;
  } = {}) {
    this.name = name;
    this.child = new Deno.Command(options.cmd ?? OD, {
      args: options.cmd === undefined ? withTestStore(args) : args,
      env: baseEnv(options.env),
      stdin: options.stdin ?? "null",
      stdout: options.stdout === "null" ? "null" : "piped",
      stderr: "piped",
      cwd: options.cwd,
    }).spawn();
    this.#drained.push(this.#collect(this.child.stderr, (t) => (this.stderr += t)));
    if ((options.stdout ?? "collect") === "collect") {
      this.#drained.push(this.#collect(this.child.stdout, (t) => (this.stdout += t)));
    }
    this.status = this.child.status;
    this.#piped = options.stdout === "piped";
  }

  get pid(): number {
    return this.child.pid;
  }

  async #collect(stream: ReadableStream<Uint8Array>, add: (t: string) => void): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      add(decoder.decode(chunk, { stream: true }));
      this.#waiters.splice(0).forEach((w) => w());
    }
    this.#waiters.splice(0).forEach((w) => w());
  }

  /** Waits until stderr matches `re` (checking new output as it arrives); returns the match. */
  async waitFor(re: RegExp, timeoutMs = 20_000, from = 0): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    this.status.then(() => (exited = true));
    while (true) {
      const m = this.stderr.slice(from).match(re);
      if (m) return m;
      const left = deadline - Date.now();
      if (left <= 0 || exited) {
        throw new Error(
          `${this.name}: ${
            exited ? "exited" : "timed out"
          } waiting for ${re}; stderr:\n${this.stderr}`,
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((r) => this.#waiters.push(r)),
        new Promise<void>((r) => (timer = setTimeout(r, Math.min(left, 200)))),
      ]);
      clearTimeout(timer);
    }
  }

  /** Waits for the process to exit, collecting all output. */
  async output(): Promise<{ code: number; stdout: string; stderr: string }> {
    const { code } = await this.status;
    await Promise.all(this.#drained);
    return { code, stdout: this.stdout, stderr: this.stderr };
  }

  /** Sends a signal if the process is still running. */
  signal(sig: Deno.Signal): void {
    try {
      this.child.kill(sig);
    } catch {
      // already exited
    }
  }

  /** Stops the process (SIGTERM, then SIGKILL after 5 s) and waits for it. */
  async stop(): Promise<Deno.CommandStatus> {
    this.signal("SIGTERM");
    const timer = setTimeout(() => this.signal("SIGKILL"), 5000);
    const status = await this.status;
    clearTimeout(timer);
    await Promise.all(this.#drained).catch(() => {});
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.child.stdin?.close();
    } catch {
      // not piped or already closed
    }
    await this.stop();
    if (this.#piped) await this.child.stdout.cancel().catch(() => {});
  }
}

/** Runs `od ARGS` to completion. */
export async function od(
  args: string[],
  options: { env?: Record<string, string>; stdin?: Uint8Array | string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(OD, {
    args: withTestStore(args),
    env: baseEnv(options.env),
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(
      typeof options.stdin === "string" ? new TextEncoder().encode(options.stdin) : options.stdin,
    );
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Resident memory of a process in bytes, from /proc. */
export function rss(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

/** Polls `check` every 100 ms until it returns a truthy value or `timeoutMs` passes. */
export async function eventually<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs = 20_000,
): Promise<Exclude<T, false | 0 | "" | null | undefined>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v) return v as Exclude<T, false | 0 | "" | null | undefined>;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ""}`);
}

/** `size` random bytes (crypto.getRandomValues fills at most 64 KiB per call). */
export function randomBytes(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let off = 0; off < size; off += 65536) {
    crypto.getRandomValues(out.subarray(off, Math.min(size, off + 65536)));
  }
  return out;
}

/** sha256 of every file under `dir`, by relative path. */
export async function treeDigest(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function walk(rel: string) {
    for await (const e of Deno.readDir(`${dir}/${rel}`)) {
      const path = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) await walk(path);
      else {
        const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(`${dir}/${path}`));
        out[path] = btoa(String.fromCharCode(...new Uint8Array(digest)));
      }
    }
  }
  await walk("");
  return out;
}
