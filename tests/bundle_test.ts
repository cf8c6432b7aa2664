/**
 * dist/od.js, the one-file bundle, is all of od: run with `deno run` and the compiled binary's
 * permissions, with an empty DENO_DIR, inside a network namespace that has nothing but loopback
 * (so any download would fail), it is a relay, a daemon, `od pipe` and the ProxyCommand of
 * `od ssh` to a real sshd.
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { Proc, randomBytes, tempDir } from "./_harness.ts";
import { startSshd } from "./_sshd.ts";
import { buildBundle, bundleArgs } from "./_bundle.ts";

/** A network namespace with only loopback up, deleted on dispose. */
async function isolatedNetns(): Promise<string & AsyncDisposable> {
  const name = `od-bundle-${crypto.randomUUID().slice(0, 8)}`;
  const ip = (...args: string[]) => new Deno.Command("ip", { args, stderr: "piped" }).output();
  const added = await ip("netns", "add", name);
  if (!added.success) throw new Error(`ip netns add: ${new TextDecoder().decode(added.stderr)}`);
  await ip("netns", "exec", name, "ip", "link", "set", "lo", "up");
  return Object.assign(name.slice(), {
    [Symbol.asyncDispose]: async () => void await ip("netns", "del", name),
  }) as unknown as string & AsyncDisposable;
}

const ECHO = `
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log(listener.addr.port);
for await (const conn of listener) {
  (async () => {
    await conn.readable.pipeTo(conn.writable, { preventClose: true }).catch(() => {});
    await conn.closeWrite().catch(() => {});
  })();
}
`;

Deno.test("dist/od.js with an empty DENO_DIR and no network: relay, daemon, od pipe, od ssh", async () => {
  await using dir = await tempDir();
  const bundle = await buildBundle(dir);
  await using netns = await isolatedNetns();
  const denoDir = `${dir}/deno-dir`;
  await Deno.mkdir(denoDir);
  const env = { DENO_DIR: denoDir, HOME: dir, OD_CONFIG_DIR: `${dir}/config` };
  const inNetns = (
    name: string,
    args: string[],
    extra: ConstructorParameters<typeof Proc>[2] = {},
  ) =>
    new Proc(name, ["netns", "exec", netns, Deno.execPath(), ...args], {
      cmd: "ip",
      env,
      ...extra,
    });
  const od = async (args: string[], input?: Uint8Array) => {
    const p = inNetns(`od ${args[0]}`, [...bundleArgs(bundle), ...args], {
      stdin: input ? "piped" : "null",
      stdout: "piped",
    });
    const [out] = await Promise.all([
      new Response(p.child.stdout).bytes(),
      (async () => {
        if (!input) return;
        const w = p.child.stdin.getWriter();
        await w.write(input);
        await w.close();
      })(),
    ]);
    const { code, stderr } = await p.output();
    return { code, stdout: out, text: new TextDecoder().decode(out), stderr };
  };

  const version = await od(["version", "--json"]);
  assertEquals(version.code, 0, version.stderr);
  assertEquals(JSON.parse(version.text).form, "bundle");

  await using relay = inNetns("relay", [
    ...bundleArgs(bundle),
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--data",
    `${dir}/data`,
  ]);
  const url = (await relay.waitFor(/relay listening url=(\S+)/))[1];
  const account = await od(["admin", "--data", `${dir}/data`, "account", "add", "acme", "--json"]);
  assertEquals(account.code, 0, account.stderr);
  const keys = JSON.parse(account.text);

  const sshd = await startSshd(`${dir}/sshd`, netns);
  await using echo = new Proc("echo", ["netns", "exec", netns, Deno.execPath(), "eval", ECHO], {
    cmd: "ip",
    env: { DENO_DIR: `${dir}/echo-deno-dir` }, // not the bundle's: that one stays od's alone
  });
  const echoPort = await (async () => {
    for (let i = 0; i < 200 && !/\d+\n/.test(echo.stdout); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    return Number(echo.stdout.trim());
  })();
  ok(echoPort > 0, `echo server: ${echo.stderr}`);
  try {
    await using _daemon = inNetns("daemon", [
      ...bundleArgs(bundle),
      "daemon",
      "--relay",
      url,
      "--key",
      keys.deviceKey,
      "--id",
      "edge-1",
      "--state",
      `${dir}/state`,
      "--service",
      `ssh=127.0.0.1:${sshd.port}`,
      "--service",
      `echo=127.0.0.1:${echoPort}`,
      "--host-key",
      sshd.hostKeyPub,
    ]);
    await _daemon.waitFor(/connected to relay/);
    Object.assign(env, { OD_RELAY: url, OD_KEY: keys.clientKey });

    const input = randomBytes(1 << 20);
    const piped = await od(["pipe", "edge-1", "echo"], input);
    assertEquals(piped.code, 0, piped.stderr);
    ok(piped.stdout.length === input.length && piped.stdout.every((b, i) => b === input[i]));

    // od ssh runs the real ssh, whose ProxyCommand is the bundle again (deno run … od.js pipe).
    const ssh = await od([
      "ssh",
      "-F",
      "/dev/null",
      "-i",
      sshd.clientKey,
      "-o",
      "IdentitiesOnly=yes",
      "-o",
      "BatchMode=yes",
      "root@edge-1",
      "echo via the bundle; exit 3",
    ]);
    assertEquals([ssh.code, ssh.text, ssh.stderr], [3, "via the bundle\n", ""]);
    const config = await od(["ssh-config"]);
    match(
      config.text,
      new RegExp(`ProxyCommand .*deno run .*${bundle.replaceAll(".", "\\.")} pipe`),
    );
  } finally {
    await sshd.stop();
  }
  // Nothing was fetched: no remote modules and no npm packages in the DENO_DIR it started with.
  for await (const entry of Deno.readDir(denoDir)) {
    ok(!["remote", "deps"].includes(entry.name), `DENO_DIR/${entry.name} holds downloads`);
    if (entry.name === "npm") assertEquals([...Deno.readDirSync(`${denoDir}/npm`)], []);
  }
});
