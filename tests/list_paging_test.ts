/**
 * Listing in pages: `GET /v1/devices?limit=&after=` with filters done by the relay, and
 * `od list` that pages through all of it (its --json streamed) or prints one page for scripts.
 * Own devices come by id, then shared ones by ref, and every device appears exactly once.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { od, tempDir } from "./_harness.ts";
import { addAccount, addKey, clientEnv, enrollByApi, relaySocket, startRelay } from "./_fleet.ts";
import { encodeControl } from "../src/protocol/frame.ts";

async function call(url: string, secret: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

Deno.test("od list pages through own and shared devices; filters run on the relay", async () => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const acme = await addAccount(relay.dataDir, "acme");
  const beta = await addAccount(relay.dataDir, "beta");
  const betaFull = (await addKey(relay.dataDir, "beta", "full")).key;
  const ids = Array.from({ length: 23 }, (_, i) => `dev-${String(i).padStart(2, "0")}`);
  const credentials = new Map<string, string>();
  for (const id of ids) credentials.set(id, await enrollByApi(relay, acme.deviceKey, id));
  for (const id of ["b-1", "b-2", "b-3"]) await enrollByApi(relay, beta.deviceKey, id);
  for (const [i, id] of ids.entries()) {
    const site = i % 5 === 0 ? "zurich" : "basel";
    const r = await call(relay.url, acme.clientKey, "PATCH", `/v1/devices/${id}/props`, {
      set: { site },
    });
    assertEquals(r.status, 200);
  }
  const shared = await call(relay.url, betaFull, "POST", "/v1/shares", {
    account: "acme",
    filters: [],
  });
  assertEquals(shared.status, 201, JSON.stringify(shared.body));
  // One device online, so state filters have something to tell apart.
  const link = await relaySocket(relay, credentials.get("dev-07")!, "/v1/device");
  if (!link.ws) throw new Error(`device link refused: ${link.status}`);
  link.ws.send(encodeControl({ t: "info", version: "t", services: ["ssh"], hostKeys: [] }));
  await link.answered;
  try {
    const env = clientEnv(relay, acme.clientKey, `${dir}/config`);
    const everything = [...ids, "beta.b-1", "beta.b-2", "beta.b-3"];

    const all = await od(["list", "--json"], { env });
    assertEquals(all.code, 0, all.stderr);
    assertEquals(JSON.parse(all.stdout).map((d: { ref: string }) => d.ref), everything);

    // Pages of 10 by hand, as a script would: 10, 10, then 6 (3 own, 3 shared).
    const seen: string[] = [];
    let after: string[] = [];
    for (const expected of [10, 10, 6]) {
      const page = await od(["list", "--json", "--limit", "10", ...after], { env });
      assertEquals(page.code, 0, page.stderr);
      const refs = JSON.parse(page.stdout).map((d: { ref: string }) => d.ref);
      assertEquals(refs.length, expected);
      seen.push(...refs);
      after = ["--after", refs.at(-1)];
    }
    assertEquals(seen, everything);

    const zurich = await call(relay.url, acme.clientKey, "GET", "/v1/devices?filter=site%3Dzurich");
    assertEquals(zurich.body.map((d: { id: string }) => d.id), [
      "dev-00",
      "dev-05",
      "dev-10",
      "dev-15",
      "dev-20",
    ]);
    const notBasel = await od(["list", "site!=basel"], { env });
    assertEquals(notBasel.stdout.split("\n").filter((l) => l.startsWith("dev-")).length, 5);
    assertEquals(notBasel.stdout.split("\n").filter((l) => l.startsWith("beta.")).length, 3);
    const online = await od(["list", "--json", "--state", "online", "site"], { env });
    assertEquals(JSON.parse(online.stdout).map((d: { id: string }) => d.id), ["dev-07"]);
    const none = await od(["list", "--json", "site=nowhere"], { env });
    assertEquals([none.code, none.stdout], [0, "[]\n"]);

    const bad = await call(relay.url, acme.clientKey, "GET", "/v1/devices?limit=0");
    assertEquals(bad.status, 400);
    const usage = await od(["list", "--after", "dev-01"], { env });
    assertEquals(usage.code, 2);
  } finally {
    link.ws.close();
  }
});
