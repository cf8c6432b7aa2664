/**
 * A device whose only way out is Debian's squid with Basic authentication: the device lives in
 * a network namespace whose one link leads to squid's address, and the relay listens on the
 * test's loopback, which the namespace cannot reach but squid can. Squid closes CONNECT tunnels
 * idle for 6 s; the daemon's keepalive keeps its link open through that.
 */
import { deepStrictEqual as assertEquals, doesNotMatch, match, ok } from "node:assert/strict";
import { od, tempDir } from "./_harness.ts";
import { addAccount, assertOneSentence, clientEnv, makeTestCa, startRelay } from "./_fleet.ts";
import { startSshd } from "./_sshd.ts";
import { linkedNetns, OD_SHIM } from "./_netns.ts";
import { startSquid } from "./_squid.ts";

const USER = "corp";
const PASSWORD = "s3cr3t-pw";
const WRONG = "wr0ng-pw";
const IDLE_S = 6; // squid's read_timeout: silent tunnels are closed after this long

const since = (t0: number) => Math.round((Date.now() - t0) / 100) / 10;

/** Opens a CONNECT tunnel through squid and measures how long squid keeps it while idle. */
async function idleTunnelLifetime(host: string, port: number, to: string): Promise<number> {
  const conn = await Deno.connect({ hostname: host, port });
  const auth = btoa(`${USER}:${PASSWORD}`);
  await conn.write(
    new TextEncoder().encode(
      `CONNECT ${to} HTTP/1.1\r\nHost: ${to}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`,
    ),
  );
  const buf = new Uint8Array(4096);
  const n = await conn.read(buf);
  const head = new TextDecoder().decode(buf.subarray(0, n ?? 0));
  if (!head.startsWith("HTTP/1.1 200")) throw new Error(`squid answered ${head.split("\r\n")[0]}`);
  const t0 = Date.now();
  while ((await conn.read(buf).catch(() => null)) !== null) { /* wait for squid to close */ }
  conn.close();
  return since(t0);
}

Deno.test("behind squid with Basic auth: links and od ssh work, 407 and a stopped proxy are named", async () => {
  await using dir = await tempDir();
  const ca = await makeTestCa(dir);
  await using relay = await startRelay(`${dir}/data`, { tls: ca });
  const keys = await addAccount(relay.dataDir, "acme");
  await using ns = await linkedNetns("squid");
  await using squid = await startSquid({
    host: ns.outer,
    user: USER,
    password: PASSWORD,
    idleTimeoutS: IDLE_S,
  });
  const withAuth = squid.url.replace("//", `//${USER}:${PASSWORD}@`);
  const proxyEnv = (url: string) => ({ HTTPS_PROXY: url, NO_PROXY: "", no_proxy: "" });
  const relayAddr = new URL(relay.url).host;
  const sshd = await startSshd(`${dir}/sshd`, ns.name);
  const daemonArgs = (id: string, state: string) => [
    OD_SHIM,
    "daemon",
    ...["--relay", relay.url, "--key", keys.deviceKey, "--id", id, "--state", state],
    ...["--ca", ca.caFile, "--keepalive", "2"],
    ...["--service", `ssh=127.0.0.1:${sshd.port}`, "--host-key", sshd.hostKeyPub],
  ];
  try {
    // Without the proxy the namespace cannot reach the relay at all.
    const env = clientEnv(relay, keys.clientKey, `${dir}/config`);
    const direct = await ns.spawn("od list", [OD_SHIM, "list"], { env }).output();
    match(direct.stderr, /cannot reach relay at .*refused the connection/);

    // Enrolment and the link go through squid (HTTPS_PROXY with the credentials).
    await using daemon = ns.spawn("daemon", daemonArgs("edge-1", `${dir}/state`), {
      env: { ...proxyEnv(withAuth), OD_CA: ca.caFile },
    });
    await daemon.waitFor(/connected to relay/, 30_000);
    const connectedAt = Date.now();

    // od ssh from outside, also through squid, given with --proxy.
    const ssh = await od([
      "ssh",
      "--proxy",
      withAuth,
      ...["-F", "/dev/null", "-i", sshd.clientKey, "-o", "IdentitiesOnly=yes"],
      ...["-o", "BatchMode=yes", "root@edge-1", "echo through squid; exit 4"],
    ], { env });
    assertEquals([ssh.code, ssh.stdout, ssh.stderr], [4, "through squid\n", ""]);

    // Squid really closes idle tunnels, yet the daemon's link outlives several such periods.
    const idle = await idleTunnelLifetime(squid.host, squid.port, relayAddr);
    console.log(`squid closed an idle CONNECT tunnel after ${idle} s`);
    ok(idle >= IDLE_S - 1 && idle <= IDLE_S * 3, `squid kept an idle tunnel ${idle} s`);
    const wait = IDLE_S * 2.5 * 1000 - (Date.now() - connectedAt);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    doesNotMatch(
      daemon.stderr,
      /link to relay closed/,
      "the link was kept through squid's timeout",
    );
    const log = await squid.accessLog();
    match(log, new RegExp(`CONNECT ${relayAddr.replace(".", "\\.")}`), log);

    // A wrong password: enrolment fails with a sentence naming the proxy and 407, and retries
    // slowly; so does a client.
    await using wrong = ns.spawn("daemon wrong", daemonArgs("edge-2", `${dir}/state-2`), {
      env: proxyEnv(squid.url.replace("//", `//${USER}:${WRONG}@`)),
    });
    const retries = /cannot enrol.* yet error=("(?:[^"\\]|\\.)*") retryIn=([\d.]+)s/g;
    const started = Date.now();
    while ([...wrong.stderr.matchAll(retries)].length < 3) {
      ok(Date.now() - started < 30_000, `no three retries:\n${wrong.stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const seen = [...wrong.stderr.matchAll(retries)];
    match(
      JSON.parse(seen[0][1]),
      new RegExp(
        `the proxy ${squid.host}:${squid.port} rejected the user "corp" and its password \\(HTTP 407`,
      ),
    );
    const waits = seen.map((m) => Number(m[2]));
    console.log(`wrong proxy password: retries in ${waits.join(", ")} s`);
    ok(waits[2] > waits[0], `retries do not slow down: ${waits}`);
    ok(!wrong.stderr.includes(WRONG), "the password is never printed");
    const status2 = await od(["status", "--json", "--state", `${dir}/state-2`]);
    assertEquals([status2.code, JSON.parse(status2.stdout).state], [1, "backing-off"]);
    match(JSON.parse(status2.stdout).reason, /407/);
    assertEquals(
      JSON.parse(status2.stdout).proxy,
      `http://${USER}:***@${squid.host}:${squid.port}`,
    );
    for (
      const [url, re] of [
        [squid.url, /the proxy \S+ requires a login \(HTTP 407 Proxy Authentication Required\)/],
        [squid.url.replace("//", `//${USER}:${WRONG}@`), /rejected the user "corp"/],
      ] as const
    ) {
      const out = await od(["list"], { env: { ...env, ...proxyEnv(url) } });
      assertOneSentence(out, re);
      ok(!out.stderr.includes(WRONG));
    }

    // Squid stopped: the daemon names the proxy; started again: back within the fast backoff.
    const mark = daemon.stderr.length;
    await squid.stop();
    await daemon.waitFor(
      new RegExp(`cannot connect to relay.*the proxy ${squid.host}:${squid.port} refused`),
      30_000,
      mark,
    );
    const down = await od(["status", "--state", `${dir}/state`]);
    assertEquals(down.code, 1, down.stderr);
    match(
      down.stderr,
      new RegExp(
        `^od: not connected: backing off after: .*the proxy ${squid.host}:${squid.port} refused the connection`,
      ),
    );
    const t0 = Date.now();
    await squid.start();
    await daemon.waitFor(/connected to relay/, 30_000, mark);
    const back = since(t0);
    console.log(`squid restarted: the daemon was back after ${back} s`);
    ok(back <= 10, `back after ${back} s`);
    const up = await od(["status", "--json", "--state", `${dir}/state`]);
    assertEquals([up.code, JSON.parse(up.stdout).state], [0, "online"]);
  } finally {
    await sshd.stop();
  }
});
