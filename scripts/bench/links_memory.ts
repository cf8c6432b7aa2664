/**
 * The links suite's memory figure: the relay's resident memory while 50 `od pipe` processes
 * each run a bulk stream to the same device across a slow emulated link, uploads (the relay
 * receives faster than the device link drains: what it holds is bounded only by flow control)
 * and downloads, next to the relay's resident memory just before, with the link idle. A stream
 * that could not open (the relay gives a device 10 s to answer an OPEN, and the answer may wait
 * behind other streams' bytes on the device link) is counted in its own figure.
 */
import { Proc } from "../../tests/_harness.ts";
import { DEVICE, type LinkFleet, odBulk } from "../../tests/_links.ts";
import { emit, figure, progress, rssKiB } from "./util.ts";

const STREAMS = 50;
const SAMPLE_MS = 5000; // RSS is sampled this long once every stream moves bytes…
const SAMPLE_EVERY_MS = 100; // …this often; the peak is kept
const START_TIMEOUT_MS = 90_000; // 50 Deno processes starting on 2 cores, then first bytes
const BLOCK = 64 * 1024; // an upload's stdin write

/** One of the streams, as far as the memory figure cares. */
interface Stream {
  moved(): boolean;
  /** Why it ended early (od pipe's sentence), or null while it runs. */
  failure(): string | null;
}

/** Peak RSS of the relay and the daemon over SAMPLE_MS. */
async function peaks(fleet: LinkFleet): Promise<{ relay: number; daemon: number }> {
  let relay = 0;
  let daemon = 0;
  for (const end = Date.now() + SAMPLE_MS; Date.now() < end;) {
    relay = Math.max(relay, rssKiB(fleet.relay.proc.pid));
    daemon = Math.max(daemon, rssKiB(fleet.daemon.pid));
    await new Promise((r) => setTimeout(r, SAMPLE_EVERY_MS));
  }
  return { relay, daemon };
}

/** Waits until every stream moves bytes or has failed; then samples. */
async function measure(fleet: LinkFleet, streams: Stream[]) {
  const deadline = Date.now() + START_TIMEOUT_MS;
  const settled = () => streams.every((s) => s.moved() || s.failure() !== null);
  while (!settled() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const failures = streams.map((s) => s.failure()).filter((f): f is string => f !== null);
  const opened = streams.filter((s) => s.moved() && s.failure() === null).length;
  if (opened === 0) throw new Error(`no stream moved bytes: ${failures[0] ?? "none ended"}`);
  return { ...await peaks(fleet), opened, failures };
}

/** Uploads: STREAMS `od pipe DEVICE sink` fed from here. */
async function uploads(fleet: LinkFleet) {
  await using stack = new AsyncDisposableStack();
  const first = fleet.servers.sink.counts().length;
  const block = new Uint8Array(BLOCK);
  let stopping = false;
  const streams: Stream[] = [];
  for (let i = 0; i < STREAMS; i++) {
    const proc = stack.use(
      new Proc(`od pipe sink ${i}`, ["pipe", DEVICE, "sink"], { env: fleet.env, stdin: "piped" }),
    );
    const writer = proc.child.stdin.getWriter();
    (async () => {
      while (!stopping) await writer.write(block);
    })().catch(() => {}); // the pipe ended
    let failure: string | null = null;
    proc.status.then(({ code }) => {
      if (!stopping) failure = proc.stderr.trim() || `od pipe exited ${code}`;
    });
    streams.push({ moved: () => false, failure: () => failure });
  }
  stack.defer(() => void (stopping = true)); // disposed first: the pipes are stopped on purpose
  // The sink sees connections in the order the daemon dials them, not in the pipes' order.
  const moving = () => fleet.servers.sink.counts().slice(first).filter((n) => n > 0).length;
  return await measure(fleet, streams.map((s, i) => ({ ...s, moved: () => moving() > i })));
}

/** Downloads: STREAMS `od pipe DEVICE bulk` read here. */
async function downloads(fleet: LinkFleet) {
  await using stack = new AsyncDisposableStack();
  const streams: Stream[] = [];
  for (let i = 0; i < STREAMS; i++) {
    const bulk = stack.use(await odBulk(fleet.env));
    streams.push({ moved: () => bulk.received() > 0, failure: bulk.failure });
  }
  return await measure(fleet, streams);
}

/** Figure 3: relay RSS with STREAMS bulk streams each way, next to its idle RSS. */
export async function linkMemory(fleet: LinkFleet): Promise<void> {
  // Idle once, before both: a Deno process seldom gives its heap back, so after one run the
  // "idle" figure would hold that run's peak. Downloads go first: the relay holds little then.
  const idle = { relay: rssKiB(fleet.relay.proc.pid), daemon: rssKiB(fleet.daemon.pid) };
  for (const [way, run] of [["downloads", downloads], ["uploads", uploads]] as const) {
    const got = await run(fleet);
    progress(
      `${STREAMS} ${way} on ${fleet.link.rate / 1e6} Mbit/s, ${got.opened} of them moving: ` +
        `relay RSS ${idle.relay} KiB idle, ${got.relay} KiB peak; ` +
        `daemon ${idle.daemon} KiB idle, ${got.daemon} KiB peak`,
    );
    if (got.failures.length) {
      progress(`${got.failures.length} ${way} failed, e.g.: ${got.failures[0]}`);
    }
    emit(
      figure(`links_relay_rss_${STREAMS}_${way}`, got.relay, "KiB", "relay_rss_idle", idle.relay),
    );
    emit(
      figure(`links_streams_open_${STREAMS}_${way}`, got.opened, "streams", "requested", STREAMS, {
        target: `all ${STREAMS} open`,
        meets: (v) => v === STREAMS,
      }),
    );
  }
}
