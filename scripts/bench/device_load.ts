/**
 * Benchmark helper process: holds COUNT idle device links open from one process.
 *
 * In `od` mode it first enrols COUNT devices with POST /v1/enroll (the account's device key, one
 * generated credential each) and prints `{"enrolled":N}`; in `plain` mode it skips that and
 * prints `{"enrolled":0}`. It then waits for a line on stdin, so the caller can measure the
 * server before any link exists, opens COUNT WebSockets (subprotocol od.1, bearer credential),
 * sends each the `info` CONTROL frame a daemon sends, and prints `{"ready":N,"ms":T}` once all
 * are up: in od mode when the relay's `hello` has arrived on each, in plain mode when each is
 * open. It answers nothing afterwards and stays until killed.
 *
 *   deno run --allow-all scripts/bench/device_load.ts od|plain URL COUNT DEVICE_KEY|- [CA_FILE]
 */
import { encodeControl, SUBPROTOCOL } from "../../src/protocol/frame.ts";
import { generateCredential } from "../../src/protocol/keys.ts";

const ENROL_WIDTH = 8; // enrolments in flight: the relay commits each to SQLite one at a time
const CONNECT_WIDTH = 64; // handshakes in flight: enough to keep the relay busy, not a storm
const STEP_TIMEOUT_MS = 20_000; // one enrolment or handshake taking longer is a failure

/** Runs `task(i)` for i in 0..count-1 with at most `width` running at once. */
async function pool(count: number, width: number, task: (i: number) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(width, count) }, worker));
}

const MAX_TRIES = 20; // a throttled request waits about a second per try

async function enrol(url: string, key: string, count: number, client?: Deno.HttpClient) {
  const credentials: string[] = [];
  await pool(count, ENROL_WIDTH, async (i) => {
    const credential = generateCredential();
    // The relay throttles one address at 200 requests a second after a burst; like a daemon,
    // the load process waits as long as Retry-After says (bounded number of tries).
    for (let attempt = 0; attempt < MAX_TRIES; attempt++) {
      const res = await fetch(new URL("/v1/enroll", url), {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ credential, id: `load-${i}` }),
        client,
        signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
      });
      const text = await res.text();
      if (res.status === 429) {
        await new Promise((r) => setTimeout(r, Number(res.headers.get("retry-after") ?? 1) * 1000));
        continue;
      }
      if (!res.ok) throw new Error(`enrolment ${i} failed: HTTP ${res.status} ${text}`);
      credentials[i] = credential;
      return;
    }
    throw new Error(`enrolment ${i} was throttled ${MAX_TRIES} times`);
  });
  return credentials;
}

/** Opens one link, sends `info`, resolves when it is up; keeps it in `held`. */
function link(url: string, secret: string, od: boolean, held: WebSocket[], c?: Deno.HttpClient) {
  const ws = new WebSocket(url, {
    protocols: [SUBPROTOCOL],
    headers: { authorization: `Bearer ${secret}` },
    client: c,
  });
  ws.binaryType = "arraybuffer";
  const info = encodeControl({ t: "info", version: "bench", services: ["ssh"], hostname: "load" });
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("handshake timed out")), STEP_TIMEOUT_MS);
    const done = () => {
      clearTimeout(timer);
      ws.onmessage = null; // answer nothing from now on
      held.push(ws);
      resolve();
    };
    ws.onopen = () => {
      ws.send(info);
      if (!od) done();
    };
    ws.onmessage = () => done(); // the relay's hello
    ws.onerror = (ev) => reject(new Error((ev as ErrorEvent).message ?? "WebSocket error"));
    ws.onclose = (ev) => console.error(`load: link closed code=${ev.code} ${ev.reason}`);
  });
}

async function main(mode: string, url: string, count: number, key?: string, caFile?: string) {
  const client = caFile
    ? Deno.createHttpClient({ caCerts: [Deno.readTextFileSync(caFile)] })
    : undefined;
  const od = mode === "od";
  const credentials = od
    ? await enrol(url, key!, count, client)
    : Array.from({ length: count }, () => "none");
  console.log(JSON.stringify({ enrolled: od ? count : 0 }));
  for await (const _ of Deno.stdin.readable) break; // the caller's go-ahead
  const started = performance.now();
  const wsUrl = new URL(od ? "/v1/device" : "/", url).href.replace(/^http/, "ws");
  const held: WebSocket[] = [];
  await pool(count, CONNECT_WIDTH, async (i) => {
    for (let attempt = 1;; attempt++) {
      try {
        return await link(wsUrl, credentials[i], od, held, client);
      } catch (err) {
        // Throttled (429) like a reconnecting site behind one NAT, or a stream error from
        // Deno's WebSocket over HTTP/2 under load: wait and try again, as a daemon would.
        if (attempt >= MAX_TRIES) throw err;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  });
  console.log(JSON.stringify({ ready: held.length, ms: performance.now() - started }));
  await new Promise(() => {}); // hold the links until killed
}

if (import.meta.main) {
  const [mode, url, count, key, ca] = Deno.args;
  if (!["od", "plain"].includes(mode) || !url || !(Number(count) > 0) || !key) {
    throw new Error("usage: device_load.ts od|plain URL COUNT DEVICE_KEY|- [CA_FILE]");
  }
  await main(mode, url, Number(count), key, ca);
}
