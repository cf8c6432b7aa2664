/**
 * Bad networks built for real: a network namespace joined to the test's own by a veth pair, with
 * addresses from the benchmarking range 198.18.0.0/15 (RFC 2544: never routed anywhere), and
 * nftables rules inside the namespace that make its link drop every packet silently (no reset,
 * no ICMP) until restored. Every name has a random suffix; dispose deletes the namespace, which
 * takes its veth end, its rules and, with it, the peer end.
 */
import { Proc } from "./_harness.ts";

/** A namespace with one link to the test's namespace. */
export interface LinkedNetns extends AsyncDisposable {
  name: string;
  /** The namespace's address (its end of the link). */
  inner: string;
  /** The test namespace's address on the link: where the namespace reaches the relay. */
  outer: string;
  /** A Proc running `args` (a command and its arguments) inside the namespace. */
  spawn(name: string, args: string[], options?: ConstructorParameters<typeof Proc>[2]): Proc;
  /** Drops every packet on the namespace's link, both ways, without a word. */
  blackhole(): Promise<void>;
  /** Lets packets through again. */
  restore(): Promise<void>;
}

const decoder = new TextDecoder();

async function run(args: string[], stdin?: string): Promise<void> {
  const child = new Deno.Command(args[0], {
    args: args.slice(1),
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  if (!out.success) throw new Error(`${args.join(" ")}: ${decoder.decode(out.stderr)}`);
}

function randomHex(bytes: number): string {
  return [...crypto.getRandomValues(new Uint8Array(bytes))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A /30 of 198.18.0.0/15 that no interface here uses yet. */
async function freeSubnet(): Promise<[string, string]> {
  const out = await new Deno.Command("ip", { args: ["-o", "-4", "addr"], stdout: "piped" })
    .output();
  const used = decoder.decode(out.stdout);
  for (let i = 0; i < 50; i++) {
    const [a, b, c] = crypto.getRandomValues(new Uint8Array(3));
    const base = `198.${18 + (a & 1)}.${b}.`;
    const host = (c & 0xfc) % 252;
    const outer = `${base}${host + 1}`;
    const inner = `${base}${host + 2}`;
    if (!used.includes(` ${outer}/`) && !used.includes(` ${inner}/`)) return [outer, inner];
  }
  throw new Error("no free /30 in 198.18.0.0/15");
}

/** Creates a namespace linked to this one by a veth pair; `prefix` shows up in its name. */
export async function linkedNetns(prefix: string): Promise<LinkedNetns> {
  const id = randomHex(3);
  const name = `od-${prefix}-${id}`;
  const outside = `odv${id}o`; // interface names are at most 15 characters
  const inside = `odv${id}i`;
  const [outer, inner] = await freeSubnet();
  await run(["ip", "netns", "add", name]);
  try {
    await run(["ip", "link", "add", outside, "type", "veth", "peer", "name", inside]);
    await run(["ip", "link", "set", inside, "netns", name]);
    await run(["ip", "addr", "add", `${outer}/30`, "dev", outside]);
    await run(["ip", "link", "set", outside, "up"]);
    const exec = ["ip", "netns", "exec", name];
    await run([...exec, "ip", "addr", "add", `${inner}/30`, "dev", inside]);
    await run([...exec, "ip", "link", "set", inside, "up"]);
    await run([...exec, "ip", "link", "set", "lo", "up"]);
  } catch (err) {
    await run(["ip", "netns", "del", name]).catch(() => {});
    await run(["ip", "link", "del", outside]).catch(() => {});
    throw err;
  }
  const table = "odtest_blackhole";
  return {
    name,
    inner,
    outer,
    spawn: (procName, args, options = {}) =>
      new Proc(procName, ["netns", "exec", name, ...args], { ...options, cmd: "ip" }),
    blackhole: () =>
      run(
        ["ip", "netns", "exec", name, "nft", "-f", "-"],
        [
          `table inet ${table} {`,
          `  chain in { type filter hook input priority 0; policy accept; iifname "${inside}" drop; }`,
          `  chain out { type filter hook output priority 0; policy accept; oifname "${inside}" drop; }`,
          "}",
          "",
        ].join("\n"),
      ),
    restore: () => run(["ip", "netns", "exec", name, "nft", "delete", "table", "inet", table]),
    async [Symbol.asyncDispose]() {
      await run(["ip", "netns", "del", name]).catch(() => {});
      await run(["ip", "link", "del", outside]).catch(() => {}); // gone with the namespace
    },
  };
}

/** The scripts/od shim, to run inside a namespace. */
export const OD_SHIM = new URL("../scripts/od", import.meta.url).pathname;
