/**
 * Helpers for tests that talk to the relay's API and device links directly: JSON calls with a
 * bearer secret, health with its latency, a hand-driven device link that sends chosen CONTROL
 * messages and reads what the relay answers, and the properties a device's own `od props`
 * shows.
 */
import { ok } from "node:assert/strict";
import { od, Proc } from "./_harness.ts";
import { type Relay, relaySocket } from "./_fleet.ts";
import { decodeFrame, encodeControl, type Frame, FrameType } from "../src/protocol/frame.ts";

/** An API answer: status and parsed JSON body (null if none or not JSON). */
export interface Answer {
  status: number;
  body: unknown;
  text: string;
}

/** Calls the relay with a bearer secret (none if empty) and an optional JSON body. */
export async function call(
  relay: Relay,
  secret: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const res = await fetch(`${relay.url}${path}`, {
    method,
    headers: {
      ...(secret ? { authorization: `Bearer ${secret}` } : {}),
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...headers,
    },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // not JSON
  }
  return { status: res.status, body: parsed, text };
}

/** GET /v1/health; returns its latency in ms, throwing unless it answered 200. */
export async function health(relay: Relay): Promise<number> {
  const started = performance.now();
  const res = await fetch(`${relay.url}/v1/health`);
  await res.body?.cancel();
  const ms = performance.now() - started;
  if (res.status !== 200) throw new Error(`health answered ${res.status}`);
  return ms;
}

/** What a HealthProbe saw. */
export interface HealthStats {
  probes: number;
  /** The slowest answer (ms), and the 99th percentile. */
  max: number;
  p99: number;
  failed: number;
  /** The probe's lines about slow answers, for a failure message. */
  log: string;
}

/**
 * /v1/health called every 50 ms from its own process (tests/_health_probe.ts), so the test's own
 * work (building request bodies, sampling memory, its garbage collection) does not count as the
 * relay's latency. `stop()` ends it and returns what it saw.
 */
export class HealthProbe {
  #proc: Proc;
  private constructor(proc: Proc) {
    this.#proc = proc;
  }

  static async start(relay: Relay): Promise<HealthProbe> {
    const proc = new Proc("health probe", [
      "run",
      "--allow-net",
      "tests/_health_probe.ts",
      relay.url,
    ], { cmd: "deno", stdin: "piped", cwd: new URL("..", import.meta.url).pathname });
    const deadline = Date.now() + 20_000;
    while (!/"ready":true/.test(proc.stdout)) {
      if (Date.now() > deadline) {
        await proc[Symbol.asyncDispose]();
        throw new Error(`the health probe never started: ${proc.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return new HealthProbe(proc);
  }

  async stop(): Promise<HealthStats> {
    await this.#proc.child.stdin.close();
    const out = await this.#proc.output();
    const line = out.stdout.trim().split("\n").at(-1)!;
    return { ...JSON.parse(line), log: out.stderr };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#proc[Symbol.asyncDispose]();
  }
}

/** Asserts the relay process is still running (not merely that something answers). */
export async function assertRelayAlive(relay: Relay): Promise<void> {
  const exited = await Promise.race([
    relay.proc.status.then((s) => `exited with ${s.code}`),
    new Promise<null>((r) => setTimeout(() => r(null), 0)),
  ]);
  ok(exited === null, `the relay ${exited}:\n${relay.proc.stderr.slice(-2000)}`);
  await health(relay);
}

/** The properties `od props get --json` shows on the device with state directory `dir`. */
export async function propsOnDevice(dir: string): Promise<Record<string, string>> {
  const out = await od(["props", "--state", dir, "get", "--json"]);
  if (out.code !== 0) throw new Error(`od props get failed: ${out.stderr}`);
  return JSON.parse(out.stdout);
}

/** The user properties the relay holds for a device. */
export async function propsOnRelay(
  relay: Relay,
  key: string,
  device: string,
): Promise<Record<string, string>> {
  const answer = await call(relay, key, "GET", `/v1/devices/${device}`);
  if (answer.status !== 200) throw new Error(`GET ${device}: ${answer.status} ${answer.text}`);
  const props = (answer.body as { props: Record<string, string> }).props;
  return Object.fromEntries(Object.entries(props).filter(([k]) => !k.startsWith("on:")));
}

/** A device link driven by the test: sends CONTROL messages, collects the relay's. */
export class RogueDevice {
  readonly ws: WebSocket;
  readonly received: Record<string, unknown>[] = [];
  /** Every other frame the relay sent (OPEN, DATA, …), in order. */
  readonly frames: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters: (() => void)[] = [];

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.onmessage = (e) => {
      const frame = decodeFrame(new Uint8Array(e.data as ArrayBuffer));
      if (frame.type === FrameType.CONTROL) this.received.push(frame.message);
      else this.frames.push(frame);
      this.#waiters.splice(0).forEach((w) => w());
    };
    this.closed = new Promise((resolve) => {
      ws.addEventListener("close", (e) => {
        resolve({ code: e.code, reason: e.reason });
        this.#waiters.splice(0).forEach((w) => w());
      });
    });
  }

  /** Connects with a device credential and reports itself with `info`. */
  static async connect(relay: Relay, credential: string): Promise<RogueDevice> {
    const s = await relaySocket(relay, credential, "/v1/device");
    if (!s.ws) throw new Error(`device link refused: ${s.status}`);
    const device = new RogueDevice(s.ws);
    device.send({ t: "info", version: "test", services: [], hostKeys: [] });
    return device;
  }

  /** Waits for a frame other than CONTROL of type `type` (received before or after the call). */
  async frame(type: number, timeoutMs = 10_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const i = this.frames.findIndex((f) => f.type === type);
      if (i >= 0) return this.frames.splice(i, 1)[0];
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error("the device link closed");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for a frame of type ${type}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        timer = setTimeout(r, left);
      });
      clearTimeout(timer);
    }
  }

  /** Sends one frame as given. */
  sendFrame(frame: Uint8Array): void {
    this.ws.send(frame);
  }

  /** Sends one CONTROL message (as given, valid or not). */
  send(message: Record<string, unknown>): void {
    this.ws.send(encodeControl(message));
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Waits for a CONTROL message matching `pred` (received before or after the call). */
  async next(
    pred: (m: Record<string, unknown>) => boolean,
    timeoutMs = 10_000,
  ): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const i = this.received.findIndex(pred);
      if (i >= 0) return this.received.splice(i, 1)[0];
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error("the device link closed");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("timed out waiting for a control message");
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        timer = setTimeout(r, left);
      });
      clearTimeout(timer);
    }
  }

  /** Closes the link and waits for it. */
  async close(): Promise<void> {
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.close();
    await this.closed;
  }
}
