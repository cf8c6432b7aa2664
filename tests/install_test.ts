/**
 * `od daemon install` / `od serve install`: the units they write pass `systemd-analyze verify`
 * and keep `systemd-analyze security`'s exposure at or below 2.0,
 * `--print` changes nothing, deploy/*.service are exactly what they write for /usr/local/bin/od,
 * and an install into a temporary root enrols the device, keeps the key out of the unit, and
 * leaves a unit whose ExecStart, run as written, brings the device online. (This machine has no
 * systemd as PID 1, so nothing is started by systemd itself; `--root` is systemctl's offline
 * mode.)
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { baseEnv, od, Proc, tempDir } from "./_harness.ts";
import { addAccount, assertOneSentence, clientEnv, echoServer, startRelay } from "./_fleet.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const UNITS = "etc/systemd/system";

/** The words of a unit's ExecStart, unquoted the way systemd does. */
function execStart(unit: string): string[] {
  const line = /^ExecStart=(.*)$/m.exec(unit)?.[1];
  if (!line) throw new Error(`no ExecStart in:\n${unit}`);
  const words = [...line.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) =>
    m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2]
  );
  return words.map((w) => w.replaceAll("%%", "%").replaceAll("$$", "$"));
}

async function verify(path: string): Promise<{ code: number; stderr: string }> {
  const out = await new Deno.Command("systemd-analyze", {
    args: ["verify", path],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

Deno.test("generated units pass systemd-analyze verify; deploy/ holds them for /usr/local/bin/od", async () => {
  await using dir = await tempDir();
  // An od executable that exists, so verify can check ExecStart's binary.
  const bin = `${dir}/bin/od`;
  await Deno.mkdir(`${dir}/bin`);
  await Deno.writeTextFile(bin, `#!/bin/sh\nexec ${ROOT}scripts/od "$@"\n`, { mode: 0o755 });
  const cases: [string, string[], Record<string, string>][] = [
    ["od-daemon.service", ["daemon", "install", "--print"], { OD_SELF: bin }],
    ["od-relay.service", ["serve", "install", "--print", "--trusted-proxy", "127.0.0.1"], {
      OD_SELF: bin,
    }],
    // From a checkout: deno runs main.ts, with its cache in CacheDirectory=.
    ["od-daemon.service", [
      "daemon",
      "install",
      "--print",
      "--state",
      "/srv/od state",
      "--service",
      "web=8080",
      "--keepalive",
      "20",
      "--host-key",
      "/etc/ssh/ssh_host_ed25519_key.pub",
    ], {}],
    ["od-relay.service", [
      "serve",
      "install",
      "--print",
      "--listen",
      "0.0.0.0:443",
      "--data",
      "/srv/od-relay",
      "--tls-cert",
      "/etc/od/fullchain.pem",
      "--tls-key",
      "/etc/od/privkey.pem",
    ], {}],
  ];
  for (const [i, [name, args, env]] of cases.entries()) {
    const out = await od(args, { env });
    assertEquals(out.code, 0, out.stderr);
    await Deno.mkdir(`${dir}/${i}`);
    await Deno.writeTextFile(`${dir}/${i}/${name}`, out.stdout);
    const checked = await verify(`${dir}/${i}/${name}`);
    assertEquals(checked, { code: 0, stderr: "" }, `${args.join(" ")}:\n${out.stdout}`);
    match(out.stdout, /^ProtectSystem=strict$/m);
    match(out.stdout, /^RestartPreventExitStatus=2$/m);
    // The exposure score (0 best, 10 worst) stays at or below 2.0; the README says why not lower.
    const security = await new Deno.Command("systemd-analyze", {
      args: ["security", "--offline=true", "--threshold=20", `${dir}/${i}/${name}`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const report = new TextDecoder().decode(security.stdout);
    ok(security.success, `${name} exposure above 2.0:\n${report.split("\n").slice(-2).join("\n")}`);
  }
  // deploy/ is what install writes for od installed as /usr/local/bin/od.
  for (
    const [file, args] of [
      ["od-daemon.service", ["daemon", "install", "--print"]],
      ["od-relay.service", ["serve", "install", "--print", "--trusted-proxy", "127.0.0.1"]],
    ] as const
  ) {
    const out = await od([...args], { env: { OD_SELF: "/usr/local/bin/od" } });
    assertEquals(out.stdout, await Deno.readTextFile(`${ROOT}deploy/${file}`), `deploy/${file}`);
  }
});

Deno.test("od daemon install enrols, writes a unit without the key, and that unit's command brings the device online", async (t) => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const keys = await addAccount(relay.dataDir, "acme");
  await using echo = echoServer();
  const root = `${dir}/root`;
  const state = `${dir}/state`;
  const unitPath = `${root}/${UNITS}/od-daemon.service`;
  const proxy = "http://corp:s3cret@proxy.example:3128"; // kept for the service, privately
  const install = (extra: string[], key = keys.deviceKey) =>
    od([
      "daemon",
      "install",
      "--root",
      root,
      "--relay",
      relay.url,
      "--key",
      key,
      "--id",
      "edge-1",
      "--state",
      state,
      "--service",
      `echo=127.0.0.1:${echo.port}`,
      ...extra,
    ], { env: { HTTPS_PROXY: proxy } });

  await t.step("--print changes nothing", async () => {
    const out = await install(["--print"]);
    assertEquals(out.code, 0, out.stderr);
    match(out.stdout, /^ExecStart=.* daemon --state \S+ --service echo=127\.0\.0\.1:\d+$/m);
    ok(!out.stdout.includes(keys.deviceKey), "the key is not in the unit");
    assertEquals([await exists(state), await exists(root)], [false, false]);
    const listed = await od(["list", "--json"], {
      env: clientEnv(relay, keys.clientKey, `${dir}/config`),
    });
    assertEquals(JSON.parse(listed.stdout), []);
  });

  await t.step("a refused key fails in front of the person, and no unit is written", async () => {
    const out = await install([], "od_device_" + "A".repeat(43));
    assertOneSentence(out, /cannot enrol with relay .*key/i);
    assertEquals(await exists(unitPath), false);
  });

  await t.step("install enrols, writes and enables the unit; the key stays out of it", async () => {
    const out = await install([]);
    assertEquals(out.code, 0, out.stderr);
    match(out.stdout, /enrolled as device "edge-1" of account "acme"/);
    match(out.stdout, /enabled od-daemon\.service in /);
    const unit = await Deno.readTextFile(unitPath);
    ok(!unit.includes(keys.deviceKey), "the key is not in the unit");
    assertEquals((await Deno.stat(unitPath)).mode! & 0o777, 0o644);
    const link = `${root}/${UNITS}/multi-user.target.wants/od-daemon.service`;
    assertEquals(await Deno.readLink(link), "/etc/systemd/system/od-daemon.service");
    const saved = JSON.parse(await Deno.readTextFile(`${state}/state.json`));
    assertEquals([saved.device, saved.enrollKey], ["edge-1", undefined]);
    assertEquals(await verify(unitPath), { code: 0, stderr: "" });
    const envFile = `${root}/etc/default/od-daemon`;
    match(await Deno.readTextFile(envFile), new RegExp(`^HTTPS_PROXY=${proxy}$`, "m"));
    assertEquals((await Deno.stat(envFile)).mode! & 0o777, 0o600);
    ok(!unit.includes("s3cret"), "the proxy password is not in the world-readable unit");
  });

  await t.step(
    "the unit's ExecStart, run as written, connects as the enrolled device",
    async () => {
      const [cmd, ...args] = execStart(await Deno.readTextFile(unitPath));
      await using daemon = new Proc("unit daemon", args, { cmd, env: baseEnv() });
      await daemon.waitFor(/connected to relay device=edge-1/);
      const out = await od(["pipe", "edge-1", "echo"], {
        env: clientEnv(relay, keys.clientKey, `${dir}/config`),
        stdin: "through the installed unit",
      });
      assertEquals([out.code, out.stdout], [0, "through the installed unit"], out.stderr);
    },
  );

  await t.step("uninstall removes the unit and keeps the state unless --purge", async () => {
    const out = await od(["daemon", "uninstall", "--root", root, "--state", state]);
    assertEquals(out.code, 0, out.stderr);
    assertEquals(await exists(unitPath), false);
    assertEquals(await exists(`${root}/${UNITS}/multi-user.target.wants/od-daemon.service`), false);
    assertEquals(await exists(`${root}/etc/default/od-daemon`), false);
    ok(await exists(`${state}/state.json`), "state kept");
    const purged = await od(["daemon", "uninstall", "--root", root, "--state", state, "--purge"]);
    assertEquals(purged.code, 0, purged.stderr);
    assertEquals(await exists(state), false);
  });
});

Deno.test("od serve install --init creates the account now and keeps --init out of the unit", async () => {
  await using dir = await tempDir();
  const root = `${dir}/root`;
  const data = `${dir}/relay-data`;
  const out = await od(["serve", "install", "--root", root, "--data", data, "--init"]);
  assertEquals(out.code, 0, out.stderr);
  match(out.stdout, /client key: od_client_\S+/);
  const unit = await Deno.readTextFile(`${root}/${UNITS}/od-relay.service`);
  match(unit, new RegExp(`^ExecStart=.* serve --data ${data}$`, "m"));
  match(unit, new RegExp(`^ReadWritePaths=${data}$`, "m"));
  const listed = await od(["admin", "--data", data, "account", "list"]);
  match(listed.stdout, /default/);
  const relative = await od(["serve", "install", "--print", "--data", "od-data"]);
  assertOneSentence(relative, /--data must be an absolute path/, 2);
});
