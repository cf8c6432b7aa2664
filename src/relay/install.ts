/**
 * `od serve install` and `od serve uninstall`: the relay as a hardened systemd service. The
 * unit runs `od serve` with the options given here; `--init` is done at install time instead,
 * so the new account's keys are shown to the person installing and never reach the journal.
 */
import { type OptionSpec, parse, str, type Values } from "../cli/args.ts";
import {
  installRoot,
  installUnit,
  serviceLines,
  uninstallUnit,
  type Unit,
  unitHeader,
} from "../cli/systemd.ts";
import { OdError, UsageError } from "../shared/errors.ts";
import { printFirstRun, SERVE_OPTIONS, storeTarget } from "./command.ts";

/** The unit's file name. */
export const RELAY_UNIT = "od-relay.service";
const DEFAULT_DATA = "/var/lib/od-relay";
const DEFAULT_LISTEN = "127.0.0.1:8080";
// Every device link and tunnel is a socket; systemd's default soft limit of 1,024 would cap
// a relay at about a thousand devices. 524,288 is the hard limit systemd gives services.
const OPEN_FILES = 524288;
const PATH_OPTIONS = ["data", "tls-cert", "tls-key", "mesh-key", "store-password-file"];

const INSTALL_USAGE = `Usage: od serve install [od serve options] [--print] [--root DIR]

Installs the systemd unit ${RELAY_UNIT}, which runs "od serve" with the options given
(--data defaults to ${DEFAULT_DATA}), and enables and starts it where systemd runs. With
--init, the account "default" is created now and its keys are printed here, not in the journal.

Options (and every od serve option):
  --print        print the unit and change nothing
  --root DIR     write and enable the unit under DIR (a system image) instead of /
`;

const UNINSTALL_USAGE = `Usage: od serve uninstall [--data DIR] [--purge] [--root DIR]

Stops, disables and removes ${RELAY_UNIT}. The data directory (the store: accounts, devices,
audit) is kept unless --purge is given.
`;

/** The serve options as command-line words, in SERVE_OPTIONS' order, without `--init`. */
function serveArgs(values: Values, options: OptionSpec): string[] {
  const args: string[] = [];
  for (const [name, spec] of Object.entries(options)) {
    const v = values[name];
    if (name === "init" || v === undefined || v === false) continue;
    if (spec.type === "boolean") args.push(`--${name}`);
    else for (const one of Array.isArray(v) ? v : [String(v)]) args.push(`--${name}`, one);
  }
  return args;
}

/** The unit that runs `od serve ARGS` with its store in `dataDir`. */
export function relayUnit(args: string[], dataDir: string): Unit {
  const m = /^\/var\/lib\/([A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*)$/.exec(dataDir);
  const text = [
    ...unitHeader("od relay", "od serve install"),
    "[Unit]",
    "Description=od relay",
    "After=network-online.target",
    "Wants=network-online.target",
    "# Never give up on the relay; RestartSec= keeps a failing one from looping hot.",
    "StartLimitIntervalSec=0",
    "",
    "[Service]",
    "Type=simple",
    ...(m ? [`StateDirectory=${m[1]}`, "StateDirectoryMode=0700"] : []),
    ...serviceLines(["serve", ...args], {
      writable: m ? [] : [dataDir],
      capabilities: "CAP_NET_BIND_SERVICE", // --listen on port 443 as root, and nothing more
    }),
    `LimitNOFILE=${OPEN_FILES}`,
    "# Exit 2 is a usage error: restarting cannot fix it, so systemd stops and `systemctl",
    "# status` shows od's sentence. Anything else (exit 1: the address is in use, the store",
    "# cannot be opened, a crash) is retried every 5 s. SIGTERM stops the relay cleanly.",
    "Restart=always",
    "RestartSec=5",
    "RestartPreventExitStatus=2",
    "TimeoutStopSec=30",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
  return { name: RELAY_UNIT, text };
}

/** Entry point of `od serve install`. */
export async function serveInstallCommand(args: string[]): Promise<number> {
  const spec = { ...SERVE_OPTIONS, print: { type: "boolean" }, root: { type: "string" } } as const;
  const { values } = parse(args, spec, INSTALL_USAGE, { positionals: false });
  if (values.store === undefined) values.data ??= DEFAULT_DATA;
  for (const name of PATH_OPTIONS) {
    const v = str(values, name);
    if (v !== undefined && !v.startsWith("/")) {
      throw new UsageError(`--${name} must be an absolute path for a service, not ${v}`);
    }
  }
  const target = storeTarget(values);
  const dataDir = typeof target === "string" ? DEFAULT_DATA : target.dataDir;
  const unit = relayUnit(serveArgs(values, SERVE_OPTIONS), dataDir);
  if (values.print) {
    console.log(unit.text.trimEnd());
    return 0;
  }
  const root = installRoot(str(values, "root"));
  if (values.init) {
    const scheme = values["tls-cert"] ? "https" : "http";
    const url = str(values, "public-url") ??
      `${scheme}://${str(values, "listen") ?? DEFAULT_LISTEN}`;
    await printFirstRun(target, url, str(values, "store-password-file"));
  }
  for (const line of await installUnit(unit, root)) console.log(line);
  return 0;
}

/** Entry point of `od serve uninstall`. */
export async function serveUninstallCommand(args: string[]): Promise<number> {
  const { values } = parse(
    args,
    { data: { type: "string" }, purge: { type: "boolean" }, root: { type: "string" } },
    UNINSTALL_USAGE,
    { positionals: false },
  );
  const root = installRoot(str(values, "root"));
  const dataDir = str(values, "data") ?? DEFAULT_DATA;
  for (const line of await uninstallUnit(RELAY_UNIT, root)) console.log(line);
  if (values.purge) {
    try {
      Deno.removeSync(dataDir, { recursive: true });
      console.log(`removed ${dataDir} and the store in it`);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) {
        throw new OdError(`cannot remove ${dataDir}: ${(err as Error).message}`);
      }
    }
  } else {
    console.log(`kept ${dataDir} (the store)`);
  }
  return 0;
}
