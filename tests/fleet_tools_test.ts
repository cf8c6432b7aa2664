/**
 * Fleet tools with the real programs: Ansible (Debian's ansible) driven by od's dynamic
 * inventory, and od exec over several devices with one failing.
 */
import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { OD, od, Proc, tempDir } from "./_harness.ts";
import { startDaemon } from "./_fleet.ts";
import { startSshFleet } from "./_sshd.ts";

Deno.test("ansible with od's inventory, and od exec across five devices", async (t) => {
  await using dir = await tempDir();
  await using fleet = await startSshFleet(dir);
  const { env, relay, keys } = fleet;
  const extra: Proc[] = [];
  const addDevice = async (id: string, sshPort: number) => {
    extra.push(
      await startDaemon(relay, {
        key: keys.deviceKey,
        id,
        stateDir: `${dir}/state-${id}`,
        services: { ssh: sshPort },
        extraArgs: ["--host-key", fleet.sshd.hostKeyPub],
      }),
    );
  };
  try {
    await addDevice("edge-2", fleet.sshd.port);
    await od(["props", "--device", "edge-1", "set", "site=zurich", "group=web"], { env });
    await od(["props", "--device", "edge-2", "set", "site=basel", "group=web,db"], { env });

    const ansibleEnv = {
      ...env,
      HOME: dir,
      ANSIBLE_SSH_ARGS: "", // no ControlPersist masters outliving the test
      ANSIBLE_PYTHON_INTERPRETER: "auto_silent",
      ANSIBLE_LOCAL_TEMP: `${dir}/ansible-local`,
      ANSIBLE_REMOTE_TEMP: `${dir}/ansible-remote`,
      ANSIBLE_NOCOLOR: "1",
    };
    const ansible = (...args: string[]) =>
      new Proc(
        "ansible",
        ["-i", OD, "-u", "root", "--private-key", fleet.sshd.clientKey, ...args],
        {
          cmd: "ansible",
          env: ansibleEnv,
        },
      ).output();

    await t.step("od inventory --list: hosts, groups from properties, ssh settings", async () => {
      const out = await od(["inventory", "--list"], { env });
      assertEquals(out.code, 0, out.stderr);
      const inv = JSON.parse(out.stdout);
      assertEquals(inv.all.hosts.sort(), ["edge-1", "edge-2"]);
      assertEquals(inv.web.hosts.sort(), ["edge-1", "edge-2"]);
      assertEquals(inv.db.hosts, ["edge-2"]);
      assertEquals(inv.site_zurich.hosts, ["edge-1"]);
      match(inv._meta.hostvars["edge-1"].ansible_ssh_common_args, /ProxyCommand=.* pipe %n ssh/);
      match(inv._meta.hostvars["edge-1"].ansible_ssh_common_args, /StrictHostKeyChecking=yes/);
    });

    await t.step("ansible all -m ping and -m shell succeed through od", async () => {
      const ping = await ansible("all", "-m", "ping");
      assertEquals(ping.code, 0, ping.stdout + ping.stderr);
      match(ping.stdout, /edge-1 \| SUCCESS/);
      match(ping.stdout, /edge-2 \| SUCCESS/);
      const shell = await ansible("all", "-m", "shell", "-a", "echo from-$((40+2))");
      assertEquals(shell.code, 0, shell.stdout + shell.stderr);
      assertEquals(shell.stdout.match(/from-42/g)?.length, 2);
    });

    await t.step("group selection by property", async () => {
      const out = await ansible("site_zurich", "-m", "ping");
      assertEquals(out.code, 0, out.stdout + out.stderr);
      match(out.stdout, /edge-1 \| SUCCESS/);
      ok(!out.stdout.includes("edge-2"), out.stdout);
    });

    await t.step(
      "od exec on 5 devices, one failing: prefixed output, summary, exit code",
      async () => {
        await addDevice("edge-3", fleet.sshd.port);
        await addDevice("edge-4", fleet.sshd.port);
        await addDevice("edge-5", deadPort()); // its ssh service is down
        const sshOpts = ["-i", fleet.sshd.clientKey, "-o", "IdentitiesOnly=yes", "-l", "root"];
        const out = await od(["exec", ...sshOpts, "--", "echo", "hello"], { env });
        assertEquals(out.code, 1, out.stderr);
        for (const id of ["edge-1", "edge-2", "edge-3", "edge-4"]) {
          match(out.stdout, new RegExp(`^${id}: hello$`, "m"));
          match(out.stdout, new RegExp(`^${id}\\s+0\\s+ok$`, "m"));
        }
        match(out.stdout, /^edge-5\s+255\s+failed$/m);
        match(out.stderr, /^edge-5: /m);
        match(out.stdout, /4 of 5 devices succeeded/);
        const filtered = await od(["exec", ...sshOpts, "site=basel", "--", "true"], { env });
        assertEquals(filtered.code, 0, filtered.stderr);
        match(filtered.stdout, /1 of 1 devices succeeded/);
      },
    );

    await t.step("od exec --max-errors stops starting devices", async () => {
      const sshOpts = ["-i", fleet.sshd.clientKey, "-o", "IdentitiesOnly=yes", "-l", "root"];
      const out = await od([
        "exec",
        "--parallel",
        "1",
        "--max-errors",
        "1",
        ...sshOpts,
        "--",
        "exit 3",
      ], { env });
      assertEquals(out.code, 1);
      assertEquals(out.stdout.match(/\bfailed$/gm)?.length, 1);
      assertEquals(out.stdout.match(/\bskipped$/gm)?.length, 4);
    });
  } finally {
    for (const p of extra) await p.stop();
  }
});

function deadPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}
