/**
 * Clone handling: a copy of an enrolled device's state directory becomes a child with a new
 * random ID whether the original is online, offline, or has not reconnected yet; and a daemon
 * killed at random moments of its (re)connection always keeps its ID.
 */
import { deepStrictEqual as assertEquals, notStrictEqual, ok } from "node:assert/strict";
import { od, Proc, tempDir } from "./_harness.ts";
import { addAccount, clientEnv, type Relay, startDaemon, startRelay } from "./_fleet.ts";

interface Listed {
  id: string;
  state: string;
  parent: string | null;
}

async function devices(env: Record<string, string>): Promise<Listed[]> {
  const out = await od(["list", "--json"], { env });
  assertEquals(out.code, 0, out.stderr);
  return JSON.parse(out.stdout);
}

async function copyDir(from: string, to: string): Promise<void> {
  const out = await new Deno.Command("cp", { args: ["-a", from, to] }).output();
  ok(out.success, `cp -a ${from} ${to}`);
}

/** Starts a daemon from an existing state directory and waits until it is connected. */
async function resume(state: string, relay: Relay): Promise<Proc> {
  const args = ["daemon", "--state", state, "--keepalive", "2"];
  if (relay.ca) args.push("--ca", relay.ca);
  const proc = new Proc(`daemon ${state}`, args);
  await proc.waitFor(/connected to relay device=(\S+)/);
  return proc;
}

function connectedAs(proc: Proc): string {
  return [...proc.stderr.matchAll(/connected to relay device=(\S+)/g)].at(-1)![1];
}

Deno.test("a copied state directory becomes a child; the original keeps its ID", async (t) => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const keys = await addAccount(relay.dataDir, "acme");
  const env = clientEnv(relay, keys.clientKey, `${dir}/config`);
  const original = `${dir}/original`;
  let daemon = await startDaemon(relay, {
    key: keys.deviceKey,
    id: "orig-1",
    stateDir: original,
    services: {},
  });
  const procs: Proc[] = [];
  try {
    await t.step("(a) copy started while the original is online", async () => {
      await copyDir(original, `${dir}/copy-a`);
      const copy = await resume(`${dir}/copy-a`, relay);
      procs.push(copy);
      notStrictEqual(connectedAs(copy), "orig-1");
      const list = await devices(env);
      assertEquals(list.find((d) => d.id === connectedAs(copy))?.parent, "orig-1");
      assertEquals(list.find((d) => d.id === "orig-1")?.state, "online");
    });

    await t.step("(b) copy started while the original is offline", async () => {
      await daemon.stop();
      await copyDir(original, `${dir}/copy-b`);
      const copy = await resume(`${dir}/copy-b`, relay);
      procs.push(copy);
      notStrictEqual(connectedAs(copy), "orig-1");
      daemon = await resume(original, relay);
      assertEquals(connectedAs(daemon), "orig-1");
    });

    await t.step("(c) copy made and started before the original ever reconnects", async () => {
      await daemon.stop();
      await copyDir(original, `${dir}/copy-c`);
      const copy = await resume(`${dir}/copy-c`, relay);
      procs.push(copy);
      await copy.stop();
      await resume(`${dir}/copy-c`, relay).then((p) => procs.push(p)); // the copy restarts too
      daemon = await resume(original, relay);
      assertEquals(connectedAs(daemon), "orig-1");
      assertEquals(
        connectedAs(procs.at(-1)!),
        connectedAs(copy),
        "a restarted copy keeps its new ID",
      );
    });

    await t.step("three distinct children of orig-1, all online with the original", async () => {
      const list = await devices(env);
      const children = list.filter((d) => d.parent === "orig-1");
      assertEquals(children.length, 3);
      assertEquals(new Set(children.map((d) => d.id)).size, 3);
      ok(list.every((d) => d.state === "online"), JSON.stringify(list));
    });
  } finally {
    for (const p of procs) await p.stop();
    await daemon.stop();
  }
});

Deno.test("kill -9 at 50 random moments of (re)connection never changes a device's ID", async () => {
  await using dir = await tempDir();
  await using relay = await startRelay(`${dir}/data`);
  const keys = await addAccount(relay.dataDir, "acme");
  const env = clientEnv(relay, keys.clientKey, `${dir}/config`);
  const state = `${dir}/state`;
  const args = [
    "daemon",
    "--relay",
    relay.url,
    "--key",
    keys.deviceKey,
    "--state",
    state,
    "--keepalive",
    "2",
  ];
  let beforeOnline = 0;
  let afterOnline = 0;
  let online = 0; // how long start-up to online takes once enrolled, measured after the first ten
  for (let i = 0; i < 50; i++) {
    if (i === 10) {
      // So that the later moments cover both sides of it however busy the machine is (fixed
      // ranges once left 4 of 50 kills before online).
      // The median of three, so one fast or slow start does not place all of them.
      const times: number[] = [];
      for (let t = 0; t < 3; t++) {
        const timed = new Proc("daemon run (timed)", args);
        const started = performance.now();
        await timed.waitFor(/connected to relay/);
        times.push(performance.now() - started);
        timed.signal("SIGKILL");
        await timed.output();
      }
      online = times.sort((a, b) => a - b)[1];
    }
    // Random moments from start-up through enrolment (the first ten, early), then connecting
    // and the first moments online: every other one before the time online took, the others
    // up to twice that.
    const proc = new Proc(`daemon run ${i}`, args);
    const at = i < 10
      ? Math.random() * 150
      : i % 2 === 0
      ? Math.random() * online * 0.8
      : online * (0.8 + Math.random() * 1.2);
    await new Promise((r) => setTimeout(r, at));
    proc.signal("SIGKILL");
    const { stderr } = await proc.output();
    if (/connected to relay/.test(stderr)) afterOnline++;
    else beforeOnline++;
  }
  console.log(`kills: ${beforeOnline} before, ${afterOnline} after`);
  ok(beforeOnline >= 5 && afterOnline >= 5, `kills: ${beforeOnline} before, ${afterOnline} after`);
  const final = await resume(state, relay);
  try {
    const list = await devices(env);
    assertEquals(list.length, 1, `expected one device, got ${JSON.stringify(list)}`);
    assertEquals(list[0].parent, null);
    assertEquals(connectedAs(final), list[0].id);
    const saved = JSON.parse(await Deno.readTextFile(`${state}/state.json`));
    assertEquals(saved.device, list[0].id);
  } finally {
    await final.stop();
  }
});
