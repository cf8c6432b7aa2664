/** `od serve`: runs the relay in the foreground until SIGINT or SIGTERM. */
import { list, type OptionSpec, parse, str, type Values } from "../cli/args.ts";
import { OdError, UsageError } from "../shared/errors.ts";
import { log } from "../shared/log.ts";
import { openStore, type StoreTarget } from "../store/open.ts";
import { StoreError } from "../store/types.ts";
import { isPgUrl } from "../store/pg/url.ts";
import { VERSION } from "../version.ts";
import { displayCommand } from "../cli/self.ts";
import { DEFAULT_DRAIN_S, runRelay } from "./server.ts";

const USAGE = `Usage: od serve [--listen HOST:PORT] [--data DIR | --store postgres://USER@HOST/DB]
                [--tls-cert FILE --tls-key FILE] [--public-url URL] [--init]
                [--metrics HOST:PORT] [--admit-rate N] [--drain SECONDS]
                [--mesh-key FILE [--mesh-url URL]]
       od serve install [serve options] [--print]     (a systemd unit; see its --help)
       od serve uninstall [--purge]

Runs the relay: the API and the WebSockets of devices and clients on one port.

Options:
  --listen HOST:PORT   address to listen on (default 127.0.0.1:8080; port 0 picks a free one)
  --data DIR           data directory holding the SQLite store (default ./od-data)
  --store URL          keep the store in PostgreSQL instead (postgres://USER@HOST[:PORT]/DB);
                       several relays may share it. The password comes from the URL, from
                       --store-password-file, PGPASSWORD or PGPASSFILE, and is never logged
  --store-password-file FILE
                       a file (mode 0600) whose first line is the PostgreSQL password
  --mesh-key FILE      a file (mode 0600) holding the secret the relays of a mesh share: with
                       it, clients of any relay of the store reach devices connected to any
                       other (make it with: openssl rand -hex 32)
  --mesh-url URL       where the other relays reach this one (an internal address, e.g.
                       http://10.0.0.5:8080; default: where it listens, unless that is every
                       address)
  --relay-id NAME      this relay's name among the relays (default: host name and a suffix)
  --heartbeat SECONDS  how often relays write their heartbeat; a relay silent for 3 of them
                       is dead (default 10; use the same value on every relay of a store)
  --tls-cert FILE      PEM certificate chain: serve HTTPS/WSS directly
  --tls-key FILE       PEM private key for --tls-cert
  --public-url URL     the URL devices and clients use, when it differs (reverse proxy)
  --init               if the store has no account yet, create "default" and print its keys
                       and the commands that attach a device and connect to it
  --trusted-proxy ADDR a reverse proxy (e.g. 127.0.0.1) whose X-Forwarded-For names the
                       client; repeatable. Throttling and the audit log then see real clients
  --event-retention D  days events are kept (default 30)
  --audit-retention D  days audit rows are kept (default 90)
  --keepalive SECONDS  the keepalive period announced to daemons; a link silent for 2.5
                       periods is closed (default 15, so dead links go within 37.5 s)
  --metrics HOST:PORT  serve Prometheus metrics at GET /metrics on this separate address
                       (off by default; e.g. 127.0.0.1:9464)
  --admit-rate N       new device links admitted per second; the rest are told to retry
                       later, spread out (default 500: 10,000 devices back in about 20 s)
  --drain SECONDS      when stopping, ask each daemon to reconnect at its own random moment
                       within this window (default 5; 0 = at once; for 10,000 devices, 20)
`;

/** Parses HOST:PORT, [V6]:PORT or :PORT. */
export function parseListen(value: string, flag = "--listen"): { hostname: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]*)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`${flag} "${value}" must be HOST:PORT`);
  return { hostname: m[1] ?? (m[2] || "0.0.0.0"), port };
}

function readPem(path: string, what: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (err) {
    throw new OdError(`cannot read ${what} ${path}: ${(err as Error).message}`);
  }
}

/** The options of `od serve` (also accepted by `od serve install`). */
export const SERVE_OPTIONS: OptionSpec = {
  listen: { type: "string" },
  data: { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "public-url": { type: "string" },
  init: { type: "boolean" },
  "event-retention": { type: "string" },
  "trusted-proxy": { type: "string", multiple: true },
  "audit-retention": { type: "string" },
  keepalive: { type: "string" },
  metrics: { type: "string" },
  "admit-rate": { type: "string" },
  drain: { type: "string" },
  store: { type: "string" },
  "store-password-file": { type: "string" },
  "mesh-url": { type: "string" },
  "mesh-key": { type: "string" },
  "relay-id": { type: "string" },
  heartbeat: { type: "string" },
};

/** The store the options name: the PostgreSQL URL of --store, else the SQLite --data dir. */
export function storeTarget(values: Values): StoreTarget {
  const url = str(values, "store");
  if (url !== undefined) {
    if (!isPgUrl(url)) {
      throw new UsageError(
        `--store must be a postgres://USER@HOST/DB URL, not "${url.slice(0, 40)}"`,
      );
    }
    if (str(values, "data") !== undefined) {
      throw new UsageError("--store and --data name two stores; give one of them");
    }
    return url;
  }
  return { dataDir: str(values, "data", "./od-data")! };
}

/** Where the store is, for logs: the data directory or the URL without its password. */
function shownStore(target: StoreTarget): string {
  if (typeof target !== "string") return target.dataDir;
  return target.replace(/^(postgres(?:ql)?:\/\/[^:@/]*):[^@/]*@/, "$1@");
}

/** Entry point of `od serve`. */
export async function serveCommand(args: string[]): Promise<number> {
  if (args[0] === "install" || args[0] === "uninstall") {
    const install = await import("./install.ts");
    const rest = args.slice(1);
    return args[0] === "install"
      ? await install.serveInstallCommand(rest)
      : await install.serveUninstallCommand(rest);
  }
  const { values } = parse(args, SERVE_OPTIONS, USAGE, { positionals: false });
  const days = (name: string, fallback: number) => {
    const v = Number(str(values, name) ?? fallback);
    if (!(v > 0 && v <= 3650)) throw new UsageError(`--${name} must be 1 to 3650 days`);
    return v;
  };
  const eventRetentionDays = days("event-retention", 30);
  const keepalive = Number(str(values, "keepalive") ?? 15);
  if (!(keepalive >= 1 && keepalive <= 3600)) {
    throw new UsageError("--keepalive must be 1 to 3600 seconds");
  }
  const auditRetentionDays = days("audit-retention", 90);
  const { hostname, port } = parseListen(str(values, "listen", "127.0.0.1:8080")!);
  const store = storeTarget(values);
  const mesh = meshOptions(values, store);
  if (mesh.meshKey && !mesh.meshUrl && (hostname === "0.0.0.0" || hostname === "::")) {
    throw new UsageError("--mesh-url is needed when the relay listens on every address");
  }
  const metricsAt = str(values, "metrics");
  const metrics = metricsAt === undefined ? undefined : parseListen(metricsAt, "--metrics");
  const admitRate = Number(str(values, "admit-rate") ?? 500);
  if (!(Number.isInteger(admitRate) && admitRate >= 1 && admitRate <= 100_000)) {
    throw new UsageError("--admit-rate must be a whole number from 1 to 100000");
  }
  const drainS = Number(str(values, "drain") ?? DEFAULT_DRAIN_S);
  if (!(drainS >= 0 && drainS <= 3600)) throw new UsageError("--drain must be 0 to 3600 seconds");
  const certFile = str(values, "tls-cert");
  const keyFile = str(values, "tls-key");
  if (!!certFile !== !!keyFile) throw new UsageError("--tls-cert and --tls-key go together");
  const tls = certFile && keyFile
    ? { cert: readPem(certFile, "TLS certificate"), key: readPem(keyFile, "TLS key") }
    : undefined;

  const controller = new AbortController();
  let signalled: string | null = null;
  const onSignal = (name: string) => () => {
    signalled ??= name;
    controller.abort();
  };
  Deno.addSignalListener("SIGINT", onSignal("SIGINT"));
  Deno.addSignalListener("SIGTERM", onSignal("SIGTERM"));
  guardProcess();
  let relay;
  try {
    relay = await runRelay({
      hostname,
      port,
      store,
      storePasswordFile: str(values, "store-password-file"),
      ...mesh,
      tls,
      signal: controller.signal,
      eventRetentionDays,
      auditRetentionDays,
      trustedProxies: list(values, "trusted-proxy"),
      keepalive,
      metrics,
      admission: { perSecond: admitRate },
      drainS,
    });
  } catch (err) {
    if (err instanceof StoreError) throw new OdError(err.message);
    if (err instanceof Deno.errors.AddrInUse) {
      const which = metricsAt ? ` or ${metricsAt} (--metrics)` : "";
      throw new OdError(
        `cannot listen on ${hostname}:${port}${which}: the address is already in use`,
      );
    }
    if (err instanceof Error && /certificate|private key|pem/i.test(err.message)) {
      throw new OdError(`cannot start TLS: ${err.message}`);
    }
    throw err;
  }
  const publicUrl = str(values, "public-url") ?? relay.url;
  log.info("relay listening", {
    url: relay.url,
    store: shownStore(store),
    relay: relay.relayId,
    version: VERSION,
  });
  if (relay.metricsAddr) {
    const { hostname, port } = relay.metricsAddr;
    const host = hostname.includes(":") ? `[${hostname}]` : hostname;
    log.info("metrics listening", { url: `http://${host}:${port}/metrics` });
  }
  if (values.init) await printFirstRun(store, publicUrl, str(values, "store-password-file"));
  await relay.finished;
  if (signalled === null) throw new OdError("the relay stopped unexpectedly");
  log.info("relay stopped", { signal: signalled });
  return 0;
}

/**
 * A bug in one connection's code must not stop the relay for everyone: an exception or a
 * rejection that nothing caught is logged once with what is known, and the relay goes on.
 */
function guardProcess(): void {
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    log.error("internal error; the relay carries on", { error: e.reason });
  });
  globalThis.addEventListener("error", (e) => {
    e.preventDefault();
    log.error("internal error; the relay carries on", { error: e.error ?? e.message });
  });
}

/** The mesh and membership options, checked. */
function meshOptions(values: Values, store: StoreTarget) {
  const meshUrl = str(values, "mesh-url");
  const meshKeyFile = str(values, "mesh-key");
  if (meshUrl !== undefined && meshKeyFile === undefined) {
    throw new UsageError("--mesh-url needs --mesh-key (the secret the relays of a mesh share)");
  }
  if (meshKeyFile !== undefined && typeof store !== "string") {
    throw new UsageError("a mesh of relays shares one PostgreSQL store: add --store postgres://…");
  }
  if (meshUrl !== undefined && !/^https?:\/\/[^/?#\s]+\/?$/.test(meshUrl)) {
    throw new UsageError(
      `--mesh-url must be http://HOST:PORT or https://HOST:PORT, not "${meshUrl}"`,
    );
  }
  const relayId = str(values, "relay-id");
  if (relayId !== undefined && !/^[a-z0-9][a-z0-9._-]{0,62}$/i.test(relayId)) {
    throw new UsageError("--relay-id must be 1 to 63 letters, digits, dots, dashes or underscores");
  }
  const heartbeat = Number(str(values, "heartbeat") ?? 10);
  if (!(heartbeat >= 0.5 && heartbeat <= 600)) {
    throw new UsageError("--heartbeat must be 0.5 to 600 seconds");
  }
  return {
    meshUrl: meshUrl?.replace(/\/$/, ""),
    meshKey: meshKeyFile === undefined ? undefined : readMeshKey(meshKeyFile),
    relayId,
    heartbeatMs: heartbeat * 1000,
  };
}

const MIN_MESH_KEY = 16; // characters; `openssl rand -hex 32` gives 64

/** Reads the mesh's shared secret: the first line of a file only its owner can read. */
function readMeshKey(path: string): string {
  let info: Deno.FileInfo;
  let text: string;
  try {
    info = Deno.statSync(path);
    text = Deno.readTextFileSync(path);
  } catch (err) {
    throw new OdError(`cannot read the mesh key ${path}: ${(err as Error).message}`);
  }
  if (info.mode !== null && (info.mode & 0o077) !== 0) {
    throw new OdError(`the mesh key ${path} is readable by others; chmod 600 ${path}`);
  }
  const key = text.split("\n")[0].trim();
  if (key.length < MIN_MESH_KEY) {
    throw new OdError(
      `the mesh key in ${path} is too short (at least ${MIN_MESH_KEY} characters; ` +
        `make one with: openssl rand -hex 32)`,
    );
  }
  return key;
}

/** Creates the account "default" in a store without accounts and prints its keys. */
export async function printFirstRun(
  target: StoreTarget,
  url: string,
  passwordFile?: string,
): Promise<void> {
  await using store = await openStore(target, { passwordFile });
  if ((await store.accounts.list()).length > 0) return;
  const created = await store.accounts.create("default");
  const od = displayCommand();
  console.log(`
Created account "default". These keys are shown once; keep them somewhere safe.
  client key: ${created.clientKey}
  device key: ${created.deviceKey}

Attach a device (on the device, with sshd running):
  ${od} daemon --relay ${url} --key ${created.deviceKey}

Connect from your machine:
  ${od} login --relay ${url} --key ${created.clientKey}
  ${od} list
  ${od} ssh root@DEVICE

Or open the dashboard at ${url.replace(/\/$/, "")}/ and sign in with the client key.
`);
}
