/**
 * The device's life seen from the device: `od status` in every state with its exit code and
 * JSON fields, the relay's SIGTERM telling clients why, and the daemon's graceful SIGTERM
 * letting a running `od ssh` command finish before it exits 0.
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { od, Proc, tempDir } from "./_harness.ts";
import {
  addAccount,
  addKey,
  clientEnv,
  echoServer,
  type Relay,
  startDaemon,
  startRelay,
} from "./_fleet.ts";
import { startSshFleet } from "./_sshd.ts";

async function status(stateDir: string) {
  const json = await od(["status", "--json", "--state", stateDir]);
  const text = await od(["status", "--state", stateDir]);
  return { code: json.code, json: JSON.parse(json.stdout || "null"), text, stderr: json.stderr };
}

Deno.test("od status: online, backing off and why, refused, stopping, no daemon; exit codes 0/1/3", async () => {
  await using dir = await tempDir();
  const dataDir = `${dir}/data`;
  let relay: Relay = await startRelay(dataDir);
  const port = relay.port;
  const keys = await addAccount(dataDir, "acme");
  await using echo = echoServer();
  const stateDir = `${dir}/state`;
  const daemon = await startDaemon(relay, {
    key: keys.deviceKey,
    id: "edge-1",
    stateDir,
    services: { echo: echo.port },
  });
  try {
    // Online.
    const online = await status(stateDir);
    assertEquals(online.code, 0, online.stderr);
    const s = online.json;
    assertEquals(
      [s.state, s.device, s.account, s.relay, s.proxy, s.services, s.tunnels],
      ["online", "edge-1", "acme", relay.url, null, { echo: `127.0.0.1:${echo.port}` }, 0],
    );
    ok(Date.parse(s.since) <= Date.now() && typeof s.version === "string" && s.pid > 0);
    assertEquals(s.keepalive, 2);
    match(online.text.stdout, /^state: +online since /m);
    match(online.text.stdout, /^device: +edge-1 \(account acme\)$/m);
    assertEquals(online.text.code, 0);

    // The relay stops (SIGTERM): an open tunnel is told why; the daemon backs off and says why.
    const env = clientEnv(relay, keys.clientKey, `${dir}/config`);
    const pipe = new Proc("pipe", ["pipe", "edge-1", "echo"], { env, stdin: "piped" });
    const writer = pipe.child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("hello\n"));
    while (!pipe.stdout.includes("hello")) await new Promise((r) => setTimeout(r, 50));
    const mark = daemon.stderr.length;
    relay.proc.signal("SIGTERM");
    assertEquals((await relay.proc.output()).code, 0);
    const cut = await pipe.output();
    await writer.close().catch(() => {});
    assertEquals(cut.code, 1);
    match(cut.stderr, /^od: tunnel to "edge-1" was reset: the relay is shutting down/);
    await daemon.waitFor(/cannot connect to relay/, 20_000, mark);
    const off = await status(stateDir);
    assertEquals(off.code, 1);
    assertEquals(off.json.state, "backing-off");
    match(off.json.reason, new RegExp(`the relay 127\\.0\\.0\\.1:${port} refused the connection`));
    ok(Date.parse(off.json.retryAt) > Date.parse(off.json.since));
    match(off.json.lastError.message, /refused/);
    match(
      off.stderr,
      /^od: not connected: backing off after: cannot reach relay .* next attempt in /,
    );

    // Back, then the device removed: its credential is refused, and status says so.
    relay = await startRelay(dataDir, { port });
    await daemon.waitFor(/connected to relay/, 30_000, mark);
    assertEquals((await status(stateDir)).code, 0);
    const full = await addKey(dataDir, "acme", "full");
    const rm = await od(["device", "rm", "--force", "edge-1"], {
      env: { ...env, OD_KEY: full.key },
    });
    assertEquals(rm.code, 0, rm.stderr);
    let refused;
    for (let i = 0; i < 100; i++) {
      refused = await status(stateDir);
      if (refused.json.state === "refused") break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assertEquals([refused!.code, refused!.json.state], [1, "refused"]);
    match(refused!.json.reason, /credential is not known to this relay/);
    match(refused!.stderr, /^od: not connected: the relay refused this device: /);
  } finally {
    daemon.signal("SIGTERM");
    assertEquals((await daemon.output()).code, 0);
    await relay.proc.stop();
  }
  // No daemon.
  const none = await status(stateDir);
  assertEquals([none.code, none.json], [3, { state: "no-daemon", stateDir }]);
  match(none.stderr, /^od: no od daemon is running with state directory .* \(device "edge-1"/);
  assertEquals(none.text.code, 3);
});

Deno.test("daemon SIGTERM during od ssh: the running command finishes, new tunnels are refused, exit 0", async () => {
  await using dir = await tempDir();
  await using fleet = await startSshFleet(dir);
  const ssh = new Proc("od ssh", [
    "ssh",
    ...fleet.sshArgs,
    ...["-o", "BatchMode=yes", "root@edge-1", "echo started; sleep 5; echo finished; exit 3"],
  ], { env: fleet.env });
  let ended = false;
  ssh.status.then(() => (ended = true));
  while (!ssh.stdout.includes("started")) {
    ok(!ended, `the session ended early: ${ssh.stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const signalled = Date.now();
  fleet.daemon.signal("SIGTERM");
  await fleet.daemon.waitFor(/stopping: waiting for open tunnels/);
  // While it stops: no new tunnels, and od status says it is stopping.
  const refused = await od(["pipe", "edge-1", "ssh"], { env: fleet.env });
  assertEquals(refused.code, 1);
  match(refused.stderr, /^od: cannot open ssh on "edge-1": the device's od daemon is stopping/);
  const stopping = await od(["status", "--json", "--state", `${dir}/state`]);
  assertEquals([stopping.code, JSON.parse(stopping.stdout).state], [1, "stopping"]);
  // The session's command runs to its end: output and exit code arrive.
  const done = await ssh.output();
  const sessionEnded = Date.now();
  assertEquals([done.code, done.stdout], [3, "started\nfinished\n"], done.stderr);
  const exited = await fleet.daemon.output();
  const daemonExited = Date.now();
  assertEquals(exited.code, 0, exited.stderr);
  console.log(
    `SIGTERM during a 5 s command: the session ended ${sessionEnded - signalled} ms after the ` +
      `signal and the daemon exited ${daemonExited - sessionEnded} ms after the session`,
  );
  ok(daemonExited - signalled < 10_000, "the daemon stayed longer than its grace period");
});
