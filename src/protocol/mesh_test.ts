import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import {
  decodeMeshOpen,
  encodeMeshHello,
  encodeMeshOpen,
  MeshHeader,
  type MeshOpen,
  openedBy,
  parseDial,
  parseMeshHello,
  windowOf,
} from "./mesh.ts";
import {
  decodeFrame,
  FrameType,
  HEADER_SIZE,
  MAX_WINDOW,
  ProtocolError,
  STREAM_WINDOW,
} from "./frame.ts";

const OPEN: MeshOpen = {
  device: 42,
  ref: "acme.pi-1",
  service: "ssh",
  from: "192.0.2.7",
  account: 3,
  key: "key-abc",
  owner: 1,
};

Deno.test("a mesh OPEN is an OPEN frame whose payload carries who and what", () => {
  const frame = encodeMeshOpen(7, OPEN);
  const decoded = decodeFrame(frame);
  assertEquals([decoded.type, decoded.stream], [FrameType.OPEN, 7]);
  assertEquals(decodeMeshOpen(frame), OPEN);
});

Deno.test("a mesh OPEN carries the client's growing window only when it is in range", () => {
  const growing = { ...OPEN, maxWindow: MAX_WINDOW };
  assertEquals(decodeMeshOpen(encodeMeshOpen(9, growing)), growing);
  for (const maxWindow of [STREAM_WINDOW, MAX_WINDOW + 1, 2.5e6 + 0.5, -1]) {
    assertEquals(decodeMeshOpen(encodeMeshOpen(9, { ...OPEN, maxWindow })), OPEN, `${maxWindow}`);
  }
  assertEquals(windowOf({ maxWindow: "16777216" }), undefined);
  assertEquals(windowOf(null), undefined);
  assertEquals(windowOf({ maxWindow: 4 * 1024 * 1024 }), 4 * 1024 * 1024);
});

Deno.test("decodeMeshOpen() rejects missing, mistyped and oversized fields and garbage", () => {
  const frameOf = (payload: string) => {
    const body = new TextEncoder().encode(payload);
    const f = new Uint8Array(HEADER_SIZE + body.length);
    f[0] = FrameType.OPEN;
    f.set(body, HEADER_SIZE);
    return f;
  };
  const cases = [
    "not json",
    "[1,2]",
    "null",
    JSON.stringify({ ...OPEN, device: 0 }),
    JSON.stringify({ ...OPEN, device: 1.5 }),
    JSON.stringify({ ...OPEN, device: "42" }),
    JSON.stringify({ ...OPEN, account: -1 }),
    JSON.stringify({ ...OPEN, key: "" }),
    JSON.stringify({ ...OPEN, ref: "x".repeat(301) }),
    JSON.stringify({ ...OPEN, service: 5 }),
    JSON.stringify({ device: 1 }),
  ];
  for (const payload of cases) {
    throws(() => decodeMeshOpen(frameOf(payload)), ProtocolError, payload);
  }
});

Deno.test("parseDial() takes only well-formed handshakes", () => {
  const good: Record<string, string> = {
    [MeshHeader.RELAY]: "relay-a",
    [MeshHeader.PEER]: "relay-b",
    [MeshHeader.TIME]: "1700000000000",
    [MeshHeader.NONCE]: "0123456789abcdef0123456789abcdef",
    [MeshHeader.PROOF]: "A".repeat(43),
  };
  assertEquals(parseDial(new Headers(good)), {
    relay: "relay-a",
    peer: "relay-b",
    time: 1700000000000,
    nonce: "0123456789abcdef0123456789abcdef",
    proof: "A".repeat(43),
  });
  const broken: [string, string][] = [
    [MeshHeader.RELAY, ""],
    [MeshHeader.RELAY, "a b"],
    [MeshHeader.PEER, "-x"],
    [MeshHeader.TIME, "soon"],
    [MeshHeader.NONCE, "short"],
    [MeshHeader.PROOF, "A".repeat(44)],
    [MeshHeader.PROOF, "A".repeat(42) + "="],
  ];
  for (const [name, value] of broken) {
    assertEquals(typeof parseDial(new Headers({ ...good, [name]: value })), "string", name);
  }
  assertEquals(typeof parseDial(new Headers({ authorization: "Bearer od_full_x" })), "string");
});

Deno.test("the acceptor's hello is a CONTROL message with its id and a proof", () => {
  const frame = decodeFrame(encodeMeshHello("relay-b", "B".repeat(43)));
  if (frame.type !== FrameType.CONTROL) throw new Error("not CONTROL");
  assertEquals(parseMeshHello(frame.message), {
    t: "mesh-hello",
    relay: "relay-b",
    proof: "B".repeat(43),
  });
  assertEquals(parseMeshHello({ t: "hello", relay: "relay-b", proof: "B".repeat(43) }), null);
  assertEquals(parseMeshHello({ t: "mesh-hello", relay: "relay-b", proof: 5 }), null);
  assertEquals(parseMeshHello({ t: "mesh-hello", relay: "", proof: "B".repeat(43) }), null);
});

Deno.test("dialers open odd stream ids, acceptors even ones", () => {
  assertEquals([1, 2, 3, 0xfffffffe].map(openedBy), ["dialer", "acceptor", "dialer", "acceptor"]);
});
