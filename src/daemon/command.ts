/**
 * `od daemon`: runs the device side in the foreground. SIGINT or SIGTERM stops it gracefully
 * (open tunnels may finish for --grace seconds); a second one stops it at once.
 */
import { list, type OptionSpec, parse, str, type Values } from "../cli/args.ts";
import { UsageError } from "../shared/errors.ts";
import { log } from "../shared/log.ts";
import { idProblem } from "../protocol/names.ts";
import { normalizeRelayUrl, readCa } from "../cli/relay_options.ts";
import { defaultStateDir } from "../store/device_state.ts";
import { parseServiceOptions } from "./services.ts";
import { type DaemonOptions, runDaemon } from "./daemon.ts";
import { DEFAULT_GRACE_S } from "./stop.ts";
import { NO_PROXY_SETTING, parseProxyUrl } from "../transport/proxy.ts";

const USAGE = `Usage: od daemon [--relay URL] [--key KEY] [--id ID] [--state DIR]
                 [--service NAME=HOST:PORT]... [--host-key FILE]... [--ca FILE]
                 [--proxy URL|none|env] [--keepalive SECONDS] [--grace SECONDS]
       od daemon install --relay URL --key KEY [daemon options] [--print]   (see its --help)
       od daemon uninstall [--purge]

Keeps this device reachable through the relay. The first run enrols with the account's device
key and stores the device's own credential in the state directory (mode 0600); later runs need
only --state. Options given on a later run replace the stored ones.

Options:
  --relay URL                 the relay, e.g. https://relay.example.com
  --key KEY                   the account's device key (first run only; or OD_DEVICE_KEY,
                              which keeps it out of the process list)
  --id ID                     ask for this device ID instead of a random one
  --state DIR                 state directory (default $OD_STATE_DIR, /var/lib/od as root,
                              else $XDG_STATE_HOME/od)
  --service NAME=HOST:PORT    expose a service; repeatable. Also NAME=PORT, NAME=unix:/path.
                              Default: ssh=127.0.0.1:22. Only the services named are reachable.
  --host-key FILE             sshd host public key to report; repeatable
                              (default /etc/ssh/ssh_host_*_key.pub)
  --ca FILE                   trust this CA certificate for the relay's TLS
  --proxy URL                 reach the relay through this HTTP CONNECT proxy
                              (http://[USER:PASSWORD@]HOST:PORT); "none" connects directly
                              whatever the environment says; "env" forgets a stored one. Kept
                              in the state. Without it: HTTPS_PROXY for https:// relays,
                              HTTP_PROXY for http:// ones, and NO_PROXY
  --keepalive SECONDS         ping interval; a link silent for 2.5 intervals is dead
                              (default 15: dead links are found within 37.5 s)
  --grace SECONDS             on SIGTERM, how long open tunnels may finish before the
                              daemon exits (default ${DEFAULT_GRACE_S}); a second SIGTERM ends it at once

Check on a running daemon with od status.
`;

/** The options of `od daemon` (also accepted by `od daemon install`). */
export const DAEMON_OPTIONS: OptionSpec = {
  relay: { type: "string" },
  key: { type: "string" },
  id: { type: "string" },
  state: { type: "string" },
  service: { type: "string", multiple: true },
  "host-key": { type: "string", multiple: true },
  ca: { type: "string" },
  keepalive: { type: "string" },
  grace: { type: "string" },
  proxy: { type: "string" },
};

/** Checks a --proxy value: a URL, `none` or `env`. */
export function proxyOption(value: string | undefined): string | undefined {
  if (value === undefined || value === NO_PROXY_SETTING || value === "env") return value;
  const url = parseProxyUrl(value);
  if (!url) {
    throw new UsageError(
      `--proxy "${
        value.replace(/\/\/[^@/]*@/, "//…@")
      }" must be http://[USER:PASSWORD@]HOST:PORT, none or env`,
    );
  }
  return value;
}

/** Checks parsed `od daemon` options and turns them into runDaemon's (without a signal). */
export function daemonOptions(values: Values, stateDir?: string): DaemonOptions {
  const id = str(values, "id");
  if (id !== undefined && idProblem(id)) throw new UsageError(idProblem(id)!);
  const keepalive = values.keepalive === undefined ? undefined : Number(values.keepalive);
  if (keepalive !== undefined && !(keepalive >= 1 && keepalive <= 3600)) {
    throw new UsageError("--keepalive must be 1 to 3600 seconds");
  }
  const grace = values.grace === undefined ? undefined : Number(values.grace);
  if (grace !== undefined && !(grace >= 0 && grace <= 3600)) {
    throw new UsageError("--grace must be 0 to 3600 seconds");
  }
  const relay = str(values, "relay");
  const caFile = str(values, "ca") ?? Deno.env.get("OD_CA");
  return {
    stateDir: stateDir ?? str(values, "state") ?? defaultStateDir(),
    relay: relay === undefined ? undefined : normalizeRelayUrl(relay),
    key: str(values, "key") ?? Deno.env.get("OD_DEVICE_KEY"),
    id,
    ca: caFile ? readCa(caFile) : undefined,
    services: parseServiceOptions(list(values, "service")),
    hostKeyFiles: list(values, "host-key"),
    keepalive,
    grace,
    proxy: proxyOption(str(values, "proxy")),
  };
}

/** Entry point of `od daemon`. */
export async function daemonCommand(args: string[]): Promise<number> {
  if (args[0] === "install" || args[0] === "uninstall") {
    const install = await import("./install.ts");
    const rest = args.slice(1);
    return args[0] === "install"
      ? await install.daemonInstallCommand(rest)
      : await install.daemonUninstallCommand(rest);
  }
  const { values } = parse(args, DAEMON_OPTIONS, USAGE, { positionals: false });
  const options = daemonOptions(values);
  const controller = new AbortController();
  const kill = new AbortController();
  const stop = () => (controller.signal.aborted ? kill : controller).abort();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await runDaemon({ ...options, signal: controller.signal, kill: kill.signal });
  log.info("daemon stopped");
  return 0;
}
