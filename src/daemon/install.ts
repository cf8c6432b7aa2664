/**
 * `od daemon install` and `od daemon uninstall`: a device made reachable in one command. Install
 * enrols first, exactly as the daemon's first run does (so a wrong key fails here, in front of the
 * person, and the key never reaches the unit), then writes a hardened systemd unit that runs
 * `od daemon --state DIR` and enables it.
 */
import { parse, str } from "../cli/args.ts";
import {
  installRoot,
  installUnit,
  serviceLines,
  uninstallUnit,
  type Unit,
  unitHeader,
} from "../cli/systemd.ts";
import { OdError, UsageError } from "../shared/errors.ts";
import { DAEMON_OPTIONS, daemonOptions } from "./command.ts";
import { type DaemonOptions, loadOrCreateState } from "./daemon.ts";
import { DEFAULT_GRACE_S } from "./stop.ts";
import { becomeClone, enrollDevice } from "./enroll.ts";
import { machineFingerprint } from "./fingerprint.ts";

/** The unit's file name. */
export const DAEMON_UNIT = "od-daemon.service";
/** Optional environment for the unit (an HTTPS_PROXY, say); install writes it mode 0600. */
export const DAEMON_ENV_FILE = "/etc/default/od-daemon";
const DEFAULT_STATE = "/var/lib/od";
const ENROL_TIMEOUT_MS = 60_000; // a person is waiting; the daemon itself would retry forever
const PROXY_VARS = [
  "HTTPS_PROXY",
  "https_proxy",
  "HTTP_PROXY",
  "http_proxy",
  "NO_PROXY",
  "no_proxy",
];
// systemd kills what is left this long after the grace period: time to close the link.
const STOP_SLACK_S = 10;

const INSTALL_USAGE = `Usage: od daemon install --relay URL --key KEY [--id ID] [--state DIR]
                         [--service NAME=TARGET]... [--host-key FILE]... [--ca FILE]
                         [--proxy URL] [--keepalive SECONDS] [--grace SECONDS]
                         [--print] [--root DIR]

Enrols this device (as the daemon's first run does) and installs the systemd unit
${DAEMON_UNIT}, which runs "od daemon --state DIR" (default ${DEFAULT_STATE}); enables and
starts it where systemd runs. The key is used once, here; the unit never holds it.
HTTPS_PROXY, HTTP_PROXY and NO_PROXY set now are kept for the service in ${DAEMON_ENV_FILE};
--proxy is kept in the state.

Options (and every od daemon option):
  --print        print the unit and change nothing
  --root DIR     write and enable the unit under DIR (a system image) instead of /;
                 enrolment still uses --state on this machine
`;

const UNINSTALL_USAGE = `Usage: od daemon uninstall [--state DIR] [--purge] [--root DIR]

Stops, disables and removes ${DAEMON_UNIT}. The state directory (the device's identity) is kept
so a later install is the same device, unless --purge is given.
`;

/** Where the state directory comes from in the unit: StateDirectory= under /var/lib. */
function stateLines(stateDir: string): string[] {
  const m = /^\/var\/lib\/([A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*)$/.exec(stateDir);
  return m
    ? [`StateDirectory=${m[1]}`, "StateDirectoryMode=0700"]
    : [`# The state directory ${stateDir} is outside /var/lib, so it is made writable here.`];
}

/** The unit that runs `od daemon` with `options`' state, services, host keys and keepalive. */
export function daemonUnit(options: DaemonOptions): Unit {
  const args = ["daemon", "--state", options.stateDir];
  if (options.keepalive !== undefined) args.push("--keepalive", String(options.keepalive));
  if (options.grace !== undefined) args.push("--grace", String(options.grace));
  for (const [name, target] of Object.entries(options.services ?? {})) {
    args.push("--service", `${name}=${target}`);
  }
  for (const file of options.hostKeyFiles ?? []) args.push("--host-key", file);
  const outsideVarLib = !options.stateDir.startsWith("/var/lib/");
  const text = [
    ...unitHeader("od device daemon", "od daemon install"),
    "[Unit]",
    "Description=od device daemon",
    "After=network-online.target",
    "Wants=network-online.target",
    "# Never give up: a device whose daemon stopped retrying is lost until someone reaches it.",
    "# RestartSec= below is what keeps a failing daemon from looping hot.",
    "StartLimitIntervalSec=0",
    "",
    "[Service]",
    "Type=simple",
    ...stateLines(options.stateDir),
    ...serviceLines(args, {
      writable: outsideVarLib ? [options.stateDir] : [],
      capabilities: "",
    }),
    `EnvironmentFile=-${DAEMON_ENV_FILE}`,
    "# Exit 2 is a usage error or a state directory without an enrolment: restarting cannot",
    "# fix it, so systemd stops and `systemctl status` shows od's sentence. Anything else (exit",
    "# 1: another daemon on this state, a state file with open permissions, a crash) is retried",
    "# every 15 s. Relay trouble never ends the process: od backs off up to 30 s by itself.",
    "Restart=always",
    "RestartSec=15",
    "RestartPreventExitStatus=2",
    "# SIGTERM lets open tunnels finish for the grace period (od daemon --grace), so a",
    "# restart does not cut a command running in an od ssh session.",
    `TimeoutStopSec=${(options.grace ?? DEFAULT_GRACE_S) + STOP_SLACK_S}`,
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
  return { name: DAEMON_UNIT, text };
}

/** Enrols with a deadline: an unreachable relay fails the install instead of waiting forever. */
async function enrol(options: DaemonOptions): Promise<string> {
  const state = loadOrCreateState(options);
  const before = state.device;
  if (!state.device || state.cloneFrom) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), ENROL_TIMEOUT_MS);
    const env = {
      stateDir: options.stateDir,
      fingerprint: await machineFingerprint(options.stateDir),
      backoff: (attempt: number) => Math.min(10_000, 500 * 2 ** attempt),
      sleep: (ms: number) =>
        new Promise<void>((resolve) => {
          const t = setTimeout(resolve, ms);
          controller.signal.addEventListener("abort", () => {
            clearTimeout(t);
            resolve();
          }, { once: true });
        }),
      signal: controller.signal,
    };
    try {
      if (state.cloneFrom) await becomeClone(state, env);
      else await enrollDevice(state, env);
    } finally {
      clearTimeout(timer);
    }
    if (!state.device) {
      throw new OdError(
        `cannot enrol with relay ${state.relay} within ${ENROL_TIMEOUT_MS / 1000} s; ` +
          "nothing was installed (run the same command again)",
      );
    }
  }
  const who = `device "${state.device}" of account "${state.account}"`;
  return before === state.device ? `already enrolled as ${who}` : `enrolled as ${who}`;
}

function writeProxyEnv(root: string): string | null {
  const lines = PROXY_VARS.flatMap((v) => {
    const value = Deno.env.get(v);
    return value ? [`${v}=${value}`] : [];
  });
  if (lines.length === 0) return null;
  const path = `${root}${DAEMON_ENV_FILE}`;
  Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  // 0600: a proxy URL may carry a password.
  Deno.writeTextFileSync(path, lines.join("\n") + "\n", { mode: 0o600 });
  Deno.chmodSync(path, 0o600);
  return `wrote ${path} (${lines.map((l) => l.split("=")[0]).join(", ")})`;
}

/** Entry point of `od daemon install`. */
export async function daemonInstallCommand(args: string[]): Promise<number> {
  const { values } = parse(
    args,
    { ...DAEMON_OPTIONS, print: { type: "boolean" }, root: { type: "string" } },
    INSTALL_USAGE,
    { positionals: false },
  );
  const options = daemonOptions(values, str(values, "state") ?? DEFAULT_STATE);
  if (!options.stateDir.startsWith("/")) {
    throw new UsageError(`--state must be an absolute path for a service, not ${options.stateDir}`);
  }
  const unit = daemonUnit(options);
  if (values.print) {
    console.log(unit.text.trimEnd());
    return 0;
  }
  const root = installRoot(str(values, "root"));
  console.log(await enrol(options));
  const proxy = writeProxyEnv(root);
  if (proxy) console.log(proxy);
  for (const line of await installUnit(unit, root)) console.log(line);
  return 0;
}

/** Entry point of `od daemon uninstall`. */
export async function daemonUninstallCommand(args: string[]): Promise<number> {
  const { values } = parse(
    args,
    { state: { type: "string" }, purge: { type: "boolean" }, root: { type: "string" } },
    UNINSTALL_USAGE,
    { positionals: false },
  );
  const root = installRoot(str(values, "root"));
  const stateDir = str(values, "state") ?? DEFAULT_STATE;
  for (const line of await uninstallUnit(DAEMON_UNIT, root)) console.log(line);
  try {
    Deno.removeSync(`${root}${DAEMON_ENV_FILE}`);
    console.log(`removed ${root}${DAEMON_ENV_FILE}`);
  } catch {
    // none was written
  }
  if (values.purge) {
    try {
      Deno.removeSync(stateDir, { recursive: true });
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) {
        throw new OdError(`cannot remove ${stateDir}: ${(err as Error).message}`);
      }
    }
    console.log(
      `removed ${stateDir}; the device stays listed on the relay until removed there ` +
        "(od device rm DEVICE)",
    );
  } else {
    console.log(`kept ${stateDir}: installing again makes this the same device`);
  }
  return 0;
}
