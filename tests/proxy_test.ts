/**
 * Firewall-friendly: with HTTPS_PROXY pointing at a real HTTP CONNECT proxy (tinyproxy), the
 * daemon and the client reach a TLS relay only through the proxy, and tunnels work.
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { od, Proc, tempDir } from "./_harness.ts";
import {
  addAccount,
  assertOneSentence,
  clientEnv,
  echoServer,
  makeTestCa,
  startDaemon,
  startRelay,
} from "./_fleet.ts";

async function startTinyproxy(
  dir: string,
  extra: string[] = [],
): Promise<{ proc: Proc; url: string; log: string }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const log = `${dir}/tinyproxy-${port}.log`;
    await Deno.writeTextFile(
      `${dir}/tinyproxy.conf`,
      [
        `Port ${port}`,
        "Listen 127.0.0.1",
        "Timeout 600",
        `LogFile "${log}"`,
        "LogLevel Connect",
        "MaxClients 100",
        "Allow 127.0.0.1",
        ...extra,
      ].join("\n") + "\n",
    );
    const proc = new Proc("tinyproxy", ["-d", "-c", `${dir}/tinyproxy.conf`], { cmd: "tinyproxy" });
    // tinyproxy logs to its file; it is ready when it accepts connections.
    for (let i = 0; i < 50; i++) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        return { proc, url: `http://127.0.0.1:${port}`, log };
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await proc.stop();
  }
  throw new Error("tinyproxy did not start");
}

/** Environment that sends od's https connections through the proxy at `url`. */
function via(url: string): Record<string, string> {
  return { HTTPS_PROXY: url, https_proxy: url, NO_PROXY: "", no_proxy: "" };
}

Deno.test("daemon and client reach a TLS relay through an HTTP CONNECT proxy", async () => {
  await using dir = await tempDir();
  const ca = await makeTestCa(dir);
  await using relay = await startRelay(`${dir}/data`, { tls: ca });
  const keys = await addAccount(relay.dataDir, "acme");
  await using echo = echoServer();
  const proxy = await startTinyproxy(dir);
  const viaProxy = via(proxy.url);
  let daemon: Proc | undefined;
  try {
    daemon = await startDaemon(relay, {
      key: keys.deviceKey,
      id: "edge-1",
      stateDir: `${dir}/state`,
      services: { echo: echo.port },
      env: viaProxy,
    });
    const env = { ...clientEnv(relay, keys.clientKey, `${dir}/config`), ...viaProxy };
    const out = await od(["pipe", "edge-1", "echo"], { env, stdin: "through the proxy" });
    assertEquals([out.code, out.stdout], [0, "through the proxy"], out.stderr);
    const log = await Deno.readTextFile(proxy.log);
    const host = new URL(relay.url).host;
    // Both the daemon's link and the client's tunnel were CONNECTed through the proxy.
    match(log, new RegExp(`CONNECT.*${host.split(":")[0]}`));
    assertEquals((log.match(/Established connection to host/g) ?? []).length >= 2, true, log);
  } finally {
    await daemon?.stop();
    await proxy.proc.stop();
  }
});

Deno.test("a proxy that requires Basic authentication: credentials from the proxy URL", async () => {
  await using dir = await tempDir();
  const ca = await makeTestCa(dir);
  await using relay = await startRelay(`${dir}/data`, { tls: ca });
  const keys = await addAccount(relay.dataDir, "acme");
  await using echo = echoServer();
  const proxy = await startTinyproxy(dir, ["BasicAuth corp s3cr3tpw"]);
  const withAuth = via(proxy.url.replace("//", "//corp:s3cr3tpw@"));
  let daemon: Proc | undefined;
  try {
    daemon = await startDaemon(relay, {
      key: keys.deviceKey,
      id: "edge-1",
      stateDir: `${dir}/state`,
      services: { echo: echo.port },
      env: withAuth,
    });
    const env = clientEnv(relay, keys.clientKey, `${dir}/config`);
    const out = await od(["pipe", "edge-1", "echo"], { env: { ...env, ...withAuth }, stdin: "hi" });
    assertEquals([out.code, out.stdout], [0, "hi"], out.stderr);
    const listed = await od(["list", "--json"], { env: { ...env, ...withAuth } });
    assertEquals(listed.code, 0, listed.stderr);
    const wrong = via(proxy.url.replace("//", "//corp:wr0ngpw@"));
    for (const args of [["pipe", "edge-1", "echo"], ["list"]]) {
      const anonymous = await od(args, { env: { ...env, ...via(proxy.url) }, stdin: "" });
      assertOneSentence(
        anonymous,
        /the proxy \S+ requires a login \(HTTP 40[17].*USER:PASSWORD@/,
      );
      const denied = await od(args, { env: { ...env, ...wrong }, stdin: "" });
      assertOneSentence(
        denied,
        /the proxy \S+ rejected the user "corp" and its password \(HTTP 40[17]/,
      );
      ok(!denied.stderr.includes("wr0ngpw"), "the password is not repeated");
    }
  } finally {
    await daemon?.stop();
    await proxy.proc.stop();
  }
});
