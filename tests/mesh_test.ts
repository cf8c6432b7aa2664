/**
 * Several relays on one PostgreSQL, HAProxy (deploy/haproxy-mesh.cfg) in front, devices spread
 * over the relays by HAProxy: any relay reaches any device through the mesh, the listing shows
 * the whole fleet from every relay, a key revoked on one relay closes a tunnel that crosses two
 * others, a property set through one relay reaches a device held by another, growing windows
 * are agreed per stream across two relays (and refused where the device cannot grow them), and
 * only relays holding the mesh key may join the mesh.
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { eventually, od, Proc, randomBytes, rss, tempDir } from "./_harness.ts";
import {
  clientEnv,
  echoServer,
  enrollByApi,
  readPattern,
  type Relay,
  sourceServer,
  startDaemon,
} from "./_fleet.ts";
import { call, propsOnDevice, RogueDevice } from "./_api.ts";
import { havePostgres, SKIP_SENTENCE } from "./_postgres.ts";
import {
  heldByRelay,
  livePipe,
  type MeshRelay,
  meshStack,
  onlineVia,
  rawTunnel,
  startMeshProxy,
} from "./_mesh.ts";
import {
  CLIENT_STREAM,
  encodeBlocked,
  encodeData,
  encodeOpened,
  FrameType,
  MAX_WINDOW,
  SUBPROTOCOL,
} from "../src/protocol/frame.ts";
import { MESH_PATH } from "../src/protocol/mesh.ts";

const skip = !havePostgres();
if (skip) console.log(SKIP_SENTENCE);

const DEVICES = 20;
const MIB = 1024 * 1024;

/** Runs `tasks` with at most `n` at once. */
async function pool<T>(tasks: (() => Promise<T>)[], n: number): Promise<T[]> {
  const out: T[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < tasks.length) {
      const i = next++;
      out[i] = await tasks[i]();
    }
  }));
  return out;
}

/** The devices `od list --json` through `relay` shows, as id → state. */
async function listed(relay: Relay, key: string, config: string): Promise<Record<string, string>> {
  const out = await od(["list", "--json"], { env: clientEnv(relay, key, config) });
  if (out.code !== 0) throw new Error(`od list: ${out.stderr}`);
  const devices = JSON.parse(out.stdout) as { id: string; state: string }[];
  return Object.fromEntries(devices.map((d) => [d.id, d.state]));
}

Deno.test({
  name:
    "three relays behind HAProxy: every relay reaches all 20 devices, 1 MiB each, and lists them online",
  ignore: skip,
  async fn(t) {
    await using dir = await tempDir();
    await using stack = await meshStack(dir);
    const relays: MeshRelay[] = [];
    for (const id of ["relay-a", "relay-b", "relay-c"]) relays.push(await stack.startRelay(id));
    await using proxy = await startMeshProxy(stack, relays);
    const added = await stack.admin(["account", "add", "acme", "--json"]);
    assertEquals(added.code, 0, added.stderr);
    const acme = JSON.parse(added.stdout) as { clientKey: string; deviceKey: string };
    await using echo = echoServer();
    const daemons: Proc[] = [];
    try {
      for (let i = 0; i < DEVICES; i++) {
        daemons.push(
          await startDaemon(proxy.relay, {
            key: acme.deviceKey,
            id: `dev-${i}`,
            stateDir: `${dir}/dev-${i}`,
            services: { echo: echo.port },
          }),
        );
      }
      await t.step("HAProxy spread the devices over the three relays", async () => {
        const held = await eventually("every link claimed", async () => {
          const h = await heldByRelay(stack);
          const sum = Object.values(h).reduce((a, b) => a + b, 0);
          return sum === DEVICES && h;
        });
        for (const r of relays) ok((held[r.id] ?? 0) >= 3, `${r.id} holds ${JSON.stringify(held)}`);
      });

      await t.step("od list through each relay shows all 20 online", async () => {
        for (const [i, r] of relays.entries()) {
          const states = await listed(r, acme.clientKey, `${dir}/cfg-${i}`);
          assertEquals(Object.keys(states).length, DEVICES);
          ok(Object.values(states).every((s) => s === "online"), JSON.stringify(states));
        }
      });

      await t.step(
        "from a client of each relay, a tunnel to every device carries 1 MiB",
        async () => {
          const data = randomBytes(MIB);
          const tasks = relays.flatMap((r, i) =>
            daemons.map((_, d) => async () => {
              const env = clientEnv(r, acme.clientKey, `${dir}/cfg-${i}`);
              const out = await new Deno.Command("scripts/od", {
                args: ["pipe", `dev-${d}`, "echo"],
                env: { ...env, NO_PROXY: "127.0.0.1,localhost", HTTPS_PROXY: "", HTTP_PROXY: "" },
                stdin: "piped",
                stdout: "piped",
                stderr: "piped",
              }).spawn();
              const writer = out.stdin.getWriter();
              await writer.write(data);
              await writer.close();
              const result = await out.output();
              const stderr = new TextDecoder().decode(result.stderr);
              assertEquals(result.code, 0, `${r.id} → dev-${d}: ${stderr}`);
              ok(
                result.stdout.length === MIB && result.stdout.every((b, k) => b === data[k]),
                `${r.id} → dev-${d}: ${result.stdout.length} bytes came back, not the same MiB`,
              );
            })
          );
          await pool(tasks, 4);
          // Forwarded through one mesh link per pair of relays, whichever of the two dialed it.
          const dialed = relays.flatMap((r) =>
            [...r.proc.stderr.matchAll(/mesh link open peer=(\S+) dialed=true/g)].map((m) =>
              [r.id, m[1]].sort().join("+")
            )
          );
          assertEquals(dialed.sort(), ["relay-a+relay-b", "relay-a+relay-c", "relay-b+relay-c"]);
        },
      );
    } finally {
      for (const d of daemons) await d.stop();
    }
  },
});

Deno.test({
  name: "a slow reader across two relays: neither relay grows by more than 16 MiB",
  ignore: skip,
  async fn() {
    const TOTAL = 64 * MIB;
    const PAUSE_MS = 10_000;
    const MAX_GROWTH = 16 * MIB;
    await using dir = await tempDir();
    await using stack = await meshStack(dir);
    const a = await stack.startRelay("relay-a");
    const b = await stack.startRelay("relay-b");
    const added = await stack.admin(["account", "add", "acme", "--json"]);
    const acme = JSON.parse(added.stdout) as { clientKey: string; deviceKey: string };
    await using source = sourceServer(TOTAL);
    await using echo = echoServer();
    // The device holds its link to relay B; the client asks relay A.
    await using daemon = await startDaemon(b, {
      key: acme.deviceKey,
      id: "edge-1",
      stateDir: `${dir}/state`,
      services: { source: source.port, echo: echo.port },
    });
    const env = clientEnv(a, acme.clientKey, `${dir}/config`);
    await onlineVia(a, acme.clientKey, "edge-1");
    // Warm up every process on the path (JIT, buffers), so the baseline is not start-up.
    const warm = await od(["pipe", "edge-1", "echo"], { env, stdin: new Uint8Array(8 * MIB) });
    assertEquals(warm.code, 0, warm.stderr);
    match(a.proc.stderr, /mesh link open peer=relay-b/);
    const base = { a: rss(a.proc.pid), b: rss(b.proc.pid), daemon: rss(daemon.pid) };
    await using client = new Proc("slow client", ["pipe", "edge-1", "source"], {
      env,
      stdout: "piped",
    });
    const peak = { a: 0, b: 0, daemon: 0 };
    const pauseEnd = Date.now() + PAUSE_MS;
    while (Date.now() < pauseEnd) {
      peak.a = Math.max(peak.a, rss(a.proc.pid));
      peak.b = Math.max(peak.b, rss(b.proc.pid));
      peak.daemon = Math.max(peak.daemon, rss(daemon.pid));
      await new Promise((r) => setTimeout(r, 200));
    }
    const sentWhilePaused = source.written();
    const { received, mismatch } = await readPattern(client.child.stdout, source.data);
    const { code, stderr } = await client.output();
    const mib = (n: number) => `${(n / MIB).toFixed(1)} MiB`;
    console.log(
      `relay A (client side) +${mib(peak.a - base.a)}, relay B (device side) ` +
        `+${mib(peak.b - base.b)}, daemon +${mib(peak.daemon - base.daemon)}, source wrote ` +
        `${mib(sentWhilePaused)} while the client paused`,
    );
    ok(sentWhilePaused < TOTAL / 2, `the source was not held back: ${mib(sentWhilePaused)} sent`);
    ok(peak.a - base.a <= MAX_GROWTH, `relay A grew ${mib(peak.a - base.a)}`);
    ok(peak.b - base.b <= MAX_GROWTH, `relay B grew ${mib(peak.b - base.b)}`);
    ok(
      peak.daemon - base.daemon <= MAX_GROWTH,
      `the daemon grew ${mib(peak.daemon - base.daemon)}`,
    );
    assertEquals(code, 0, stderr);
    assertEquals(mismatch, -1, `stream differs at byte ${mismatch}`);
    assertEquals(received, TOTAL);
  },
});

Deno.test({
  name: "decided on one relay, done on another: revocation, share removal, props, rename, events",
  ignore: skip,
  async fn(t) {
    await using dir = await tempDir();
    await using stack = await meshStack(dir);
    const a = await stack.startRelay("relay-a");
    const b = await stack.startRelay("relay-b");
    const c = await stack.startRelay("relay-c");
    const acme = JSON.parse((await stack.admin(["account", "add", "acme", "--json"])).stdout);
    const beta = JSON.parse((await stack.admin(["account", "add", "beta", "--json"])).stdout);
    const full = JSON.parse(
      (await stack.admin(["key", "add", "--account", "acme", "--role", "full", "--json"])).stdout,
    ).key as string;
    await using echo = echoServer();
    const state = `${dir}/edge-1`;
    // The device holds its link to relay C.
    const daemon = await startDaemon(c, {
      key: acme.deviceKey,
      id: "edge-1",
      stateDir: state,
      services: { echo: echo.port },
    });
    await onlineVia(b, acme.clientKey, "edge-1");
    try {
      await t.step(
        "growing windows are agreed across relays B → C; BLOCKED goes through, CREDIT comes back",
        async () => {
          await using grown = await rawTunnel(b, acme.clientKey, "edge-1", "echo", true);
          assertEquals(grown.info.maxWindow, MAX_WINDOW);
          // The daemon's window starts at 256 KiB and doubles on each BLOCKED while it keeps up;
          // at 2 MiB it grants 1 MiB beyond the first window, back through C and B.
          for (let i = 0; i < 3; i++) grown.send(encodeBlocked(CLIENT_STREAM));
          const credit = await grown.next(FrameType.CREDIT, 5000);
          assertEquals(credit.type === FrameType.CREDIT && credit.bytes, MIB);
          grown.send(encodeData(CLIENT_STREAM, new TextEncoder().encode("grown")));
          const echoed = await grown.next(FrameType.DATA, 5000);
          assertEquals(
            echoed.type === FrameType.DATA && new TextDecoder().decode(echoed.data),
            "grown",
          );
        },
      );

      await t.step(
        "a device that cannot grow windows keeps the fixed window across relays B → C",
        async () => {
          // A device link without x-od-windows, as older daemons open it.
          const credential = await enrollByApi(c, acme.deviceKey, "old-1");
          const old = await RogueDevice.connect(c, credential);
          try {
            await onlineVia(b, acme.clientKey, "old-1");
            const opening = rawTunnel(b, acme.clientKey, "old-1", "echo", true);
            const open = await old.frame(FrameType.OPEN);
            ok(open.type === FrameType.OPEN && open.maxWindow === undefined, JSON.stringify(open));
            old.sendFrame(encodeOpened(open.stream));
            await using narrowed = await opening;
            assertEquals(narrowed.info.maxWindow, undefined);
            // Relay B now treats BLOCKED from this client as the violation it is.
            narrowed.send(encodeBlocked(CLIENT_STREAM));
            const reset = await narrowed.next(FrameType.RESET, 5000);
            match(reset.type === FrameType.RESET ? reset.reason : "", /BLOCKED was not negotiated/);
          } finally {
            await old.close();
          }
        },
      );

      await t.step(
        "a key revoked on relay A closes its tunnel via relays B → C within 5 s",
        async () => {
          const added = await call(a, full, "POST", "/v1/keys", { role: "client", label: "ops" });
          assertEquals(added.status, 201, added.text);
          const key = added.body as { key: string; id: string };
          const pipe = livePipe(clientEnv(b, key.key, `${dir}/cfg-k`), "edge-1");
          await pipe.flowing();
          const revokedAt = Date.now();
          assertEquals((await call(a, full, "DELETE", `/v1/keys/${key.id}`)).status, 200);
          const end = await pipe.ended;
          ok(end.at - revokedAt < 5000, `the pipe ended ${end.at - revokedAt} ms after`);
          ok(end.code !== 0);
          match(end.stderr, /the key was revoked/);
        },
      );

      await t.step(
        "a share removed on relay A closes beta's tunnel via B → C within 5 s",
        async () => {
          const share = await call(a, full, "POST", "/v1/shares", {
            account: "beta",
            device: "edge-1",
            services: ["echo"],
          });
          assertEquals(share.status, 201, share.text);
          const pipe = livePipe(clientEnv(b, beta.clientKey, `${dir}/cfg-b`), "acme.edge-1");
          await pipe.flowing();
          const removedAt = Date.now();
          const id = (share.body as { id: number }).id;
          assertEquals((await call(a, full, "DELETE", `/v1/shares/${id}`)).status, 200);
          const end = await pipe.ended;
          ok(end.at - removedAt < 5000, `the pipe ended ${end.at - removedAt} ms after`);
          match(end.stderr, /the share was removed/);
        },
      );

      await t.step(
        "a property set through relay B reaches the device held by relay C",
        async () => {
          // --since: should the subscription reach relay A only after the event (a slow
          // machine), the replay still shows it; usually it arrives live.
          const since = new Date(Date.now() - 1000).toISOString();
          const events = new Proc("events on relay A", ["events", "--json", "--since", since], {
            env: clientEnv(a, acme.clientKey, `${dir}/cfg-events`),
          });
          try {
            // `od events` on relay A is live once it has answered with its heartbeat or an event.
            await eventually("od events to subscribe", async () => {
              const r = await call(a, acme.clientKey, "GET", "/v1/devices/edge-1");
              return r.status === 200;
            });
            await new Promise((r) => setTimeout(r, 500)); // the follow request reaches relay A
            const set = await call(b, acme.clientKey, "PATCH", "/v1/devices/edge-1/props", {
              set: { site: "zurich" },
            });
            assertEquals(set.status, 200, set.text);
            const props = await eventually("the property on the device", async () => {
              const p = await propsOnDevice(state);
              return p.site === "zurich" && p;
            }, 5000);
            assertEquals(props.site, "zurich");
            // The event was appended by relay B; relay A's follower sees it through the feed.
            await eventually(
              "the props event on relay A",
              () => /"type":\s*"props".*zurich/.test(events.stdout),
              5000,
            );
          } finally {
            await events.stop();
          }
        },
      );

      await t.step("a rename on relay A reaches the daemon held by relay C", async () => {
        const renamed = await call(a, full, "POST", "/v1/devices/edge-1/rename", {
          name: "edge-one",
        });
        assertEquals(renamed.status, 200, renamed.text);
        await daemon.waitFor(/renamed by the relay .*to=edge-one/, 5000);
        const env = clientEnv(b, acme.clientKey, `${dir}/cfg-r`);
        const pipe = await od(["pipe", "edge-one", "echo"], { env, stdin: "renamed" });
        assertEquals([pipe.code, pipe.stdout], [0, "renamed"], pipe.stderr);
        ok(!/link to relay closed/.test(daemon.stderr), daemon.stderr);
      });
    } finally {
      await daemon.stop();
    }
  },
});

Deno.test({
  name:
    "only relays with the mesh key join: a wrong key cannot join or forward, account keys never",
  ignore: skip,
  async fn(t) {
    await using dir = await tempDir();
    await using stack = await meshStack(dir);
    const a = await stack.startRelay("relay-a");
    await stack.startRelay("relay-b");
    const acme = JSON.parse((await stack.admin(["account", "add", "acme", "--json"])).stdout);
    const full = JSON.parse(
      (await stack.admin(["key", "add", "--account", "acme", "--role", "full", "--json"])).stdout,
    ).key as string;
    const { MeshKey } = await import("../src/relay/mesh_auth.ts");
    const wrongFile = `${dir}/wrong.key`;
    await Deno.writeTextFile(wrongFile, "f".repeat(64) + "\n", { mode: 0o600 });

    await t.step("a relay started with a wrong --mesh-key is refused and stops", async () => {
      const out = await new Proc("relay w", [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        stack.storeUrl,
        "--store-password-file",
        stack.passwordFile,
        "--mesh-key",
        wrongFile,
        "--relay-id",
        "relay-w",
      ]).output();
      assertEquals(out.code, 1, out.stderr);
      match(out.stderr, /od: relay relay-[ab] refused this relay's mesh key/);
      ok(!/relay listening/.test(out.stderr));
      const relays = JSON.parse((await stack.admin(["relay", "list", "--json"])).stdout);
      assertEquals(relays.map((r: { id: string }) => r.id), ["relay-a", "relay-b"]);
    });

    await t.step("a password given in the store URL is never logged", async () => {
      const withPassword = stack.storeUrl.replace("://od@", `://od:${stack.pg.password}@`);
      const relay = new Proc("relay p", [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        withPassword,
        "--mesh-key",
        stack.keyFile,
        "--relay-id",
        "relay-p",
      ]);
      try {
        const m = await relay.waitFor(/relay listening .*store=(\S+)/);
        assertEquals(m[1], stack.storeUrl);
      } finally {
        await relay.stop();
      }
      ok(!relay.stderr.includes(stack.pg.password), relay.stderr);
      const listed = await od(["admin", "--store", withPassword, "relay", "list"]);
      assertEquals(listed.code, 0, listed.stderr);
      ok(!(listed.stdout + listed.stderr).includes(stack.pg.password));
    });

    /** Opens /v1/mesh on relay A with these headers; the HTTP status (101 if admitted). */
    const dial = async (headers: Record<string, string>) => {
      const ws = new WebSocket(`${a.url.replace(/^http/, "ws")}${MESH_PATH}`, {
        protocols: [SUBPROTOCOL],
        headers,
      } as unknown as string[]);
      const status = await new Promise<number>((resolve) => {
        ws.onopen = () => resolve(101);
        ws.onerror = (e) =>
          resolve(Number(/status code:? (\d+)/i.exec((e as ErrorEvent).message)?.[1] ?? 0));
      });
      if (status === 101) {
        const closed = new Promise((r) => (ws.onclose = r));
        ws.close();
        await closed;
      }
      return status;
    };

    await t.step(
      "a dial signed with another key is refused; with the mesh key admitted",
      async () => {
        const secret = (await Deno.readTextFile(stack.keyFile)).trim();
        const wrong = await new MeshKey("f".repeat(64)).dialHeaders("relay-w", "relay-a");
        assertEquals(await dial(wrong.headers), 401);
        const right = await new MeshKey(secret).dialHeaders("relay-w", "relay-a");
        assertEquals(await dial(right.headers), 101);
        assertEquals(await dial(right.headers), 401, "the same handshake twice is a replay");
      },
    );

    await t.step("no account key or device credential speaks the mesh protocol", async () => {
      const device = await call(a, acme.deviceKey, "POST", "/v1/enroll", {
        credential: "od_cred_" + "A".repeat(43),
        id: "edge-9",
      });
      ok(device.status === 201 || device.status === 400, device.text);
      for (const secret of [acme.clientKey, acme.deviceKey, full]) {
        assertEquals(await dial({ authorization: `Bearer ${secret}` }), 401);
        // Nor does an account key used as if it were the mesh key.
        const forged = await new MeshKey(secret).dialHeaders("relay-x", "relay-a");
        assertEquals(await dial({ ...forged.headers, authorization: `Bearer ${secret}` }), 401);
      }
      const refused = await call(a, full, "GET", MESH_PATH, undefined, {
        "x-od-protocol": SUBPROTOCOL,
      });
      assertEquals(refused.status, 401);
      match((refused.body as { error: string }).error, /only relays use \/v1\/mesh/);
    });
  },
});
