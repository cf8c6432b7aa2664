/**
 * Role checks, account separation and sharing, exercised on the relay's HTTP and WebSocket
 * endpoints directly with every kind of key; revocation of keys and shares closing live pipes;
 * and the audit rows all of it leaves.
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { od, Proc, tempDir } from "./_harness.ts";
import {
  addAccount,
  addKey,
  clientEnv,
  echoServer,
  type Relay,
  relaySocket,
  startDaemon,
  startRelay,
} from "./_fleet.ts";
import { generateCredential } from "../src/protocol/keys.ts";

/** Calls the relay with a bearer secret; returns the status and parsed body. */
async function call(relay: Relay, secret: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${relay.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** Opens a WebSocket; resolves to the HTTP status of a refusal, or 101 if it opened. */
async function wsStatus(relay: Relay, secret: string, path: string): Promise<number> {
  const { ws, status } = await relaySocket(relay, secret, path);
  if (ws) {
    const closed = new Promise((r) => (ws.onclose = r));
    ws.close();
    await closed;
  }
  return status;
}

/** Starts `od pipe` to echo that keeps sending; `ended` resolves with its exit and stderr. */
function livePipe(env: Record<string, string>, device: string) {
  const proc = new Proc(`pipe ${device}`, ["pipe", device, "echo"], { env, stdin: "piped" });
  const writer = proc.child.stdin.getWriter();
  const timer = setInterval(() => writer.write(new Uint8Array(100)).catch(() => {}), 50);
  const ended = proc.output().then((out) => {
    clearInterval(timer);
    writer.close().catch(() => {});
    return { ...out, at: Date.now() };
  });
  return { proc, ended, stop: () => proc.stop() };
}

Deno.test("every role sees and reaches exactly what it may", async (t) => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const a = await addAccount(relay.dataDir, "acme");
  const b = await addAccount(relay.dataDir, "beta");
  const aFull = (await addKey(relay.dataDir, "acme", "full")).key;
  const bFull = (await addKey(relay.dataDir, "beta", "full")).key;
  await using echo = echoServer();
  const daemon = await startDaemon(relay, {
    key: a.deviceKey,
    id: "edge-1",
    stateDir: `${dir}/s1`,
    services: { echo: echo.port, web: echo.port },
  });
  const cred = generateCredential(); // a second, offline device of acme
  assertEquals(
    (await call(relay, a.deviceKey, "POST", "/v1/enroll", { credential: cred, id: "edge-2" }))
      .status,
    201,
  );
  const bEnv = clientEnv(relay, b.clientKey, `${dir}/cfg-b`);
  try {
    await t.step("HTTP endpoints refuse what a role may not do", async () => {
      const cases: [string, string, string, string, unknown, number][] = [
        ["device key lists", a.deviceKey, "GET", "/v1/devices", undefined, 403],
        ["device key reads a device", a.deviceKey, "GET", "/v1/devices/edge-1", undefined, 403],
        ["device key edits props", a.deviceKey, "PATCH", "/v1/devices/edge-1/props", {
          set: { x: "1" },
        }, 403],
        ["device key follows events", a.deviceKey, "GET", "/v1/events", undefined, 403],
        ["device credential lists", cred, "GET", "/v1/devices", undefined, 403],
        ["client key enrols", a.clientKey, "POST", "/v1/enroll", {
          credential: generateCredential(),
        }, 403],
        [
          "client key renames",
          a.clientKey,
          "POST",
          "/v1/devices/edge-1/rename",
          { name: "x-1" },
          403,
        ],
        ["client key removes", a.clientKey, "DELETE", "/v1/devices/edge-2", undefined, 403],
        ["client key lists keys", a.clientKey, "GET", "/v1/keys", undefined, 403],
        ["client key adds a key", a.clientKey, "POST", "/v1/keys", { role: "full" }, 403],
        ["client key shares", a.clientKey, "POST", "/v1/shares", { account: "beta" }, 403],
        ["client key reads audit", a.clientKey, "GET", "/v1/audit", undefined, 403],
        [
          "other account reads a device",
          b.clientKey,
          "GET",
          "/v1/devices/acme.edge-1",
          undefined,
          404,
        ],
        ["other account edits props", bFull, "PATCH", "/v1/devices/acme.edge-1/props", {
          set: { x: "1" },
        }, 404],
        ["other account removes", bFull, "DELETE", "/v1/devices/acme.edge-2", undefined, 404],
        [
          "other account revokes a key",
          bFull,
          "DELETE",
          `/v1/keys/${await keyId(relay, aFull)}`,
          undefined,
          404,
        ],
        ["no key", "", "GET", "/v1/devices", undefined, 401],
        ["unknown key", `od_client_${"A".repeat(43)}`, "GET", "/v1/devices", undefined, 401],
      ];
      for (const [what, secret, method, path, body, status] of cases) {
        const res = await call(relay, secret, method, path, body);
        assertEquals(res.status, status, `${what}: ${JSON.stringify(res.body)}`);
        ok(typeof res.body?.error === "string", `${what}: one sentence`);
      }
      assertEquals((await call(relay, b.clientKey, "GET", "/v1/devices")).body, []);
    });

    await t.step("WebSocket endpoints refuse what a role may not do", async () => {
      const tunnel = "/v1/tunnel?device=edge-1&service=echo";
      assertEquals(await wsStatus(relay, a.deviceKey, tunnel), 403);
      assertEquals(await wsStatus(relay, cred, tunnel), 403);
      assertEquals(
        await wsStatus(relay, b.clientKey, "/v1/tunnel?device=acme.edge-1&service=echo"),
        404,
      );
      assertEquals(await wsStatus(relay, a.clientKey, "/v1/device"), 401);
      assertEquals(await wsStatus(relay, a.deviceKey, "/v1/device"), 401);
      assertEquals(await wsStatus(relay, a.clientKey, tunnel), 101);
    });

    let shareId = 0;
    await t.step("after sharing edge-1's echo, beta sees and reaches only that", async () => {
      const share = await call(relay, aFull, "POST", "/v1/shares", {
        account: "beta",
        device: "edge-1",
        services: ["echo"],
      });
      assertEquals(share.status, 201, JSON.stringify(share.body));
      shareId = share.body.id;
      const list = await call(relay, b.clientKey, "GET", "/v1/devices");
      assertEquals(list.body.map((d: { ref: string }) => d.ref), ["acme.edge-1"]);
      assertEquals(
        await wsStatus(relay, b.clientKey, "/v1/tunnel?device=acme.edge-1&service=echo"),
        101,
      );
      assertEquals(
        await wsStatus(relay, b.clientKey, "/v1/tunnel?device=acme.edge-1&service=web"),
        403,
      );
      assertEquals(
        await wsStatus(relay, b.clientKey, "/v1/tunnel?device=acme.edge-2&service=echo"),
        404,
      );
      assertEquals(
        (await call(relay, bFull, "PATCH", "/v1/devices/acme.edge-1/props", { set: { x: "1" } }))
          .status,
        403,
      );
      const out = await od(["pipe", "acme.edge-1", "echo"], { env: bEnv, stdin: "shared" });
      assertEquals([out.code, out.stdout], [0, "shared"], out.stderr);
    });

    await t.step("removing the share closes beta's live pipe within 5 s", async () => {
      const pipe = livePipe(bEnv, "acme.edge-1");
      await new Promise((r) => setTimeout(r, 500));
      const removedAt = Date.now();
      assertEquals((await call(relay, aFull, "DELETE", `/v1/shares/${shareId}`)).status, 200);
      const end = await pipe.ended;
      ok(end.at - removedAt < 5000, `pipe ended after ${end.at - removedAt} ms`);
      ok(end.code !== 0);
      match(end.stderr, /the share was removed/);
      assertEquals(
        await wsStatus(relay, b.clientKey, "/v1/tunnel?device=acme.edge-1&service=echo"),
        404,
      );
    });

    await t.step("revoking a key (API or od admin) closes its live pipe within 5 s", async () => {
      for (const how of ["api", "admin"]) {
        const added = await call(relay, aFull, "POST", "/v1/keys", { role: "client", label: how });
        const env = clientEnv(relay, added.body.key, `${dir}/cfg-${how}`);
        const pipe = livePipe(env, "edge-1");
        await new Promise((r) => setTimeout(r, 500));
        const revokedAt = Date.now();
        if (how === "api") {
          assertEquals(
            (await call(relay, aFull, "DELETE", `/v1/keys/${added.body.id}`)).status,
            200,
          );
        } else {
          assertEquals(
            (await od(["admin", "--data", relay.dataDir, "key", "revoke", added.body.id])).code,
            0,
          );
        }
        const end = await pipe.ended;
        ok(end.at - revokedAt < 5000, `${how}: pipe ended after ${end.at - revokedAt} ms`);
        match(end.stderr, /the key was revoked/);
        assertEquals((await call(relay, added.body.key, "GET", "/v1/devices")).status, 401);
      }
    });

    await t.step("the audit log holds a row for each, with the right outcome", async () => {
      await new Promise((r) => setTimeout(r, 1500)); // rows are written once a second
      const rows = (await call(relay, aFull, "GET", "/v1/audit")).body as Record<string, unknown>[];
      const has = (pred: (r: Record<string, unknown>) => boolean, what: string) =>
        ok(rows.some(pred), `no audit row for ${what}`);
      has(
        (r) => r.action === "list" && r.result === "refused" && r.key !== null,
        "a device key listing",
      );
      has(
        (r) => r.action === "tunnel" && r.result === "refused" && r.account === "beta",
        "beta refused",
      );
      has(
        (r) =>
          r.action === "tunnel" && r.result === "ok" && r.account === "beta" &&
          (r.bytesUp as number) > 0,
        "beta's shared tunnel",
      );
      has(
        (r) =>
          r.action === "tunnel" && r.result === "reset" && r.reason === "the share was removed",
        "share removal",
      );
      assertEquals(
        rows.filter((r) => r.action === "tunnel" && r.reason === "the key was revoked").length,
        2,
      );
      has((r) => r.action === "share-add" && r.result === "ok", "the share");
      has((r) => r.action === "key-revoke" && r.result === "ok", "the API revocation");
      const other = (await call(relay, bFull, "GET", "/v1/audit")).body as Record<
        string,
        unknown
      >[];
      ok(
        other.every((r) => r.account === "beta" || r.owner === "beta"),
        "beta sees only its own rows",
      );
    });
  } finally {
    await daemon.stop();
  }
});

async function keyId(relay: Relay, fullKey: string): Promise<string> {
  return (await call(relay, fullKey, "GET", "/v1/keys")).body[0].id;
}
