/**
 * Store figures for a 10,000-device relay, PostgreSQL next to SQLite measured in the same run
 * (the peer): enrolling the fleet (10 at a time, each its own transaction, as an enrolment storm
 * would), one presence batch for every device, listing the fleet in pages with its properties,
 * a filtered listing, claiming every device link (a reconnect storm), and how long a change
 * takes from one store instance's commit to another instance's feed. One JSON line per figure
 * on stdout. Run alone with `deno run -A scripts/bench/store.ts` (under the exclusive lock).
 */
import { openStore } from "../../src/store/open.ts";
import { hashSecret } from "../../src/store/hash.ts";
import type { Store } from "../../src/store/types.ts";
import { parseFilters } from "../../src/protocol/filter.ts";
import { havePostgres, startPostgres } from "../../tests/_postgres.ts";
import { passwordFile } from "../../tests/_stores.ts";
import { emit, figure, percentile, progress } from "./util.ts";

const DEVICES = 10_000; // the fleet size the store is designed for
const PARALLEL = 10; // concurrent callers: the relay's pool size
const PAGE = 1_000;
const FEED_SAMPLES = 50;

type Timings = Record<string, number>;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function inParallel(n: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: PARALLEL }, async () => {
    while (next < n) await fn(next++);
  }));
}

/** Milliseconds each operation took on one store (and feed latency from a second instance). */
async function measure(open: () => Promise<Store>): Promise<Timings> {
  await using s = await open();
  await using other = await open();
  await s.accounts.create("acme");
  const accountId = (await s.accounts.find("acme"))!;
  const rowids: number[] = new Array(DEVICES);
  const out: Timings = {};
  out.enrol = await timed(() =>
    inParallel(DEVICES, async (i) => {
      const { device } = await s.devices.enroll({
        accountId,
        name: `dev-${String(i).padStart(5, "0")}`,
        credentialHash: hashSecret(`od_cred_bench_${i}`),
        enrolledBy: "bench",
      });
      rowids[i] = device.rowid;
    })
  );
  out.props = await timed(() =>
    inParallel(DEVICES, (i) => s.props.apply(rowids[i], [{ k: "site", v: `s${i % 10}`, at: 1 }]))
  );
  const now = Date.now();
  out.markSeenMany = await timed(() =>
    s.devices.markSeenMany(rowids.map((rowid) => ({ rowid, at: now, ip: "192.0.2.1" })))
  );
  await s.relays.heartbeat({ id: "relay-a", meshUrl: "http://a" });
  out.claimLinks = await timed(() =>
    inParallel(DEVICES, (i) => s.relays.claimLink(rowids[i], "relay-a"))
  );
  out.listAll = await timed(async () => {
    let after: string | undefined;
    let n = 0;
    do {
      const page = await s.devices.list({ accountId, after, limit: PAGE });
      await s.props.ofDevices(page.devices.map((d) => d.rowid));
      n += page.devices.length;
      after = page.next ?? undefined;
    } while (after);
    if (n !== DEVICES) throw new Error(`listed ${n} of ${DEVICES}`);
  });
  const filters = parseFilters(["site=s3", "on:state=online"]);
  out.listFiltered = await timed(async () => {
    const page = await s.devices.list({ accountId, filters, limit: PAGE });
    if (page.devices.length !== DEVICES / 10) throw new Error(`filtered ${page.devices.length}`);
  });
  // One subscription for all samples, as a relay holds it: SQLite's poll then runs steadily.
  const latencies: number[] = [];
  let waiting: { keyId: string; seen: () => void } | null = null;
  const unsubscribe = await other.subscribe((c) => {
    if (c.kind === "keys" && c.keyId === waiting?.keyId) waiting.seen();
  });
  for (let i = 0; i < FEED_SAMPLES; i++) {
    const key = await s.accounts.addKey("acme", "client");
    const arrived = new Promise<void>((seen) => (waiting = { keyId: key.id, seen }));
    latencies.push(
      await timed(async () => {
        await s.accounts.revokeKey(key.id);
        await arrived;
      }),
    );
  }
  unsubscribe();
  out.feedP50 = percentile(latencies, 50);
  return out;
}

/** Runs the store figures; returns nothing, prints JSON lines. */
export async function storeFigures(): Promise<void> {
  if (!havePostgres()) throw new Error("PostgreSQL 15 is not installed (scripts/test installs it)");
  const dir = await Deno.makeTempDir({ prefix: "od-bench-store-" });
  try {
    progress(`store: SQLite, ${DEVICES} devices`);
    const sqlite = await measure(() => openStore({ dataDir: `${dir}/data` }));
    await using pg = await startPostgres();
    const file = await passwordFile(dir, pg.password);
    progress(`store: PostgreSQL, ${DEVICES} devices`);
    const postgres = await measure(() => openStore(pg.tcpUrl, { passwordFile: file }));
    const per = (ms: number) => (ms * 1000) / DEVICES; // µs per device
    const rows: [string, string, (t: Timings) => number, string][] = [
      ["store enrol, 10 concurrent", "µs/device", (t) => per(t.enrol), "sqlite"],
      ["store props apply, 10 concurrent", "µs/device", (t) => per(t.props), "sqlite"],
      ["store markSeenMany, one batch", "ms/10k devices", (t) => t.markSeenMany, "sqlite"],
      ["store claimLink, 10 concurrent", "µs/device", (t) => per(t.claimLinks), "sqlite"],
      ["store list all + props, pages of 1000", "ms/10k devices", (t) => t.listAll, "sqlite"],
      ["store list filtered in SQL (1,000 match)", "ms", (t) => t.listFiltered, "sqlite"],
      ["store change feed commit to delivery p50", "ms", (t) => t.feedP50, "sqlite (250 ms poll)"],
    ];
    for (const [name, unit, pick, peer] of rows) {
      emit(figure(`${name} (postgres)`, pick(postgres), unit, peer, pick(sqlite)));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await storeFigures();
