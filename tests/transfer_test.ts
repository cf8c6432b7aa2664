/**
 * File transfer and forwarding through od with the real tools: od rsync, od scp, od sftp, plain
 * ssh and rsync with the config od ssh-config prints, and od forward serving HTTP.
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { od, Proc, randomBytes, tempDir, treeDigest } from "./_harness.ts";
import { startSshFleet } from "./_sshd.ts";

/** A tree of `count` files, one of them `bigSize` bytes. */
async function makeTree(root: string, count: number, bigSize: number): Promise<void> {
  await Deno.mkdir(`${root}/a/b`, { recursive: true });
  for (let i = 0; i < count - 1; i++) {
    const sub = i % 3 === 0 ? "" : i % 3 === 1 ? "a/" : "a/b/";
    await Deno.writeFile(`${root}/${sub}file-${i}.bin`, randomBytes(1 + (i * 4099) % 20000));
  }
  await Deno.writeFile(`${root}/a/big.bin`, randomBytes(bigSize));
}

function stat(stdout: string, name: string): number {
  const m = new RegExp(`${name}: ([\\d,]+)`).exec(stdout);
  if (!m) throw new Error(`no "${name}" in rsync --stats output:\n${stdout}`);
  return Number(m[1].replaceAll(",", ""));
}

Deno.test("od rsync, scp, sftp, ssh-config and forward move data intact", async (t) => {
  await using dir = await tempDir();
  const web = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (req) => {
      await new Promise((r) => setTimeout(r, 20)); // overlap the 20 requests
      return new Response(`page ${new URL(req.url).pathname}`);
    },
  );
  await using fleet = await startSshFleet(dir, { web: web.addr.port });
  const { env, sshArgs } = fleet;
  const rsh = `ssh ${sshArgs.join(" ")}`;
  try {
    await t.step(
      "od rsync -a: 200 files with one of 50 MiB, then an almost empty re-run",
      async () => {
        await makeTree(`${dir}/src`, 200, 50 << 20);
        const args = [
          "rsync",
          "-a",
          "--stats",
          "-e",
          rsh,
          `${dir}/src/`,
          `root@edge-1:${dir}/dst/`,
        ];
        const first = await od(args, { env });
        assertEquals(first.code, 0, first.stderr);
        assertEquals(await treeDigest(`${dir}/dst`), await treeDigest(`${dir}/src`));
        ok(stat(first.stdout, "Total bytes sent") > 50 << 20);
        const second = await od(args, { env });
        assertEquals(second.code, 0, second.stderr);
        assertEquals(stat(second.stdout, "Number of regular files transferred"), 0);
        ok(stat(second.stdout, "Total bytes sent") < 64 * 1024, second.stdout);
      },
    );

    await t.step("od scp in both directions", async () => {
      const file = `${dir}/scp-up.bin`;
      await Deno.writeFile(file, randomBytes(3 << 20));
      const up = await od(["scp", ...sshArgs, file, `root@edge-1:${dir}/scp-remote.bin`], { env });
      assertEquals(up.code, 0, up.stderr);
      const down = await od([
        "scp",
        ...sshArgs,
        `edge-1:${dir}/scp-remote.bin`,
        `${dir}/scp-down.bin`,
      ], { env });
      assertEquals(down.code, 0, down.stderr);
      assertEquals(await Deno.readFile(`${dir}/scp-down.bin`), await Deno.readFile(file));
    });

    await t.step("od sftp -b: batch put and get", async () => {
      await Deno.writeFile(`${dir}/sftp-up.bin`, randomBytes(1 << 20));
      await Deno.writeTextFile(
        `${dir}/batch`,
        `put ${dir}/sftp-up.bin ${dir}/sftp-remote.bin\nget ${dir}/sftp-remote.bin ${dir}/sftp-down.bin\n`,
      );
      const out = await od(["sftp", ...sshArgs, "-b", `${dir}/batch`, "root@edge-1"], { env });
      assertEquals(out.code, 0, out.stderr);
      assertEquals(
        await Deno.readFile(`${dir}/sftp-down.bin`),
        await Deno.readFile(`${dir}/sftp-up.bin`),
      );
    });

    await t.step("plain ssh and rsync with the config od ssh-config prints", async () => {
      const cfg = await od(["ssh-config"], { env });
      assertEquals(cfg.code, 0, cfg.stderr);
      match(cfg.stdout, /^Host \*\.od$/m);
      match(cfg.stdout, /HostKeyAlias acme\.edge-1\.od/);
      await Deno.writeTextFile(`${dir}/ssh_config`, cfg.stdout);
      const key = ["-i", fleet.sshd.clientKey, "-o", "IdentitiesOnly=yes"];
      const ssh = new Deno.Command("ssh", {
        args: [
          "-F",
          `${dir}/ssh_config`,
          ...key,
          "-o",
          "BatchMode=yes",
          "root@edge-1.od",
          "echo plain",
        ],
        env,
        stdout: "piped",
        stderr: "piped",
      });
      const out = await ssh.output();
      assertEquals(
        new TextDecoder().decode(out.stdout),
        "plain\n",
        new TextDecoder().decode(out.stderr),
      );
      const rsync = await new Deno.Command("rsync", {
        args: [
          "-a",
          "-e",
          `ssh -F ${dir}/ssh_config ${key.join(" ")}`,
          `${dir}/src/`,
          `edge-1.od:${dir}/dst2/`,
        ],
        env,
        stderr: "piped",
      }).output();
      assertEquals(rsync.code, 0, new TextDecoder().decode(rsync.stderr));
      assertEquals(await treeDigest(`${dir}/dst2`), await treeDigest(`${dir}/src`));
    });

    await t.step("od forward serves 20 concurrent HTTP requests", async () => {
      await using fwd = new Proc("od forward", ["forward", "0", "edge-1", "web"], { env });
      const port = Number((await fwd.waitFor(/Forwarding 127\.0\.0\.1:(\d+)/))[1]);
      const bodies = await Promise.all(
        Array.from(
          { length: 20 },
          (_, i) => fetch(`http://127.0.0.1:${port}/r${i}`).then((r) => r.text()),
        ),
      );
      assertEquals(bodies, Array.from({ length: 20 }, (_, i) => `page /r${i}`));
    });
  } finally {
    await web.shutdown();
  }
});
