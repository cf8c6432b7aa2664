/**
 * The units od installs allow a list of system calls (`SystemCallFilter=`); a call outside it
 * fails with EPERM, which in production would surface as a strange error far from its cause.
 * So: run a relay and a daemon under strace, doing what they do in service (enrol, connect,
 * tunnel bytes, answer a list, take a property through the daemon's socket), and check every
 * system call they made is one their units allow.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { OD, od, Proc, tempDir } from "./_harness.ts";
import { addAccount, echoServer } from "./_fleet.ts";

/** The system calls a SystemCallFilter= group or name stands for, groups expanded. */
async function expand(item: string, seen = new Set<string>()): Promise<Set<string>> {
  if (!item.startsWith("@")) return new Set([item]);
  if (seen.has(item)) return new Set();
  seen.add(item);
  const out = await new Deno.Command("systemd-analyze", {
    args: ["syscall-filter", item],
    stdout: "piped",
  }).output();
  const names = new Set<string>();
  for (const line of new TextDecoder().decode(out.stdout).split("\n").slice(1)) {
    const word = line.trim();
    if (!word || word.startsWith("#")) continue;
    for (const n of await expand(word, seen)) names.add(n);
  }
  return names;
}

/** What the unit's SystemCallFilter= lines allow, applied in order: `~` lines remove. */
async function allowedBy(unit: string): Promise<Set<string>> {
  const allowed = new Set<string>();
  for (const [, value] of unit.matchAll(/^SystemCallFilter=(.*)$/gm)) {
    const deny = value.startsWith("~");
    for (const item of value.replace(/^~/, "").split(/\s+/).filter(Boolean)) {
      for (const n of await expand(item)) {
        if (deny) allowed.delete(n);
        else allowed.add(n);
      }
    }
  }
  return allowed;
}

/** od under strace; stopping it stops od itself (strace would detach and leave it running). */
function traced(name: string, trace: string, args: string[], env = {}): Proc & {
  stopTraced(): Promise<void>;
} {
  const proc = new Proc(name, ["-f", "-qq", "-o", trace, OD, ...args], { cmd: "strace", env });
  return Object.assign(proc, {
    async stopTraced() {
      const children = await Deno.readTextFile(`/proc/${proc.pid}/task/${proc.pid}/children`)
        .catch(() => "");
      for (const pid of children.trim().split(/\s+/).filter(Boolean)) {
        try {
          Deno.kill(Number(pid), "SIGTERM");
        } catch {
          // already gone
        }
      }
      await proc.output();
    },
  });
}

async function syscallsIn(trace: string): Promise<Set<string>> {
  const names = new Set<string>();
  for (const line of (await Deno.readTextFile(trace)).split("\n")) {
    const m = /^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]/.exec(line);
    if (m) names.add(m[1]);
  }
  return names;
}

Deno.test("every system call od makes as relay and daemon is one its units allow", async () => {
  await using dir = await tempDir();
  await using echo = echoServer();
  const trace = (n: string) => `${dir}/${n}.trace`;
  const relay = traced("relay", trace("relay"), [
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--data",
    `${dir}/data`,
  ]);
  let daemon: ReturnType<typeof traced> | undefined;
  try {
    const url = (await relay.waitFor(/relay listening url=(\S+)/))[1];
    const keys = await addAccount(`${dir}/data`, "acme");
    daemon = traced("daemon", trace("daemon"), [
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
      `echo=127.0.0.1:${echo.port}`,
    ]);
    await daemon.waitFor(/connected to relay/);
    const env = { OD_RELAY: url, OD_KEY: keys.clientKey, OD_CONFIG_DIR: `${dir}/config` };
    const input = "through the traced relay and daemon\n".repeat(8192);
    const piped = await od(["pipe", "edge-1", "echo"], { env, stdin: input });
    assertEquals([piped.code, piped.stdout.length], [0, input.length], piped.stderr);
    const props = await od(["props", "set", "site=lab"], { env: { OD_STATE_DIR: `${dir}/state` } });
    assertEquals(props.code, 0, props.stderr);
    const listed = await od(["list"], { env });
    assertEquals(listed.code, 0, listed.stderr);
  } finally {
    await daemon?.stopTraced();
    await relay.stopTraced();
  }
  for (
    const [role, unitArgs] of [
      ["relay", ["serve", "install", "--print"]],
      ["daemon", ["daemon", "install", "--print"]],
    ] as const
  ) {
    const unit = (await od([...unitArgs])).stdout;
    const allowed = await allowedBy(unit);
    const used = await syscallsIn(trace(role));
    const refused = [...used].filter((n) => !allowed.has(n)).sort();
    assertEquals(refused, [], `${role} makes system calls its unit refuses: ${refused.join(" ")}`);
  }
});
