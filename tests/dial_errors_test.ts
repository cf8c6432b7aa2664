/**
 * Failures to reach the relay name the hop that failed and its address, in one sentence, for
 * the first enrolment as for clients: DNS, a proxy that refuses, closes the CONNECT or never
 * answers, a relay behind a working proxy that is down; and the proxy chosen the way curl
 * chooses it (HTTP_PROXY for http:// relays, --proxy none overriding the environment).
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { od, Proc, tempDir } from "./_harness.ts";
import {
  addAccount,
  assertOneSentence,
  clientEnv,
  echoServer,
  startDaemon,
  startRelay,
} from "./_fleet.ts";
import { startSquid } from "./_squid.ts";

const KEY = `od_client_${"A".repeat(43)}`;

/** A TCP server on 127.0.0.1 that does `onConn` with each connection. */
function fakeProxy(onConn: (conn: Deno.Conn) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      onConn(conn).catch(() => {});
    }
  })().catch(() => {});
  return {
    address: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // closed
        }
      }
      await serving;
    },
  };
}

function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

const via = (proxy: string) => ({
  HTTPS_PROXY: proxy,
  HTTP_PROXY: proxy,
  NO_PROXY: "",
  no_proxy: "",
});

Deno.test("dial errors name DNS, the proxy (refused, closed, silent) and the relay behind it", async (t) => {
  const relay = "https://relay.example.test";
  const env = { OD_RELAY: relay, OD_KEY: KEY, OD_CONFIG_DIR: "/nonexistent" };

  await t.step("DNS, for the relay and for the proxy", async () => {
    const out = await od(["list"], {
      env: { ...env, OD_RELAY: "https://relay.nonexistent.invalid" },
    });
    assertOneSentence(out, /: DNS lookup of relay\.nonexistent\.invalid failed \(/);
    const proxied = await od(["list"], {
      env: { ...env, ...via("http://proxy.nonexistent.invalid:3128") },
    });
    assertOneSentence(
      proxied,
      /: DNS lookup of the proxy's name proxy\.nonexistent\.invalid failed/,
    );
  });

  await t.step("a proxy that refuses, closes the CONNECT, or never answers", async () => {
    const port = closedPort();
    const refused = await od(["list"], {
      env: { ...env, ...via(`http://u:pa55@127.0.0.1:${port}`) },
    });
    assertOneSentence(
      refused,
      new RegExp(
        `cannot reach relay at ${relay}: the proxy 127\\.0\\.0\\.1:${port} refused the connection`,
      ),
    );
    ok(!refused.stderr.includes("pa55"));
    await using closing = fakeProxy(async (conn) => {
      await conn.read(new Uint8Array(4096));
      conn.close();
    });
    const closed = await od(["list"], { env: { ...env, ...via(`http://${closing.address}`) } });
    assertOneSentence(
      closed,
      new RegExp(
        `the proxy ${closing.address} closed the connection instead of opening a tunnel to relay\\.example\\.test:443`,
      ),
    );
    await using silent = fakeProxy(() => new Promise(() => {})); // accepts and says nothing
    const started = Date.now();
    const timedOut = await od(["list"], { env: { ...env, ...via(`http://${silent.address}`) } });
    assertOneSentence(
      timedOut,
      new RegExp(
        `the proxy ${silent.address} did not open a tunnel to relay\\.example\\.test:443 within 10 s`,
      ),
    );
    ok(Date.now() - started < 15_000, "the attempt gave up in time");
  });
});

Deno.test("through squid: HTTP_PROXY for http:// relays, the relay behind the proxy named, --proxy none", async () => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const keys = await addAccount(relay.dataDir, "acme");
  await using squid = await startSquid({
    host: "127.0.0.1",
    user: "corp",
    password: "pw",
    idleTimeoutS: 60,
  });
  const proxy = squid.url.replace("//", "//corp:pw@");
  const env = clientEnv(relay, keys.clientKey, `${dir}/config`);

  // An http:// relay goes through HTTP_PROXY (curl's rule), not HTTPS_PROXY.
  const plain = await od(["list", "--json"], {
    env: { ...env, HTTP_PROXY: proxy, NO_PROXY: "", no_proxy: "" },
  });
  assertEquals(plain.code, 0, plain.stderr);
  match(await squid.accessLog(), new RegExp(`CONNECT 127\\.0\\.0\\.1:${relay.port}`));
  const ignored = await od(["list", "--json"], {
    env: { ...env, HTTPS_PROXY: "http://127.0.0.1:1", NO_PROXY: "", no_proxy: "" },
  });
  assertEquals(ignored.code, 0, ignored.stderr);

  // The relay behind a working proxy is down: the proxy's answer is read, and both are named.
  const down = closedPort();
  const behind = await od(["list"], {
    env: { ...env, OD_RELAY: `http://127.0.0.1:${down}`, ...via(proxy) },
  });
  assertOneSentence(
    behind,
    new RegExp(
      `the proxy 127\\.0\\.0\\.1:${squid.port} could not connect to 127\\.0\\.0\\.1:${down}: ` +
        `the relay refused the connection \\(HTTP 503 Service Unavailable, ERR_CONNECT_FAIL 111\\)`,
    ),
  );

  // --proxy none (and OD_PROXY=none) connect directly whatever the environment says.
  for (
    const [args, extra] of [
      [["list", "--proxy", "none", "--json"], {}],
      [["list", "--json"], { OD_PROXY: "none" }],
    ] as const
  ) {
    const out = await od([...args], { env: { ...env, ...via("http://127.0.0.1:1"), ...extra } });
    assertEquals(out.code, 0, out.stderr);
  }
  // Given after the command's name only: elsewhere it is the command's unknown option.
  assertOneSentence(
    await od(["list", "--json", "--proxy", "none"], { env }),
    /unknown option --proxy/,
    2,
  );
  assertOneSentence(await od(["list", "--proxy", "ftp://x"], { env }), /must be http:\/\//, 2);

  // od daemon --proxy is kept in the state: a later run without it still uses it, whatever the
  // environment says, until --proxy env hands the choice back to the environment.
  await using echo = echoServer();
  const stateDir = `${dir}/state`;
  const misleading = { HTTP_PROXY: "http://127.0.0.1:1", NO_PROXY: "", no_proxy: "" };
  const first = await startDaemon(relay, {
    key: keys.deviceKey,
    id: "edge-1",
    stateDir,
    services: { echo: echo.port },
    extraArgs: ["--proxy", proxy],
    env: misleading,
  });
  await first.stop();
  const again = await startDaemon(relay, {
    key: keys.deviceKey,
    id: "edge-1",
    stateDir,
    services: { echo: echo.port },
    env: misleading,
  });
  const shown = JSON.parse((await od(["status", "--json", "--state", stateDir])).stdout);
  assertEquals([shown.state, shown.proxy], ["online", `http://corp:***@127.0.0.1:${squid.port}`]);
  await again.stop();
  ok(!again.stderr.includes(":pw@") && !first.stderr.includes(":pw@"), "no password in logs");
  const byEnv = new Proc("daemon", [
    "daemon",
    ...["--state", stateDir, "--proxy", "env", "--keepalive", "2"],
  ], { env: misleading });
  try {
    await byEnv.waitFor(/cannot connect to relay.*the proxy 127\.0\.0\.1:1 refused the connection/);
  } finally {
    await byEnv.stop();
  }
});
