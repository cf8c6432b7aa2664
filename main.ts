/**
 * od: SSH-first remote access to fleets of Linux devices. One executable, three roles: relay
 * (`od serve`), device daemon (`od daemon`) and client (`od pipe`, `od ssh`, `od list` …).
 * This file picks the command, runs it, and turns a thrown error into one sentence and an exit
 * code: 0 ok, 1 failure, 2 usage error.
 */
import { errorMessage, HelpRequested, OdError } from "./src/shared/errors.ts";

type Command = (args: string[]) => number | Promise<number>;

// Each command's module is imported only when it runs: `od pipe` starts on every ssh
// connection, and loading the relay and the store for it would double its start-up time.
const COMMANDS: Record<string, { load: () => Promise<Command>; summary: string }> = {
  serve: {
    load: async () => (await import("./src/relay/command.ts")).serveCommand,
    summary: "run the relay",
  },
  admin: {
    load: async () => (await import("./src/admin/command.ts")).adminCommand,
    summary: "manage accounts and keys in the relay's data directory",
  },
  daemon: {
    load: async () => (await import("./src/daemon/command.ts")).daemonCommand,
    summary: "keep this device reachable through the relay",
  },
  status: {
    load: async () => (await import("./src/daemon/status_command.ts")).statusCommand,
    summary: "on a device: how its daemon's link to the relay stands",
  },
  login: {
    load: async () => (await import("./src/client/commands.ts")).loginCommand,
    summary: "store the relay URL and your key",
  },
  list: {
    load: async () => (await import("./src/client/commands.ts")).listCommand,
    summary: "list your devices",
  },
  pipe: {
    load: async () => (await import("./src/client/commands.ts")).pipeCommand,
    summary: "connect stdin/stdout to a service on a device",
  },
  ssh: {
    load: async () => (await import("./src/client/ssh_family.ts")).sshCommand,
    summary: "ssh to a device (every ssh option works)",
  },
  scp: {
    load: async () => (await import("./src/client/ssh_family.ts")).scpCommand,
    summary: "scp to and from devices (DEV:path)",
  },
  sftp: {
    load: async () => (await import("./src/client/ssh_family.ts")).sftpCommand,
    summary: "sftp to a device",
  },
  rsync: {
    load: async () => (await import("./src/client/ssh_family.ts")).rsyncCommand,
    summary: "rsync to and from devices (DEV:path)",
  },
  forward: {
    load: async () => (await import("./src/client/forward.ts")).forwardCommand,
    summary: "forward a local port to a service on a device",
  },
  "ssh-config": {
    load: async () => (await import("./src/client/ssh_config.ts")).sshConfigCommand,
    summary: "print an ssh_config block so plain ssh reaches DEV.od",
  },
  props: {
    load: async () => (await import("./src/client/props.ts")).propsCommand,
    summary: "read and edit device properties",
  },
  events: {
    load: async () => (await import("./src/client/events.ts")).eventsCommand,
    summary: "follow device events; --await online waits for a device",
  },
  exec: {
    load: async () => (await import("./src/client/exec.ts")).execCommand,
    summary: "run a command on every matching online device",
  },
  inventory: {
    load: async () => (await import("./src/client/inventory.ts")).inventoryCommand,
    summary: "Ansible dynamic inventory (--list, --host)",
  },
  device: {
    load: async () => (await import("./src/client/device.ts")).deviceCommand,
    summary: "rename or remove a device",
  },
  key: {
    load: async () => (await import("./src/client/manage.ts")).keyCommand,
    summary: "add, list or revoke your account's keys (full key)",
  },
  share: {
    load: async () => (await import("./src/client/manage.ts")).shareCommand,
    summary: "share devices with another account (full key)",
  },
  audit: {
    load: async () => (await import("./src/client/manage.ts")).auditCommand,
    summary: "show who connected where, and what was refused (full key)",
  },
  version: {
    load: async () => (await import("./src/cli/version_command.ts")).versionCommand,
    summary: "print od's, the protocol's and the runtime's versions and the target",
  },
  "known-hosts": {
    load: async () => (await import("./src/client/ssh_config.ts")).knownHostsCommand,
    summary: "show, accept or forget pinned device host keys",
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) =>
    `  ${name.padEnd(width)}  ${c.summary}`
  );
  return `Usage: od COMMAND [ARGS…]

SSH-first remote access to devices behind NAT, firewalls and proxies.

Commands:
${lines.join("\n")}

Run od COMMAND --help for a command's options. od --version prints the version.
Client commands take --proxy URL (or none) right after the command's name, e.g.
od ssh --proxy http://proxy.corp:3128 pi; OD_PROXY does the same for every command.
`;
}

// Roles with options of their own; every other command is a client of the relay.
const NOT_CLIENTS = new Set(["serve", "admin", "daemon", "status", "version", "login"]);

/**
 * `od COMMAND --proxy URL …`: any client command takes a proxy right after its name. It goes
 * into OD_PROXY, which the client's config reads and which ssh's ProxyCommand (od pipe) inherits.
 */
function takeProxy(name: string, rest: string[]): string[] {
  if (NOT_CLIENTS.has(name)) return rest;
  const [first, second] = rest;
  if (first === "--proxy" && second !== undefined) {
    Deno.env.set("OD_PROXY", second);
    return rest.slice(2);
  }
  if (first?.startsWith("--proxy=")) {
    Deno.env.set("OD_PROXY", first.slice("--proxy=".length));
    return rest.slice(1);
  }
  return rest;
}

async function main(args: string[]): Promise<number> {
  const [name, ...given] = args;
  const rest = name === undefined ? given : takeProxy(name, given);
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    (name === undefined ? Deno.stderr : Deno.stdout).writeSync(new TextEncoder().encode(usage()));
    return name === undefined ? 2 : 0;
  }
  if (name === "--version") return await run(COMMANDS.version, rest);
  // Ansible runs an executable inventory as `INVENTORY --list`: od answers like od inventory.
  if (name === "--list" || name === "--host") return await run(COMMANDS.inventory, args);
  // Own names only: `od constructor` is an unknown command, not Object.prototype's.
  return await run(Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined, rest, name);
}

async function run(
  command: { load: () => Promise<Command> } | undefined,
  rest: string[],
  name?: string,
): Promise<number> {
  if (!command) {
    console.error(`od: unknown command "${name}" (see od --help)`);
    return 2;
  }
  try {
    return await (await command.load())(rest);
  } catch (err) {
    if (err instanceof HelpRequested) {
      console.log(err.usage.trimEnd());
      return 0;
    }
    if (err instanceof OdError) {
      console.error(`od: ${err.message}`);
      return err.exitCode;
    }
    console.error(`od: internal error: ${errorMessage(err)}`);
    if (Deno.env.get("OD_DEBUG")) console.error(err);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
