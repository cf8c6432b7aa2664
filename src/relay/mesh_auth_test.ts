import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { MeshKey } from "./mesh_auth.ts";
import { MeshHeader, parseDial } from "../protocol/mesh.ts";

const SECRET = "0123456789abcdef0123456789abcdef";

async function dialOf(key: MeshKey, from = "relay-a", to = "relay-b") {
  const { headers, nonce } = await key.dialHeaders(from, to);
  const dial = parseDial(new Headers(headers));
  if (typeof dial === "string") throw new Error(dial);
  return { dial, nonce, headers };
}

Deno.test("a dial proves the key once; a replay, a wrong key, peer or time does not", async () => {
  const a = new MeshKey(SECRET);
  const b = new MeshKey(SECRET);
  const { dial } = await dialOf(a);
  assertEquals(await b.checkDial(dial, "relay-b"), null);
  match((await b.checkDial(dial, "relay-b"))!, /replayed/);
  match((await b.checkDial((await dialOf(a)).dial, "relay-c"))!, /not relay-b/);
  const wrong = new MeshKey("another key, as long as the other");
  match((await b.checkDial((await dialOf(wrong)).dial, "relay-b"))!, /does not match/);
  const { headers } = await a.dialHeaders("relay-a", "relay-b");
  const late = parseDial(
    new Headers({
      ...headers,
      [MeshHeader.TIME]: String(Date.now() - 6 * 60_000),
    }),
  );
  if (typeof late === "string") throw new Error(late);
  match((await b.checkDial(late, "relay-b"))!, /more than 5 minutes/);
  // A time changed after signing breaks the proof.
  const signedAt = Number(headers[MeshHeader.TIME]);
  const forged = parseDial(new Headers({ ...headers, [MeshHeader.TIME]: String(signedAt + 1000) }));
  if (typeof forged === "string") throw new Error(forged);
  match((await b.checkDial(forged, "relay-b"))!, /does not match/);
});

Deno.test("the acceptor's answer binds the dialer's nonce and needs the key", async () => {
  const a = new MeshKey(SECRET);
  const b = new MeshKey(SECRET);
  const { dial, nonce } = await dialOf(a);
  const proof = await b.answer("relay-b", "relay-a", dial.nonce);
  ok(await a.checkAnswer("relay-b", "relay-a", nonce, proof));
  ok(!(await a.checkAnswer("relay-b", "relay-a", "f".repeat(32), proof)), "another nonce");
  ok(!(await a.checkAnswer("relay-c", "relay-a", nonce, proof)), "another relay");
  const wrong = await new MeshKey("another key, as long as the other").answer(
    "relay-b",
    "relay-a",
    nonce,
  );
  ok(!(await a.checkAnswer("relay-b", "relay-a", nonce, wrong)), "another key");
});
