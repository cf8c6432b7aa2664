/**
 * od on aarch64 (a Raspberry Pi's 64-bit OS), under qemu-user: the aarch64 Deno from the npm
 * package @deno/linux-arm64-glibc (installed by scripts/test) runs the one-file bundle against
 * Debian's arm64 C library. An aarch64 relay on node:sqlite, an aarch64 daemon and an aarch64
 * `od pipe` each carry 1 MiB byte-identical with x86_64 od on the other ends.
 *
 * Where qemu or the aarch64 Deno is missing the test says so and is skipped, except under CI,
 * where scripts/test has installed both and a missing piece is a failure.
 */
import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { Proc, randomBytes, tempDir } from "./_harness.ts";
import {
  addAccount,
  clientEnv,
  echoServer,
  type Relay,
  startDaemon,
  startRelay,
} from "./_fleet.ts";
import { buildBundle, bundleArgs } from "./_bundle.ts";

const SYSROOT = "/usr/aarch64-linux-gnu"; // Debian's libc6-arm64-cross
const QEMU = "/usr/bin/qemu-aarch64-static";
const ARM_DENO = Deno.env.get("OD_ARM64_DENO") ??
  `${
    Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME")}/.cache`
  }/od/deno-arm64-${Deno.version.deno}/node_modules/@deno/linux-arm64-glibc/deno`;
const EMULATED_START_MS = 120_000; // an emulated Deno takes seconds to start on a busy machine

function missing(): string | null {
  if (Deno.build.arch !== "x86_64") return `this host is ${Deno.build.arch}, not x86_64`;
  for (
    const [path, what] of [
      [QEMU, "qemu-aarch64-static (Debian: qemu-user-static)"],
      [`${SYSROOT}/lib/ld-linux-aarch64.so.1`, "the arm64 C library (libc6-arm64-cross)"],
      [ARM_DENO, "the aarch64 Deno (npm: @deno/linux-arm64-glibc)"],
    ]
  ) {
    try {
      Deno.statSync(path);
    } catch {
      return `${what} is not at ${path}; scripts/test installs it`;
    }
  }
  return null;
}

const why = missing();
if (why && Deno.env.get("CI") !== "true") console.error(`aarch64 test skipped: ${why}`);

/** Runs the bundle as od on emulated aarch64; `piped` gives stdin and stdout to the caller. */
function arm(
  name: string,
  bundle: string,
  args: string[],
  options: { env?: Record<string, string>; piped?: boolean; denoDir: string },
): Proc {
  return new Proc(name, ["-L", SYSROOT, ARM_DENO, ...bundleArgs(bundle), ...args], {
    cmd: QEMU,
    env: { DENO_DIR: options.denoDir, ...options.env },
    ...(options.piped ? { stdin: "piped", stdout: "piped" } as const : {}),
  });
}

async function sha256(data: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Feeds `input` to a running `od pipe` and checks every byte comes back. */
async function throughPipe(proc: Proc, input: Uint8Array, what: string): Promise<void> {
  const writing = (async () => {
    const w = proc.child.stdin!.getWriter();
    await w.write(input);
    await w.close();
  })();
  const [output] = await Promise.all([new Response(proc.child.stdout).bytes(), writing]);
  const { code } = await proc.status;
  assertEquals(code, 0, `${what}: ${proc.stderr}`);
  assertEquals(output.length, input.length, what);
  assertEquals(await sha256(output), await sha256(input), `${what}: bytes differ`);
}

Deno.test({
  name: "aarch64 under qemu: relay, daemon and od pipe, each with x86_64 peers, 1 MiB intact",
  ignore: why !== null && Deno.env.get("CI") !== "true",
  async fn(t) {
    if (why) throw new Error(`aarch64 test cannot run in CI: ${why}`);
    await using dir = await tempDir();
    const bundle = await buildBundle(dir);
    const denoDir = `${dir}/arm-deno-dir`; // the aarch64 Deno's own caches
    await using echo = echoServer();
    const input = randomBytes(1 << 20);

    await t.step("od version under qemu reports aarch64", async () => {
      const out = await arm("arm version", bundle, ["version", "--json"], { denoDir }).output();
      assertEquals(out.code, 0, out.stderr);
      assertEquals(JSON.parse(out.stdout).target, "aarch64-unknown-linux-gnu");
    });

    // The emulated roles start at once: emulation, not od, is what takes time here.
    const scenarios: Record<string, () => Promise<void>> = {
      "an aarch64 relay on node:sqlite, x86_64 daemon and od pipe": async () => {
        const data = `${dir}/arm-relay`;
        await using relay = arm("arm relay", bundle, [
          "serve",
          "--listen",
          "127.0.0.1:0",
          "--data",
          data,
        ], { denoDir });
        const url = (await relay.waitFor(/relay listening url=(\S+)/, EMULATED_START_MS))[1];
        const asRelay: Relay = {
          proc: relay,
          url,
          port: Number(new URL(url).port),
          dataDir: data,
          [Symbol.asyncDispose]: async () => {},
        };
        const keys = await addAccount(data, "acme"); // x86_64 od admin on the aarch64 store
        await using _daemon = await startDaemon(asRelay, {
          key: keys.deviceKey,
          id: "x86-dev",
          stateDir: `${dir}/x86-state-1`,
          services: { echo: echo.port },
        });
        await using pipe = new Proc("x86 pipe", ["pipe", "x86-dev", "echo"], {
          env: clientEnv(asRelay, keys.clientKey, `${dir}/config-1`),
          stdin: "piped",
          stdout: "piped",
        });
        await throughPipe(pipe, input, "x86_64 pipe → aarch64 relay → x86_64 daemon");
      },
      "an aarch64 daemon and an aarch64 od pipe, x86_64 relay": async () => {
        await using relay = await startRelay(`${dir}/x86-relay`);
        const keys = await addAccount(relay.dataDir, "acme");
        const env = clientEnv(relay, keys.clientKey, `${dir}/config-2`);
        await using daemon = arm("arm daemon", bundle, [
          "daemon",
          "--relay",
          relay.url,
          "--key",
          keys.deviceKey,
          "--id",
          "arm-dev",
          "--state",
          `${dir}/arm-state`,
          "--service",
          `echo=127.0.0.1:${echo.port}`,
        ], { denoDir });
        await using _x86 = await startDaemon(relay, {
          key: keys.deviceKey,
          id: "x86-dev",
          stateDir: `${dir}/x86-state-2`,
          services: { echo: echo.port },
        });
        await daemon.waitFor(/connected to relay/, EMULATED_START_MS);
        await using x86Pipe = new Proc("x86 pipe", ["pipe", "arm-dev", "echo"], {
          env,
          stdin: "piped",
          stdout: "piped",
        });
        await throughPipe(x86Pipe, input, "x86_64 pipe → x86_64 relay → aarch64 daemon");
        await using armPipe = arm("arm pipe", bundle, ["pipe", "x86-dev", "echo"], {
          env,
          piped: true,
          denoDir,
        });
        await throughPipe(armPipe, input, "aarch64 pipe → x86_64 relay → x86_64 daemon");
      },
    };
    const results = await Promise.allSettled(Object.values(scenarios).map((run) => run()));
    const failed = Object.keys(scenarios).flatMap((name, i) => {
      const r = results[i];
      return r.status === "rejected" ? [`${name}: ${r.reason}`] : [];
    });
    assertEquals(failed, [], failed.join("\n\n"));
  },
});
