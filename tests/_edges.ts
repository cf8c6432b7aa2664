/**
 * Generators for the edge test: a seeded PRNG, and values at and just beyond every limit,
 * built from the characters that grow most when JSON-escaped (controls ×6, quotes and
 * backslashes ×2, lone surrogates ×6 per unit) or are widest in UTF-8 (U+2028, 4-byte
 * characters), plus malformed shapes for every request body and CONTROL message.
 */
import { MAX_KEY, MAX_VALUE_BYTES } from "../src/protocol/props.ts";
import { generateCredential } from "../src/protocol/keys.ts";
import { MAX_DATA } from "../src/protocol/frame.ts";

const jsonBytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value)).length;

/** A small seeded PRNG (mulberry32), so a failing run can be repeated with its seed. */
export class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  /** A float in [0, 1). */
  next(): number {
    let t = (this.#state += 0x6d2b79f5);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** One of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** Characters that grow most when encoded, or are refused: each with its UTF-8 size. */
export const HOSTILE_CHARS: readonly [string, number][] = [
  ["\x01", 1],
  ["\x1f", 1],
  ["\n", 1],
  ['"', 1],
  ["\\", 1],
  ["\u2028", 3],
  ["\u{1f600}", 4],
  ["é", 2],
  ["\ud800", 3], // a lone surrogate: TextEncoder counts U+FFFD
  ["\x00", 1],
  ["x", 1],
];

/** A string of about `bytes` UTF-8 bytes of one hostile character, padded with "x". */
export function filled(rng: Rng, bytes: number): string {
  const [ch, width] = rng.pick(HOSTILE_CHARS);
  const n = Math.floor(bytes / width);
  return ch.repeat(n) + "x".repeat(bytes - n * width);
}

/** A mix of hostile characters of about `bytes` bytes. */
export function mixed(rng: Rng, bytes: number): string {
  let out = "";
  let size = 0;
  while (size < bytes) {
    const [ch, width] = rng.pick(HOSTILE_CHARS);
    if (size + width > bytes) break;
    out += ch;
    size += width;
  }
  return out;
}

/**
 * A value the relay must store and push as it is: at or just under the limit, of characters
 * that grow most when encoded (but no NUL or lone surrogate, which are refused).
 */
export function storableValue(rng: Rng): string {
  const bytes = rng.pick([1, MAX_VALUE_BYTES - 1, MAX_VALUE_BYTES]);
  const chars = HOSTILE_CHARS.filter(([ch]) => ch !== "\x00" && ch !== "\ud800");
  const [ch, width] = rng.pick(chars);
  const n = Math.floor(bytes / width);
  return ch.repeat(n) + "x".repeat(bytes - n * width);
}

/** A property value at, under or beyond the 4 KiB limit. */
export function value(rng: Rng): string {
  const bytes = rng.pick([0, 1, 7, 100, MAX_VALUE_BYTES - 1, MAX_VALUE_BYTES, MAX_VALUE_BYTES + 1]);
  return rng.chance(0.7) ? filled(rng, bytes) : mixed(rng, bytes);
}

const KEY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-";

/** A property key: valid, at and beyond its length limit, reserved, or hostile. */
export function key(rng: Rng): string {
  switch (rng.int(8)) {
    case 0:
      return rng.pick(["__proto__", "constructor", "toString", "on:state", "on:x", "", "-"]);
    case 1:
      return Array.from({ length: MAX_KEY }, () => rng.pick([...KEY_CHARS])).join("");
    case 2:
      return "k".repeat(MAX_KEY + 1);
    case 3:
      return `k${mixed(rng, 1 + rng.int(8))}`;
    default:
      return `edge-${rng.int(40)}`; // few distinct keys, so sets and removals meet
  }
}

/** A JSON value of a random type, for fields that expect something else. */
export function wrongType(rng: Rng): unknown {
  return rng.pick([
    null,
    0,
    -1,
    0.5,
    1e308,
    true,
    "",
    "x",
    [],
    ["a"],
    {},
    { a: 1 },
    [[[[]]]],
    mixed(rng, 64),
  ]);
}

/** A device reference for a path: names, shared forms, hostile text, malformed escapes. */
export function deviceParam(rng: Rng, existing: readonly string[]): string {
  switch (rng.int(6)) {
    case 0:
      return rng.pick(["%", "%zz", "%E0%A4%A", "%00", "a%2Fb"]); // raw, some malformed
    case 1:
      return percentEncode(mixed(rng, 1 + rng.int(300)));
    case 2:
      return rng.pick(["beta.edge-1", `acme.${rng.pick(existing)}`, "nope-1", "x", "a".repeat(51)]);
    default:
      return rng.pick(existing);
  }
}

/** Every byte of the UTF-8 of `text` as %XX (encodeURIComponent refuses lone surrogates). */
function percentEncode(text: string): string {
  return [...new TextEncoder().encode(text)].map((b) => `%${b.toString(16).padStart(2, "0")}`)
    .join("");
}

/** A query string of hostile parameters the routes read. */
export function query(rng: Rng): string {
  const params = new URLSearchParams();
  for (const name of ["limit", "since", "device", "force", "type", "service", "follow"]) {
    if (!rng.chance(0.3)) continue;
    params.set(
      name,
      rng.pick(["0.5", "-1", "0", "1", "100001", "1e308", "NaN", "", mixed(rng, 40)]),
    );
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

/** A body for `route` (by its action): well-formed with hostile values, or malformed. */
export function body(rng: Rng, action: string): unknown {
  if (rng.chance(0.1)) return wrongType(rng);
  if (rng.chance(0.05)) return Object.fromEntries([[key(rng), wrongType(rng)]]);
  const any = () => (rng.chance(0.15) ? wrongType(rng) : undefined);
  switch (action) {
    case "props": {
      // fromEntries defines "__proto__" as an own key, as JSON.parse does on the relay.
      const set = Object.fromEntries(
        Array.from({ length: rng.int(6) }, () => [
          key(rng),
          rng.chance(0.9) ? value(rng) : wrongType(rng),
        ]),
      );
      const rm = Array.from(
        { length: rng.int(4) },
        () => (rng.chance(0.9) ? key(rng) : wrongType(rng)),
      );
      return { set: any() ?? set, rm: any() ?? rm };
    }
    case "share-add":
      return {
        account: rng.pick(["beta", "acme", "nope-1", mixed(rng, 20), wrongType(rng)]),
        device: rng.pick([undefined, null, "edge-1", "acme.edge-1", wrongType(rng)]),
        filters: any() ??
          Array.from(
            { length: rng.int(3) },
            () => rng.pick([key(rng), `${key(rng)}=${value(rng)}`]),
          ),
        services: any() ??
          Array.from(
            { length: rng.int(3) },
            () => rng.pick(["ssh", "echo", "SSH", mixed(rng, 40)]),
          ),
      };
    case "key-add":
      return {
        role: rng.pick(["client", "device", "full", "admin", wrongType(rng)]),
        label: rng.chance(0.5) ? mixed(rng, rng.pick([10, 200, 201])) : any(),
      };
    case "rename":
      return { name: rng.pick(["edge-x", "a".repeat(51), mixed(rng, 20), wrongType(rng)]) };
    case "enroll":
    case "clone":
      return {
        credential: rng.pick([generateCredential(), "od_cred_x", mixed(rng, 50), wrongType(rng)]),
        id: rng.pick([undefined, null, `fz-${rng.int(1e9)}`, "x", mixed(rng, 20), wrongType(rng)]),
        fingerprint: rng.pick([
          undefined,
          "F".repeat(16),
          "F".repeat(129),
          mixed(rng, 40),
          wrongType(rng),
        ]),
      };
    default:
      return rng.chance(0.5) ? {} : { x: value(rng) };
  }
}

/** A CONTROL message a device could send: valid props with hostile values, or malformed. */
export function deviceMessage(
  rng: Rng,
  seq: number,
): { message: Record<string, unknown>; valid: boolean } {
  const change = () => ({
    k: rng.chance(0.9)
      ? `edge-${rng.int(40)}`
      : rng.pick(["on:state", "constructor", "k".repeat(64)]),
    v: rng.chance(0.2) ? null : value(rng).slice(0, MAX_VALUE_BYTES), // within the shape's bound
    at: rng.pick([Date.now(), 0, 1, 1e308, Number.MAX_SAFE_INTEGER, 8.64e15, 0.5]),
  });
  switch (rng.int(10)) {
    case 0:
      return {
        message: {
          t: rng.pick(["hello", "props-state", "props-ack", "future", ""]),
          x: wrongType(rng),
        },
        valid: true,
      };
    case 1:
      return {
        message: {
          t: "info",
          version: rng.pick(["1.0", "x".repeat(64)]),
          services: ["ssh"],
          hostKeys: [`ssh-ed25519 ${"A".repeat(rng.int(100))}`],
          hostname: mixed(rng, 255),
        },
        valid: true,
      };
    case 2: {
      const broken = rng.pick<Record<string, unknown>>([
        { t: "props", seq: -1, changes: [] },
        { t: "props", seq, changes: "x" },
        { t: "props", seq, changes: [{ k: "k".repeat(65), v: "x", at: 1 }] },
        { t: "props", seq, changes: [{ k: "a", v: 1, at: 1 }] },
        { t: "props", seq, changes: [{ k: "a", v: "x", at: -1 }] },
        { t: "props", seq, changes: [{ k: "a", v: "x".repeat(4097), at: 1 }] },
        {
          t: "props",
          seq,
          changes: [{ k: `a${rng.pick(["\x01", " ", '"', "\u2028", "é"])}`, v: "x", at: 1 }],
        },
        { t: "info", version: "1\x00", services: [] },
        { t: "info", version: "1", services: rng.pick([{}, 1, null, "ssh", [1], ["SSH"]]) },
      ]);
      return { message: broken, valid: false };
    }
    default: {
      const changes = Array.from({ length: 1 + rng.int(8) }, change);
      // As many as one frame holds: a daemon cuts its batches by their encoded size too.
      while (changes.length > 1 && jsonBytes({ t: "props", seq, changes }) > MAX_DATA) {
        changes.pop();
      }
      return { message: { t: "props", seq, changes }, valid: true };
    }
  }
}
