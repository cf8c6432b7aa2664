/**
 * The relay behind real Caddy, nginx and HAProxy, each run from its file in deploy/ as it is,
 * with TLS from a test CA, in front of one plain relay that trusts 127.0.0.1 as its proxy. For
 * each proxy: a daemon (at od's default keepalive) and clients go through it, 16 MiB come back
 * byte-identical, the audit log and the device's on:ip carry the client's address (::1, not the
 * proxy's 127.0.0.1, and not a forged X-Forwarded-For), and a tunnel left idle for 90 s — longer
 * than nginx's default 60 s read timeout — still works afterwards. The three proxies run at
 * once, so the 90 s are paid once.
 */
import { deepStrictEqual as assertEquals, ok } from "node:assert/strict";
import { eventually, od, Proc, randomBytes, tempDir } from "./_harness.ts";
import {
  addAccount,
  addKey,
  echoServer,
  makeTestCa,
  pipeThrough,
  startRelay,
  type TestCa,
} from "./_fleet.ts";
import { type ReverseProxy, startCaddy, startHaproxy, startNginx } from "./_proxies.ts";

const IDLE_MS = 90_000; // longer than nginx's default proxy_read_timeout (60 s)
const CLIENT_ADDRESS = "::1"; // the proxies listen on ::1; the relay sees them from 127.0.0.1
const FORGED = "198.51.100.7"; // what a client claims in its own X-Forwarded-For

async function sha256(data: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Reads from `reader` until the text read so far ends with `expected`. */
async function readUntil(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  expected: string,
): Promise<string> {
  let text = "";
  const decoder = new TextDecoder();
  while (!text.endsWith(expected)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`stream ended after ${JSON.stringify(text)}`);
    text += decoder.decode(value, { stream: true });
  }
  return text;
}

type Row = { action: string; device: string | null; result: string; ip: string };

/** Everything one proxy is checked for; runs concurrently with the other proxies. */
async function checkProxy(
  proxy: ReverseProxy,
  ctx: { dir: string; ca: TestCa; dataDir: string; echoPort: number; keys: Keys; full: string },
): Promise<void> {
  const device = `via-${proxy.name}`;
  const env = {
    OD_RELAY: proxy.url,
    OD_KEY: ctx.keys.clientKey,
    OD_CA: ctx.ca.caFile,
    OD_CONFIG_DIR: `${ctx.dir}/config-${proxy.name}`,
  };
  // The default keepalive, as installed devices run: no test-only short pings.
  await using daemon = new Proc(`daemon ${device}`, [
    "daemon",
    "--relay",
    proxy.url,
    "--key",
    ctx.keys.deviceKey,
    "--id",
    device,
    "--state",
    `${ctx.dir}/state-${proxy.name}`,
    "--ca",
    ctx.ca.caFile,
    "--service",
    `echo=127.0.0.1:${ctx.echoPort}`,
  ]);
  await daemon.waitFor(/connected to relay/);
  const where = `through ${proxy.name}`;

  // 16 MiB byte-identical.
  const input = randomBytes(16 << 20);
  const out = await pipeThrough(env, device, "echo", input);
  assertEquals(out.code, 0, `${where}: ${out.stderr}`);
  assertEquals(out.output.length, input.length, where);
  assertEquals(await sha256(out.output), await sha256(input), `${where}: bytes differ`);

  // The audit row, read through the same proxy with a full key, names the client.
  const rows = await eventually(`the audited tunnel ${where}`, async () => {
    const res = await od(["audit", "--json", "--device", device], {
      env: { ...env, OD_KEY: ctx.full },
    });
    if (res.code !== 0) throw new Error(res.stderr);
    const found = (JSON.parse(res.stdout) as Row[]).filter((r) => r.action === "tunnel");
    return found.length > 0 && found;
  });
  assertEquals(rows.map((r) => [r.result, r.ip]), [["ok", CLIENT_ADDRESS]], where);
  const listed = await od(["list", "--json"], { env });
  const entry = (JSON.parse(listed.stdout) as { id: string; ip: string | null }[])
    .find((d) => d.id === device);
  assertEquals(entry?.ip, CLIENT_ADDRESS, `${where}: the daemon's address (on:ip)`);

  // A forged X-Forwarded-For: the relay must believe only the entry the proxy added.
  const client = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(ctx.ca.caFile)] });
  const res = await fetch(`${proxy.url}/v1/devices`, {
    client,
    headers: { authorization: `Bearer od_client_${"x".repeat(43)}`, "x-forwarded-for": FORGED },
  });
  await res.body?.cancel();
  client.close();
  assertEquals(res.status, 401, where);

  // A tunnel left idle for 90 s still carries bytes both ways.
  await using idle = new Proc(`idle pipe ${device}`, ["pipe", device, "echo"], {
    env,
    stdin: "piped",
    stdout: "piped",
  });
  const writer = idle.child.stdin.getWriter();
  const reader = idle.child.stdout.getReader();
  await writer.write(new TextEncoder().encode("before the pause\n"));
  await readUntil(reader, "before the pause\n");
  // The pause is the subject of this test, not a wait for readiness.
  await new Promise((r) => setTimeout(r, IDLE_MS));
  try {
    await writer.write(new TextEncoder().encode("after the pause\n"));
    assertEquals(await readUntil(reader, "after the pause\n"), "after the pause\n", where);
  } catch (err) {
    throw new Error(`${where}: the tunnel did not survive ${IDLE_MS / 1000} s idle (${err})`, {
      cause: idle.stderr,
    });
  }
  await writer.close();
  const { done } = await reader.read();
  reader.releaseLock();
  ok(done, `${where}: the tunnel ends after stdin closes`);
  assertEquals((await idle.status).code, 0, `${where}: ${idle.stderr}`);
  // The daemon's link through the proxy lasted the whole time.
  ok(!/link to relay closed|cannot connect/.test(daemon.stderr), `${where}:\n${daemon.stderr}`);
}

type Keys = Awaited<ReturnType<typeof addAccount>>;

Deno.test({
  name:
    "caddy, nginx and haproxy from deploy/ carry devices and tunnels with TLS and real client addresses",
  async fn() {
    await using dir = await tempDir();
    const ca = await makeTestCa(dir);
    await using relay = await startRelay(`${dir}/data`, {
      extraArgs: ["--trusted-proxy", "127.0.0.1"],
    });
    const keys = await addAccount(relay.dataDir, "acme");
    const full = (await addKey(relay.dataDir, "acme", "full")).key;
    await using echo = echoServer();
    const upstream = `127.0.0.1:${relay.port}`;
    await using caddy = await startCaddy(dir, ca, upstream);
    await using nginx = await startNginx(dir, ca, upstream);
    await using haproxy = await startHaproxy(dir, ca, upstream);
    const ctx = { dir, ca, dataDir: relay.dataDir, echoPort: echo.port, keys, full };
    const results = await Promise.allSettled(
      [caddy, nginx, haproxy].map((proxy) => checkProxy(proxy, ctx)),
    );
    const failed = results.flatMap((r, i) =>
      r.status === "rejected"
        ? [
          `${[caddy, nginx, haproxy][i].name}: ${r.reason}\n${
            [caddy, nginx, haproxy][i].proc.stderr.slice(-2000)
          }`,
        ]
        : []
    );
    assertEquals(failed, [], failed.join("\n\n"));
    // Each proxy's refused request with a forged X-Forwarded-For is audited from ::1.
    const refused = await eventually("three refused requests in the audit log", async () => {
      const all = await od(["admin", "--data", relay.dataDir, "audit", "--json"]);
      const rows = (JSON.parse(all.stdout) as Row[]).filter((r) => r.result === "refused");
      return rows.length >= 3 && rows;
    });
    assertEquals(refused.map((r) => r.ip), refused.map(() => CLIENT_ADDRESS));
  },
});
