import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { LocalProps } from "./local_props.ts";
import type { PropChange } from "../protocol/props.ts";

async function withDir(fn: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "od-local-props-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const size = (dir: string) => Deno.statSync(`${dir}/props.log`).size;
const state = (n: number, v = "x", at = 1): PropChange[] =>
  Array.from({ length: n }, (_, i) => ({ k: `k${i}`, v, at }));

Deno.test("LocalProps: queued changes show at once and become synced when acknowledged", () =>
  withDir((dir) => {
    const props = new LocalProps(dir);
    props.applyRelay([{ k: "site", v: "zurich", at: 1 }], true);
    const queued = props.append([{ k: "site", v: "basel", at: 2 }, { k: "x", v: "1", at: 2 }]);
    assertEquals(props.view(), { site: "basel", x: "1" });
    props.ack(queued[1].seq, ["x"]);
    assertEquals(props.pending(), []);
    assertEquals(props.view(), { site: "basel" }, "a rejected change is dropped");
    assertEquals(new LocalProps(dir).view(), { site: "basel" }, "another process reads the same");
  }));

Deno.test("LocalProps: a full sync writes only the keys that changed", () =>
  withDir((dir) => {
    const props = new LocalProps(dir);
    props.applyRelay(state(500, "v".repeat(100)), true);
    const before = size(dir);
    const next = state(500, "v".repeat(100));
    next[7] = { k: "k7", v: "changed", at: 2 };
    props.applyRelay(next, true);
    const grew = size(dir) - before;
    ok(grew > 0 && grew < 200, `one changed key appended ${grew} bytes`);
    props.applyRelay(next.slice(1), true);
    assertEquals(Object.keys(props.view()).length, 499, "a key missing from a full state goes");
  }));

Deno.test("LocalProps: a record torn by a crash is skipped and later ones still count", () =>
  withDir((dir) => {
    const props = new LocalProps(dir);
    props.append([{ k: "a", v: "1", at: 1 }]);
    const whole = size(dir);
    props.append([{ k: "b", v: "2", at: 1 }]);
    Deno.truncateSync(`${dir}/props.log`, whole + 10); // kill -9 in the middle of a write
    const after = new LocalProps(dir);
    assertEquals(after.view(), { a: "1" });
    after.append([{ k: "c", v: "3", at: 1 }]);
    assertEquals(new LocalProps(dir).view(), { a: "1", c: "3" });
  }));

Deno.test("LocalProps: the journal is compacted as it grows, keeping state and seqs", () =>
  withDir((dir) => {
    const props = new LocalProps(dir);
    let last = 0;
    for (let i = 0; i < 2000; i++) {
      const [c] = props.append([{ k: `k${i % 10}`, v: "y".repeat(50), at: i }]);
      ok(c.seq > last, "sequence numbers keep increasing");
      last = c.seq;
      props.ack(c.seq);
    }
    ok(size(dir) < 64 * 1024 * 2, `the journal is ${size(dir)} bytes after 4,000 records`);
    assertEquals(Object.keys(new LocalProps(dir).view()).length, 10);
    const [next] = props.append([{ k: "z", v: "1", at: 1 }]);
    ok(next.seq > last);
  }));

Deno.test("LocalProps: od 0.1's props.json and queue are converted once", () =>
  withDir((dir) => {
    Deno.writeTextFileSync(
      `${dir}/props.json`,
      JSON.stringify({ props: { site: { v: "zurich", at: 1 } } }),
    );
    Deno.writeTextFileSync(
      `${dir}/props-pending.jsonl`,
      JSON.stringify({ seq: 5, k: "x", v: "1", at: 2 }) + '\n{"seq":6,"k"',
    );
    const props = new LocalProps(dir);
    assertEquals(props.view(), { site: "zurich", x: "1" });
    assertEquals(props.pending().map((c) => c.seq), [5]);
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["props.lock", "props.log"]);
  }));

Deno.test("LocalProps: a removal of a key the device does not have stores nothing", () =>
  withDir((dir) => {
    const props = new LocalProps(dir);
    props.edit({ a: "1" }, [], 0);
    props.edit({}, ["a", "never", "constructor"], 0);
    assertEquals(props.pending().map((c) => [c.k, c.v]), [["a", "1"], ["a", null]]);
  }));
