/**
 * systemd units for `od daemon install` and `od serve install`: the hardening both share, the
 * quoting ExecStart needs, and putting a unit in place (or into an image root) and enabling it.
 *
 * Both units run as root, sandboxed: the daemon because its machine fingerprint reads root-only
 * facts (the DMI product UUID) exactly as the enrolment at install time did, and both so that
 * `od admin` or `od props` run by root share files with the service without ownership juggling.
 * What root would add is taken away again: no capabilities beyond binding a low port, no new
 * privileges, a read-only system, no home directories, private /tmp and devices.
 */
import { OdError } from "../shared/errors.ts";
import { serviceArgv } from "./self.ts";

/** Where units live on the system (or under an image root). */
export const UNIT_DIR = "/etc/systemd/system";

/**
 * The `--root` of an install or uninstall (an image root; "" for this system), without trailing
 * slashes; OdError when installing into this system without root.
 */
export function installRoot(root: string | undefined): string {
  const cleaned = root?.replace(/\/+$/, "") ?? "";
  if (!cleaned && Deno.uid() !== 0) {
    throw new OdError(
      `installing a service writes to ${UNIT_DIR} and needs root: run it with sudo ` +
        "(or add --print to see the unit)",
    );
  }
  return cleaned;
}

/** A unit to write: its file name and the text. */
export interface Unit {
  name: string;
  text: string;
}

/**
 * Quotes one ExecStart word for systemd: `%` specifiers and `$` variables are taken literally.
 * The executable (`first`) is quoted too if it starts with one of systemd's prefixes (`-@:+!`).
 */
export function execWord(word: string, first = false): string {
  const escaped = word.replaceAll("%", "%%").replaceAll("$", "$$$$");
  const plain = /^[A-Za-z0-9_\-./=:,@+%$]+$/.test(escaped);
  if (plain && !(first && /^[@\-:+!]/.test(escaped))) return escaped;
  return `"${escaped.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/** Paths systemd's ProtectHome= hides; od run from a checkout there needs read-only instead. */
const HOME_PREFIXES = ["/home/", "/root/", "/run/user/"];

/** The `[Service]` lines that run od (with `args`) and sandbox it; `writable` is extra. */
export function serviceLines(args: string[], options: {
  writable?: string[];
  capabilities: string;
}): string[] {
  const argv = [...serviceArgv(), ...args];
  const underHome = argv.some((w) => HOME_PREFIXES.some((p) => w.startsWith(p)));
  const viaDeno = argv.length > 1 && argv[1] === "run"; // deno run main.ts or dist/od.js
  return [
    `ExecStart=${argv.map((w, i) => execWord(w, i === 0)).join(" ")}`,
    ...(viaDeno
      ? [
        "# od runs as a script under deno, which keeps its compiled-code cache here.",
        "CacheDirectory=%N",
        "Environment=DENO_DIR=%C/%N DENO_NO_UPDATE_CHECK=1",
      ]
      : []),
    ...(options.writable ?? []).map((p) => `ReadWritePaths=${execWord(p)}`),
    "",
    "NoNewPrivileges=yes",
    `CapabilityBoundingSet=${options.capabilities}`,
    "ProtectSystem=strict",
    ...(underHome
      ? ["# od itself lives under a home directory, so homes stay visible, read-only."]
      : []),
    `ProtectHome=${underHome ? "read-only" : "yes"}`,
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "PrivateMounts=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "SystemCallArchitectures=native",
    "# The JavaScript engine probes memory protection keys (@pkey). A call outside this list",
    "# fails with EPERM instead of killing od.",
    "SystemCallFilter=@system-service @pkey",
    "SystemCallFilter=~@privileged @resources",
    "# SQLite (the relay's store, and Deno's own code caches), run as root, hands new journal",
    "# files to the database file's owner; with no capabilities that can only be root itself.",
    "SystemCallFilter=fchown",
    "SystemCallErrorNumber=EPERM",
    "UMask=0077",
    "# Not set, on purpose: MemoryDenyWriteExecute= (the JavaScript engine compiles code at run",
    "# time), PrivateNetwork= and IPAddressDeny= (od reaches the network by design).",
  ];
}

/** The comment that heads every unit od writes. */
export function unitHeader(what: string, command: string): string[] {
  return [
    `# ${what}, as written by \`${command}\`.`,
    "# Regenerate it with the same command rather than editing it; `--print` shows it.",
  ];
}

/** True when systemd is the running init (the test sd_booted(3) uses). */
export function systemdRunning(): boolean {
  try {
    return Deno.statSync("/run/systemd/system").isDirectory;
  } catch {
    return false;
  }
}

async function systemctl(args: string[]): Promise<void> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("systemctl", { args, stdout: "piped", stderr: "piped" })
      .output();
  } catch (err) {
    throw new OdError(`cannot run systemctl ${args.join(" ")}: ${(err as Error).message}`);
  }
  if (!out.success) {
    const why = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1);
    throw new OdError(`systemctl ${args.join(" ")} failed: ${why || `exit ${out.code}`}`);
  }
}

function hasSystemctl(): boolean {
  return ["/usr/bin/systemctl", "/bin/systemctl"].some((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });
}

/**
 * Writes `unit` (mode 0644) under `root` (default /), enables it, and starts or restarts it
 * where systemd runs. Returns sentences saying what was done.
 */
export async function installUnit(unit: Unit, root = ""): Promise<string[]> {
  const path = `${root}${UNIT_DIR}/${unit.name}`;
  try {
    Deno.mkdirSync(`${root}${UNIT_DIR}`, { recursive: true });
    Deno.writeTextFileSync(path, unit.text, { mode: 0o644 });
    Deno.chmodSync(path, 0o644);
  } catch (err) {
    throw new OdError(`cannot write ${path}: ${(err as Error).message}`);
  }
  const done = [`wrote ${path}`];
  if (!hasSystemctl()) {
    done.push("systemctl is not installed here: start the command in ExecStart yourself");
    return done;
  }
  if (root) {
    await systemctl([`--root=${root}`, "enable", unit.name]);
    done.push(`enabled ${unit.name} in ${root} (it starts when that system boots)`);
  } else if (systemdRunning()) {
    await systemctl(["daemon-reload"]);
    await systemctl(["enable", unit.name]);
    await systemctl(["restart", unit.name]);
    done.push(`enabled and started ${unit.name}; see: systemctl status ${unit.name}`);
  } else {
    await systemctl(["enable", unit.name]);
    done.push(`enabled ${unit.name}; systemd is not running here, so it starts at the next boot`);
  }
  return done;
}

/** Stops, disables and removes `name` under `root`; returns sentences saying what was done. */
export async function uninstallUnit(name: string, root = ""): Promise<string[]> {
  const path = `${root}${UNIT_DIR}/${name}`;
  const done: string[] = [];
  let exists = true;
  try {
    Deno.statSync(path);
  } catch {
    exists = false;
  }
  if (exists && hasSystemctl()) {
    if (root) await systemctl([`--root=${root}`, "disable", name]);
    else if (systemdRunning()) await systemctl(["disable", "--now", name]);
    else await systemctl(["disable", name]);
    done.push(`disabled ${name}`);
  }
  if (exists) {
    Deno.removeSync(path);
    done.push(`removed ${path}`);
    if (!root && systemdRunning()) await systemctl(["daemon-reload"]);
  } else {
    done.push(`${path} does not exist; nothing to remove`);
  }
  return done;
}
