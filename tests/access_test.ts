/**
 * Role checks, account separation and sharing, exercised on the relay's HTTP and WebSocket
 * endpoints directly with every kind of key and with dashboard sessions of client and full keys;
 * revocation of keys and shares closing live pipes; and the audit rows all of it leaves.
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { eventually, od, Proc, tempDir } from "./_harness.ts";
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
import { acceptsSession, type Route, ROUTES } from "../src/relay/routes.ts";
import { CSRF_HEADER, type SessionInfo } from "../src/protocol/dashboard.ts";

/** Who calls: a kind of key, a device credential, a dashboard session, or nobody. */
type Caller =
  | "none"
  | "unknown"
  | "device"
  | "client"
  | "full"
  | "device-credential"
  | "client-session"
  | "full-session";

/** Pages that answer a client key's session 403 (the shell then says why). */
const FULL_PAGES = ["/keys", "/audit"];

/** Whether a route admits a caller. */
function admits(route: Route, caller: Caller): boolean {
  const { access } = route;
  if (caller.endsWith("-session")) {
    const role = caller.replace("-session", "");
    if (access === "none") return !(FULL_PAGES.includes(route.path) && role === "client");
    if (access === "session") return true;
    if (typeof access !== "object") return false;
    return acceptsSession(route) && (access as readonly string[]).includes(role);
  }
  if (access === "none") return true;
  if (access === "device-credential") return caller === "device-credential";
  if (access === "mesh-peer") return false; // relays only, by the mesh key (tests/mesh_test.ts)
  if (access === "session") return false;
  return (access as readonly string[]).includes(caller);
}

/** A dashboard session: the cookie to send and the CSRF token its page would send. */
interface TestSession {
  cookie: string;
  csrf: string;
}

/** Signs in to the dashboard with `key`, as the page does. */
async function session(relay: Relay, key: string): Promise<TestSession> {
  const res = await fetch(`${relay.url}/v1/session`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, origin: relay.url },
  });
  const info = await res.json() as SessionInfo;
  assertEquals(res.status, 201, JSON.stringify(info));
  const cookie = res.headers.get("set-cookie")!.split(";")[0];
  return { cookie, csrf: info.csrf };
}

/** Headers of a request made by the dashboard's page with `s`. */
function pageHeaders(relay: Relay, s: TestSession): Record<string, string> {
  return { cookie: s.cookie, origin: relay.url, [CSRF_HEADER]: s.csrf };
}

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
  // Data echoed back means the tunnel is open end to end.
  const flowing = () => eventually("the pipe to carry data", () => proc.stdout.length > 0);
  return { proc, ended, flowing, stop: () => proc.stop() };
}

Deno.test("every role sees and reaches exactly what it may", async (t) => {
  await using dir = await tempDir();
  // Trusting loopback as a proxy lets the route walk below come from many addresses.
  await using relay = await startRelay(`${dir}/data`, {
    extraArgs: ["--trusted-proxy", "127.0.0.1"],
  });
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
    await t.step("the role matrix is the one the README documents", () => {
      const matrix = Object.fromEntries(
        ROUTES.map((r) => [
          `${r.method} ${r.path}`,
          typeof r.access === "string" ? r.access : r.access.join("|"),
        ]),
      );
      assertEquals(matrix, {
        "GET /": "none",
        "GET /device/:device": "none",
        "GET /shares": "none",
        "GET /keys": "none",
        "GET /audit": "none",
        "GET /assets/app.js": "none",
        "GET /assets/app.css": "none",
        "POST /v1/session": "client|full",
        "GET /v1/session": "none",
        "DELETE /v1/session": "session",
        "GET /v1/health": "none",
        "GET /v1/device": "device-credential",
        "GET /v1/mesh": "mesh-peer",
        "POST /v1/clone": "device-credential",
        "POST /v1/enroll": "device|full",
        "GET /v1/whoami": "client|device|full",
        "GET /v1/tunnel": "client|full",
        "GET /v1/devices": "client|full",
        "GET /v1/devices/:device": "client|full",
        "PATCH /v1/devices/:device/props": "client|full",
        "GET /v1/events": "client|full",
        "GET /v1/shares": "client|full",
        "POST /v1/devices/:device/rename": "full",
        "DELETE /v1/devices/:device": "full",
        "GET /v1/keys": "full",
        "POST /v1/keys": "full",
        "DELETE /v1/keys/:key": "full",
        "POST /v1/shares": "full",
        "DELETE /v1/shares/:share": "full",
        "GET /v1/audit": "full",
      });
      // Where a dashboard session stands for its key: every route for account keys but the
      // WebSocket ones, enrolment and signing in.
      const keyRoutes = ROUTES.filter((r) => typeof r.access === "object");
      assertEquals(
        keyRoutes.filter((r) => !acceptsSession(r)).map((r) => `${r.method} ${r.path}`),
        ["GET /v1/tunnel", "POST /v1/enroll", "POST /v1/session"],
      );
    });

    await t.step("every route of the table admits exactly the roles it names", async () => {
      const callers: [string, string, Caller][] = [
        ["no key", "", "none"],
        ["an unknown key", `od_client_${"A".repeat(43)}`, "unknown"],
        ["a device key", a.deviceKey, "device"],
        ["a client key", a.clientKey, "client"],
        ["a full key", aFull, "full"],
        ["a device credential", cred, "device-credential"],
        ["a client key's session", "", "client-session"],
        ["a full key's session", "", "full-session"],
      ];
      const sessions = async () => ({
        "client-session": await session(relay, a.clientKey),
        "full-session": await session(relay, aFull),
      } as Record<string, TestSession>);
      let open = await sessions();
      let n = 0;
      for (const route of ROUTES) {
        // Parameters that name nothing, so an admitted call changes nothing.
        const path = route.path.replace(":device", "nope-1").replace(":key", "key-0000000000")
          .replace(":share", "999999");
        for (const [who, secret, caller] of callers) {
          const s = open[caller];
          const res = await fetch(`${relay.url}${path}`, {
            method: route.method,
            headers: {
              ...(secret ? { authorization: `Bearer ${secret}` } : {}),
              ...(s ? pageHeaders(relay, s) : {}),
              "x-od-protocol": "od.1", // so WebSocket routes get as far as the credentials
              "x-forwarded-for": `198.51.100.${n++ % 250}`, // failures are throttled per address
              "content-type": "application/json",
            },
            body: route.method === "GET" || route.method === "DELETE" ? undefined : "{}",
          });
          const text = await res.text();
          const what = `${route.method} ${route.path} with ${who}: ${res.status} ${text}`;
          ok(res.status < 500, what);
          if (admits(route, caller)) {
            ok(res.status !== 401 && res.status !== 403, `admitted: ${what}`);
          } else {
            ok(res.status === 401 || res.status === 403, `refused: ${what}`);
            const body = route.action === "page" ? null : JSON.parse(text);
            ok(route.action === "page" || typeof body.error === "string", `one sentence: ${what}`);
          }
        }
        if (route.action === "sign-out") open = await sessions(); // the walk signed them out
      }
    });

    await t.step(
      "a session's changes need the relay's Origin and the session's CSRF token",
      async () => {
        const s = await session(relay, aFull);
        const patch = (headers: Record<string, string>) =>
          fetch(`${relay.url}/v1/devices/edge-2/props`, {
            method: "PATCH",
            headers: { "content-type": "application/json", ...headers },
            body: JSON.stringify({ set: { x: "1" } }),
          }).then(async (r) => [r.status, (await r.json()).error ?? "ok"]);
        const good = pageHeaders(relay, s);
        const origin = "a change through a session must come from the relay's own pages";
        const csrf = "the request's CSRF token is missing or wrong; reload the page";
        const cases: [string, Record<string, string>, [number, string]][] = [
          ["no CSRF token", { cookie: s.cookie, origin: relay.url }, [403, csrf]],
          ["another session's token", {
            ...good,
            [CSRF_HEADER]: (await session(relay, aFull)).csrf,
          }, [
            403,
            csrf,
          ]],
          ["no Origin", { cookie: s.cookie, [CSRF_HEADER]: s.csrf }, [403, origin]],
          ["another origin", { ...good, origin: "http://127.0.0.1:1" }, [403, origin]],
          ["a cross-site fetch", { ...good, "sec-fetch-site": "same-site" }, [403, origin]],
          ["a malformed cookie", { ...good, cookie: "od_session=x" }, [
            401,
            "the session cookie is malformed",
          ]],
          ["the page itself", good, [200, "ok"]],
        ];
        for (const [what, headers, expected] of cases) {
          assertEquals(await patch(headers), expected, what);
        }
        // Reading needs neither: the browser does not send a cross-site request's cookie.
        const read = await fetch(`${relay.url}/v1/devices`, { headers: { cookie: s.cookie } });
        assertEquals(read.status, 200);
        await read.body?.cancel();
      },
    );

    await t.step("other accounts are told their devices do not exist", async () => {
      const cases: [string, string, string, string, unknown, number][] = [
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
      await pipe.flowing();
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
        await pipe.flowing();
        // Its event stream (od events, a dashboard page) ends too.
        const giveUp = new AbortController();
        const events = await fetch(`${relay.url}/v1/events?follow=1`, {
          headers: { authorization: `Bearer ${added.body.key}` },
          signal: giveUp.signal,
        });
        const streamEnded = events.text().then(() => Date.now(), () => Infinity);
        const bound = setTimeout(() => giveUp.abort(), 10_000);
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
        const streamAt = await streamEnded;
        clearTimeout(bound);
        ok(streamAt - revokedAt < 5000, `${how}: events ended after ${streamAt - revokedAt} ms`);
        assertEquals((await call(relay, added.body.key, "GET", "/v1/devices")).status, 401);
      }
    });

    await t.step("the audit log holds a row for each, with the right outcome", async () => {
      // Rows are written once a second, in order: once the last ones are there, all are.
      const rows = await eventually("the revocations' audit rows", async () => {
        const all = (await call(relay, aFull, "GET", "/v1/audit")).body as Record<
          string,
          unknown
        >[];
        const revoked = all.filter((r) =>
          r.action === "tunnel" && r.reason === "the key was revoked"
        );
        return revoked.length >= 2 && all;
      });
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
