import { deepStrictEqual as assertEquals, ok, throws } from "node:assert/strict";
import {
  encodeInfo,
  encodePropsBatch,
  encodePropsState,
  encodeRelayMessage,
  MAX_CHANGES,
  parseDaemonMessage,
  parseRelayMessage,
  type PendingChange,
  type PropsStateMessage,
} from "./control.ts";
import { decodeFrame, FrameType, MAX_DATA, MAX_FRAME_SIZE, ProtocolError } from "./frame.ts";
import { MAX_KEY, MAX_PROPS, MAX_TOMBSTONES, MAX_VALUE_BYTES, type PropChange } from "./props.ts";

const NOW = 1_800_000_000_000;

/** The characters that grow most when JSON-escaped, and the widest UTF-8 ones. */
const HOSTILE = ["\x01", "\x1f", '"', "\\", "\u2028", "\ud800", "\u{1f600}", "\x00", "é"];

/** A value of exactly MAX_VALUE_BYTES UTF-16 units of one character (or as many as fit). */
function fill(ch: string): string {
  return ch.repeat(Math.floor(MAX_VALUE_BYTES / ch.length));
}

function decodeControl(frame: Uint8Array): Record<string, unknown> {
  ok(frame.length <= MAX_FRAME_SIZE, `frame of ${frame.length} bytes`);
  const f = decodeFrame(frame);
  if (f.type !== FrameType.CONTROL) throw new Error("not a CONTROL frame");
  return f.message;
}

Deno.test("one worst-case property entry stays under a quarter of a frame", () => {
  // The bound the header of control.ts proves: 6 bytes per code unit, 64-byte key, 16 digits.
  const frames = encodePropsState([{ k: "k".repeat(MAX_KEY), v: fill("\x01"), at: 8.64e15 }], true);
  assertEquals(frames.length, 1);
  ok(frames[0].length < 24_700 + 64, `${frames[0].length} bytes`);
  ok(6 * MAX_VALUE_BYTES + 2 + MAX_KEY + 64 < MAX_DATA / 2);
});

for (const ch of HOSTILE) {
  Deno.test(`encodePropsState() splits ${JSON.stringify(ch)} values by their encoded size`, () => {
    const values: PropChange[] = Array.from({ length: MAX_PROPS + MAX_TOMBSTONES }, (_, i) => ({
      k: `key-${i}`,
      v: i % 7 === 0 ? null : fill(ch),
      at: NOW + i,
    }));
    const frames = encodePropsState(values, true);
    ok(frames.length > 1);
    const seen: Record<string, unknown> = {};
    frames.forEach((frame, i) => {
      const m = parseRelayMessage(decodeControl(frame)) as PropsStateMessage;
      assertEquals([m.full, m.last], [i === 0, i === frames.length - 1]);
      Object.assign(seen, m.props);
    });
    assertEquals(seen, Object.fromEntries(values.map((c) => [c.k, { v: c.v, at: c.at }])));
  });

  Deno.test(`encodePropsBatch() fits ${JSON.stringify(ch)} values and makes progress`, () => {
    const pending: PendingChange[] = Array.from({ length: 40 }, (_, i) => ({
      seq: Number.MAX_SAFE_INTEGER - 40 + i,
      k: `k${i}`,
      v: fill(ch),
      at: NOW,
    }));
    let sent = 0;
    while (sent < pending.length) {
      const batch = encodePropsBatch(pending.slice(sent))!;
      ok(batch.count >= 1);
      const m = parseDaemonMessage(decodeControl(batch.frame), NOW);
      assertEquals(m, {
        t: "props",
        seq: batch.seq,
        changes: pending.slice(sent, sent + batch.count).map(({ k, v, at }) => ({ k, v, at })),
      });
      sent += batch.count;
    }
  });
}

Deno.test("encodePropsState() of nothing is one full, last frame", () => {
  const frames = encodePropsState([], true);
  assertEquals(frames.length, 1);
  assertEquals(decodeControl(frames[0]), { t: "props-state", full: true, last: true, props: {} });
});

Deno.test("encodePropsBatch() of nothing is null", () => {
  assertEquals(encodePropsBatch([]), null);
});

Deno.test("an ack naming MAX_CHANGES of the longest keys fits one frame", () => {
  const rejected = Array.from({ length: MAX_CHANGES }, (_, i) => `${i}`.padEnd(MAX_KEY, "x"));
  const m = decodeControl(
    encodeRelayMessage({ t: "props-ack", seq: Number.MAX_SAFE_INTEGER, rejected }),
  );
  assertEquals(m.rejected, rejected);
});

Deno.test("encodeInfo() leaves out host keys that cannot fit instead of throwing", () => {
  const big = `ssh-rsa ${"A".repeat(16 * 1024 - 8)}`;
  const { frame, dropped } = encodeInfo({
    version: "0.1.0",
    services: ["ssh"],
    hostKeys: [...Array(20).fill(big), "ssh-ed25519 AAAA"],
    hostname: "h\x01".repeat(200),
  });
  const m = parseDaemonMessage(decodeControl(frame), NOW);
  ok(m?.t === "info");
  ok(dropped > 0 && m.hostKeys.length + dropped === 21);
});

const daemonCases: [string, Record<string, unknown>, unknown][] = [
  ["unknown type", { t: "future", x: 1 }, null],
  ["no type", {}, null],
  ["relay-only type", { t: "hello", device: "abc", account: "abc", now: 1 }, null],
  ["info", { t: "info", version: "0.1.0", services: ["ssh"], hostKeys: ["ssh-ed25519 AAAA c"] }, {
    t: "info",
    version: "0.1.0",
    services: ["ssh"],
    hostKeys: ["ssh-ed25519 AAAA"],
    hostname: "",
  }],
  ["info with a key of an unknown type", {
    t: "info",
    version: "1",
    services: [],
    hostKeys: ["bogus AAAA"],
  }, { t: "info", version: "1", services: [], hostKeys: [], hostname: "" }],
  ["info: version with a NUL", { t: "info", version: "0.1\x00", services: [] }, ProtocolError],
  ["info: version too long", { t: "info", version: "1".repeat(65), services: [] }, ProtocolError],
  ["info: services not a list", { t: "info", version: "1", services: "ssh" }, ProtocolError],
  ["info: bad service", { t: "info", version: "1", services: ["SSH!"] }, ProtocolError],
  ["info: 65 services", {
    t: "info",
    version: "1",
    services: Array.from({ length: 65 }, (_, i) => `s${i}`),
  }, ProtocolError],
  ["info: 17 host keys", {
    t: "info",
    version: "1",
    services: [],
    hostKeys: Array(17).fill("ssh-ed25519 AAAA"),
  }, ProtocolError],
  ["info: host key too long", {
    t: "info",
    version: "1",
    services: [],
    hostKeys: [`ssh-rsa ${"A".repeat(16 * 1024)}`],
  }, ProtocolError],
  [
    "info: hostname too long",
    { t: "info", version: "1", services: [], hostname: "h".repeat(256) },
    ProtocolError,
  ],
  ["props", {
    t: "props",
    seq: 5,
    changes: [{ k: "a", v: "b", at: NOW - 1 }, { k: "c", v: null, at: 0 }],
  }, {
    t: "props",
    seq: 5,
    changes: [{ k: "a", v: "b", at: NOW - 1 }, { k: "c", v: null, at: 0 }],
  }],
  ["props: a time far in the future is now", {
    t: "props",
    seq: 1,
    changes: [{ k: "a", v: "b", at: 1e308 }],
  }, {
    t: "props",
    seq: 1,
    changes: [{ k: "a", v: "b", at: NOW }],
  }],
  ["props: a fractional time is truncated", {
    t: "props",
    seq: 1,
    changes: [{ k: "a", v: null, at: 1.5 }],
  }, {
    t: "props",
    seq: 1,
    changes: [{ k: "a", v: null, at: 1 }],
  }],
  [
    "props: infinite time",
    { t: "props", seq: 1, changes: [{ k: "a", v: "b", at: Infinity }] },
    ProtocolError,
  ],
  [
    "props: negative time",
    { t: "props", seq: 1, changes: [{ k: "a", v: "b", at: -1 }] },
    ProtocolError,
  ],
  [
    "props: time as a string",
    { t: "props", seq: 1, changes: [{ k: "a", v: "b", at: "1" }] },
    ProtocolError,
  ],
  ["props: negative seq", { t: "props", seq: -1, changes: [] }, ProtocolError],
  ["props: fractional seq", { t: "props", seq: 0.5, changes: [] }, ProtocolError],
  ["props: changes not a list", { t: "props", seq: 1, changes: {} }, ProtocolError],
  ["props: too many changes", {
    t: "props",
    seq: 1,
    changes: Array(MAX_CHANGES + 1).fill({ k: "a", v: "b", at: 1 }),
  }, ProtocolError],
  [
    "props: key too long",
    { t: "props", seq: 1, changes: [{ k: "k".repeat(65), v: "b", at: 1 }] },
    ProtocolError,
  ],
  ["props: key with a control character", {
    t: "props",
    seq: 1,
    changes: [{ k: "a\x01", v: "b", at: 1 }],
  }, ProtocolError],
  [
    "props: key __proto__",
    { t: "props", seq: 1, changes: [{ k: "__proto__", v: "b", at: 1 }] },
    ProtocolError,
  ],
  ["props: value too long", {
    t: "props",
    seq: 1,
    changes: [{ k: "a", v: "x".repeat(4097), at: 1 }],
  }, ProtocolError],
  [
    "props: value a number",
    { t: "props", seq: 1, changes: [{ k: "a", v: 1, at: 1 }] },
    ProtocolError,
  ],
  ["props: change not an object", { t: "props", seq: 1, changes: ["a=b"] }, ProtocolError],
];

for (const [what, message, expected] of daemonCases) {
  Deno.test(`parseDaemonMessage(): ${what}`, () => {
    if (expected === ProtocolError) throws(() => parseDaemonMessage(message, NOW), ProtocolError);
    else assertEquals(parseDaemonMessage(message, NOW), expected);
  });
}

const relayCases: [string, Record<string, unknown>, unknown][] = [
  ["unknown type", { t: "future" }, null],
  ["daemon-only type", { t: "info", version: "1", services: [] }, null],
  ["hello", { t: "hello", device: "pi-1", account: "acme", now: NOW, extra: 1 }, {
    t: "hello",
    device: "pi-1",
    account: "acme",
    now: NOW,
  }],
  [
    "hello: now not a time",
    { t: "hello", device: "pi-1", account: "acme", now: 1e308 },
    ProtocolError,
  ],
  ["hello: bad device id", { t: "hello", device: "PI 1", account: "acme", now: 1 }, ProtocolError],
  ["props-state", {
    t: "props-state",
    full: true,
    last: false,
    props: { a: { v: "b", at: 1 }, c: { v: null, at: 2 } },
  }, {
    t: "props-state",
    full: true,
    last: false,
    props: { a: { v: "b", at: 1 }, c: { v: null, at: 2 } },
  }],
  [
    "props-state: props a list",
    { t: "props-state", full: true, last: true, props: [] },
    ProtocolError,
  ],
  ["props-state: full missing", { t: "props-state", last: true, props: {} }, ProtocolError],
  ["props-state: bad key", {
    t: "props-state",
    full: true,
    last: true,
    props: { "a b": { v: "1", at: 1 } },
  }, ProtocolError],
  ["props-state: value too long", {
    t: "props-state",
    full: true,
    last: true,
    props: { a: { v: "x".repeat(4097), at: 1 } },
  }, ProtocolError],
  ["props-state: far-future time", {
    t: "props-state",
    full: true,
    last: true,
    props: { a: { v: "x", at: 1e308 } },
  }, ProtocolError],
  ["props-ack", { t: "props-ack", seq: 3, rejected: ["a"] }, {
    t: "props-ack",
    seq: 3,
    rejected: ["a"],
  }],
  ["props-ack without rejected", { t: "props-ack", seq: 3 }, {
    t: "props-ack",
    seq: 3,
    rejected: [],
  }],
  ["props-ack: rejected not strings", { t: "props-ack", seq: 3, rejected: [1] }, ProtocolError],
  ["props-ack: seq missing", { t: "props-ack", rejected: [] }, ProtocolError],
  ["renamed", { t: "renamed", device: "pi-2" }, { t: "renamed", device: "pi-2" }],
  ["renamed: not an id", { t: "renamed", device: "x" }, ProtocolError],
  ["drain", { t: "drain", retryInMs: 4200 }, { t: "drain", retryInMs: 4200 }],
  ["drain now", { t: "drain", retryInMs: 0 }, { t: "drain", retryInMs: 0 }],
  ["drain at the limit", { t: "drain", retryInMs: 3_600_000 }, {
    t: "drain",
    retryInMs: 3_600_000,
  }],
  ["drain: past an hour", { t: "drain", retryInMs: 3_600_001 }, ProtocolError],
  ["drain: negative", { t: "drain", retryInMs: -1 }, ProtocolError],
  ["drain: not a number", { t: "drain", retryInMs: "5" }, ProtocolError],
];

for (const [what, message, expected] of relayCases) {
  Deno.test(`parseRelayMessage(): ${what}`, () => {
    if (expected === ProtocolError) throws(() => parseRelayMessage(message), ProtocolError);
    else assertEquals(parseRelayMessage(message), expected);
  });
}

Deno.test("host keys beyond 32 KiB in all are not kept, so every OPENED frame fits", () => {
  const key = `ssh-rsa ${"A".repeat(10_000)}`;
  const m = parseDaemonMessage({
    t: "info",
    version: "1",
    services: [],
    hostKeys: Array(6).fill(key),
  }, NOW);
  ok(m?.t === "info");
  assertEquals(m.hostKeys.length, 3);
  const { dropped } = encodeInfo({
    version: "1",
    services: [],
    hostKeys: Array(6).fill(key),
    hostname: "",
  });
  assertEquals(dropped, 3);
});
