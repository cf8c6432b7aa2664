/**
 * `od ssh` against a real sshd through a real relay and daemon: exit codes, separate streams,
 * piped data, port forwarding, an interactive terminal, host key pinning, and failures.
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { baseEnv, eventually, OD, od, Proc, randomBytes, tempDir, treeDigest } from "./_harness.ts";
import { startSshFleet } from "./_sshd.ts";

/** Runs a shell pipeline with od's environment. */
async function sh(script: string, env: Record<string, string>) {
  const out = await new Deno.Command("sh", {
    args: ["-c", script],
    env: baseEnv({ ...env, OD: OD }),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Single-quotes an argument list for sh -c. */
const q = (args: string[]) => args.map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(" ");

Deno.test("od ssh runs the real ssh end to end", async (t) => {
  await using dir = await tempDir();
  const web = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => new Response(`device web ${new URL(req.url).pathname}`),
  );
  await using fleet = await startSshFleet(dir);
  const { env, sshArgs } = fleet;
  try {
    await t.step("exit code of the remote command, no prompt", async () => {
      const out = await od(["ssh", ...sshArgs, "-o", "BatchMode=yes", "root@edge-1", "exit 7"], {
        env,
      });
      assertEquals(out.code, 7, out.stderr);
      assertEquals(out.stderr, "");
    });

    await t.step("stdout and stderr arrive separately", async () => {
      const out = await od(["ssh", ...sshArgs, "edge-1", "echo out; echo err >&2"], { env });
      assertEquals([out.code, out.stdout, out.stderr], [0, "out\n", "err\n"]);
    });

    await t.step("finished sessions are audited as ok, not as clients that vanished", async () => {
      // ssh sends its ProxyCommand SIGHUP as it exits; od pipe lets the ending stream finish.
      const tunnels = await eventually("two audited sessions", async () => {
        const out = await od(["admin", "--data", fleet.relay.dataDir, "audit", "--json"]);
        const rows = JSON.parse(out.stdout) as { action: string; result: string }[];
        const found = rows.filter((r) => r.action === "tunnel");
        return found.length >= 2 && found;
      });
      assertEquals(tunnels.map((r) => r.result), tunnels.map(() => "ok"));
    });

    await t.step("tar c dir | od ssh dev 'tar x -C dst' copies a tree byte-identical", async () => {
      const src = `${dir}/tree`;
      await Deno.mkdir(`${src}/sub/deeper`, { recursive: true });
      for (let i = 0; i < 20; i++) {
        await Deno.writeFile(
          `${src}/${i % 3 ? "sub/" : "sub/deeper/"}f${i}`,
          randomBytes(i * 7919),
        );
      }
      await Deno.writeFile(`${src}/big`, randomBytes(8 << 20));
      const dst = `${dir}/copy`;
      await Deno.mkdir(dst);
      const cmd = `tar c -C ${src} . | "$OD" ssh ${q(sshArgs)} edge-1 'tar x -C ${dst}'`;
      const out = await sh(cmd, env);
      assertEquals(out.code, 0, out.stderr);
      assertEquals(await treeDigest(dst), await treeDigest(src));
    });

    await t.step("-L forwarding reaches a service on the device's loopback", async () => {
      const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const local = (probe.addr as Deno.NetAddr).port;
      probe.close();
      const spec = `${local}:127.0.0.1:${web.addr.port}`;
      await using fwd = new Proc("ssh -L", ["ssh", ...sshArgs, "-N", "-L", spec, "edge-1"], {
        env,
      });
      const body = await eventually("the -L port to answer", async () => {
        const res = await fetch(`http://127.0.0.1:${local}/through-ssh`);
        return await res.text();
      });
      assertEquals(body, "device web /through-ssh");
      ok(fwd.stderr === "", fwd.stderr);
    });

    await t.step("an interactive session in a real terminal", async () => {
      await interactive(`"$OD" ssh ${q(sshArgs)} root@edge-1`, env);
    });

    await t.step("a tunnel that cannot open: od's sentence, then ssh's, exit 255", async () => {
      const out = await od(["ssh", ...sshArgs, "root@nope-1", "true"], { env });
      assertEquals(out.code, 255);
      const lines = out.stderr.trim().split("\n");
      match(lines[0], /^od: no device "nope-1" in account "acme" or shared with it$/);
      ok(lines.length > 1 && !lines[1].startsWith("od:"), "ssh's own line follows");
    });

    await t.step("a swapped host key is refused with od's message until accepted", async () => {
      await fleet.sshd.swapHostKey();
      await fleet.restartDaemon(); // reports the new key
      const refused = await od(["ssh", ...sshArgs, "-o", "BatchMode=yes", "edge-1", "true"], {
        env,
      });
      assertEquals(refused.code, 255);
      match(
        refused.stderr,
        /^od: device "acme\.edge-1" reports a different host key .*od known-hosts accept acme\.edge-1/m,
      );
      match(refused.stderr, /REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
      const accept = await od(["known-hosts", "accept", "edge-1"], { env });
      assertEquals(accept.code, 0, accept.stderr);
      const again = await od(["ssh", ...sshArgs, "-o", "BatchMode=yes", "edge-1", "echo back"], {
        env,
      });
      assertEquals([again.code, again.stdout, again.stderr], [0, "back\n", ""]);
    });
  } finally {
    await web.shutdown();
  }
});

/** Drives `command` in tmux: waits for a prompt, runs a command, exits with `exit`. */
async function interactive(command: string, env: Record<string, string>): Promise<void> {
  const socket = `od-test-${crypto.randomUUID().slice(0, 8)}`;
  const tmux = (...args: string[]) =>
    new Deno.Command("tmux", {
      args: ["-L", socket, ...args],
      env: baseEnv({ ...env, OD }),
      stdout: "piped",
      stderr: "piped",
    })
      .output();
  const screen = async () =>
    new TextDecoder().decode((await tmux("capture-pane", "-p", "-t", "s")).stdout);
  try {
    const started = await tmux("new-session", "-d", "-s", "s", "-x", "120", "-y", "30", command);
    assertEquals(started.code, 0, new TextDecoder().decode(started.stderr));
    await eventually("a shell prompt", async () => /[#$] *$/m.test(await screen()), 15_000);
    await tmux("send-keys", "-t", "s", "echo answer-$((6*7))", "Enter");
    await eventually(
      "the command's output",
      async () => /^answer-42$/m.test(await screen()),
      10_000,
    );
    await tmux("send-keys", "-t", "s", "exit", "Enter");
    await eventually(
      "the session to end",
      async () => (await tmux("has-session", "-t", "s")).code !== 0,
      10_000,
    );
  } finally {
    await tmux("kill-server");
  }
}
