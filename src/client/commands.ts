/** Client commands of the tunnel core: `od login`, `od pipe`, `od list` (with filters). */
import { expectPositionals, parse, str } from "../cli/args.ts";
import { OdError, UsageError } from "../shared/errors.ts";
import { ago, printTable } from "../cli/output.ts";
import { normalizeDeviceArg, serviceProblem } from "../protocol/names.ts";
import { callApi, RelayError } from "../transport/dial.ts";
import { checkProxy, clientTarget, loadClientConfig, saveClientConfig } from "./config.ts";
import { runPipe, stdio, type TunnelDevice } from "./pipe.ts";
import { normalizeRelayUrl, readCa } from "../cli/relay_options.ts";
import { matches, parseFilters } from "../protocol/filter.ts";
import { knownHostsPath, pinDevice } from "./known_hosts.ts";
import type { Device, Whoami } from "../protocol/api.ts";

const LOGIN_USAGE = `Usage: od login --relay URL --key KEY [--ca FILE] [--proxy URL|none]

Checks the key with the relay and stores both in the config directory
($OD_CONFIG_DIR, else $XDG_CONFIG_HOME/od, else ~/.config/od) with mode 0600.
--ca FILE (or OD_CA=FILE) trusts a private CA for the relay; login stores it too.
--proxy URL (or OD_PROXY) reaches the relay through that HTTP CONNECT proxy, "none" directly;
login stores it. Without: HTTPS_PROXY/HTTP_PROXY and NO_PROXY decide, as for curl.
OD_RELAY, OD_KEY, OD_CA and OD_PROXY override the stored values for one command.
`;

/** Turns a relay refusal into the user's one sentence; a 400 (bad input) exits 2. */
export function relayFailure(err: unknown): never {
  if (err instanceof RelayError) {
    throw new OdError(err.message, { cause: err, exitCode: err.status === 400 ? 2 : 1 });
  }
  throw err;
}

/** Entry point of `od login`. */
export async function loginCommand(args: string[]): Promise<number> {
  const { values } = parse(
    args,
    {
      relay: { type: "string" },
      key: { type: "string" },
      ca: { type: "string" },
      proxy: { type: "string" },
    },
    LOGIN_USAGE,
    { positionals: false },
  );
  const relay = str(values, "relay");
  const key = str(values, "key");
  if (!relay || !key) throw new UsageError("od login needs --relay URL and --key KEY");
  // OD_CA is honoured here as everywhere: the check needs it, and what worked is stored.
  const caFile = str(values, "ca") ?? (Deno.env.get("OD_CA") || undefined);
  const proxy = checkProxy(str(values, "proxy") ?? (Deno.env.get("OD_PROXY") || undefined));
  const config = {
    relay: normalizeRelayUrl(relay),
    key,
    ca: caFile ? readCa(caFile) : undefined,
    ...(proxy ? { proxy } : {}),
  };
  const who = await callApi(clientTarget(config), "GET", "/v1/whoami")
    .catch(relayFailure) as Whoami;
  if (who.role === "device") {
    throw new OdError("that is a device key; od login needs a client or full key");
  }
  const path = saveClientConfig(config);
  console.log(
    `Logged in to ${config.relay} as account "${who.account}" (${who.role} key ${who.keyId}); ` +
      `saved in ${path}`,
  );
  return 0;
}

const PIPE_USAGE = `Usage: od pipe DEV SERVICE

Connects stdin and stdout to SERVICE on device DEV (DEV or ACCOUNT.DEV). This is the
ProxyCommand behind od ssh: ssh -o ProxyCommand='od pipe %n ssh' …
`;

/** Entry point of `od pipe`. */
export async function pipeCommand(args: string[]): Promise<number> {
  const { positionals } = parse(args, {}, PIPE_USAGE);
  const [typed, service] = expectPositionals(positionals, ["DEV", "SERVICE"]);
  let device: string;
  try {
    device = normalizeDeviceArg(typed); // ssh-config hosts are DEV.od
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (serviceProblem(service)) throw new UsageError(serviceProblem(service)!);
  const config = loadClientConfig();
  await runPipe({
    target: clientTarget(config),
    device,
    service,
    io: stdio(),
    onDevice: service === "ssh" ? (info) => pinHostKeys(device, info) : undefined,
  }).catch(relayFailure);
  return 0;
}

/** Pins the device's reported sshd keys for ssh's strict check, and warns when they changed. */
async function pinHostKeys(typed: string, info: TunnelDevice | null): Promise<void> {
  if (!info) return;
  const shown = `${info.account}.${info.id}`;
  try {
    const result = await pinDevice(info.account, info.id, typed, info.hostKeys);
    if (result === "mismatch") {
      console.error(
        `od: device "${shown}" reports a different host key than the one pinned in ` +
          `${knownHostsPath()}; if the device was reinstalled or its keys rotated, accept the ` +
          `new key with: od known-hosts accept ${shown}`,
      );
    } else if (result === "no-keys") {
      console.error(
        `od: device "${shown}" reported no sshd host keys, so ssh cannot verify it; ` +
          `start its daemon with --host-key FILE`,
      );
    }
  } catch (err) {
    console.error(`od: cannot update ${knownHostsPath()}: ${(err as Error).message}`);
  }
}

const LIST_USAGE = `Usage: od list [--json] [--props] [--show KEY,…] [--state online|offline]
               [--limit N [--after DEV]] [FILTER…]

Lists the devices of your account. FILTER is KEY=VALUE, KEY!=VALUE or KEY (has the property);
all must match. They apply to user properties and to the relay's on: properties.

Options:
  --state S       only online or only offline devices
  --props         add a column with every user property
  --show K,…      add a column for each of these properties
  --json          print the devices as JSON, with all properties (streamed as pages arrive)
  --limit N       print one page of at most N devices (for scripts; without it, all)
  --after DEV     the page after this device (the last one of the previous page)
`;

const PAGE = 2000; // devices per request when listing all: a few requests for a large fleet

/** Which devices to list, and which page. */
export interface DeviceListing {
  filters: string[];
  state?: string;
  /** One page of at most this many devices, instead of all. */
  limit?: number;
  after?: string;
}

/**
 * Yields the devices matching filters (and a state) page by page, as the relay sends them.
 * The relay filters too; the filters are applied here again for relays that do not.
 */
export async function* devicePages(q: DeviceListing): AsyncGenerator<Device[]> {
  let filters;
  try {
    filters = parseFilters(q.filters);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const target = clientTarget(loadClientConfig());
  const size = q.limit ?? PAGE;
  const fetchPage = (after: string | undefined) => {
    const params = new URLSearchParams({ limit: String(size) });
    if (after !== undefined) params.set("after", after);
    if (q.state !== undefined) params.set("state", q.state);
    for (const f of q.filters) params.append("filter", f);
    const page = callApi(target, "GET", `/v1/devices?${params}`)
      .catch(relayFailure) as Promise<Device[]>;
    page.catch(() => {}); // awaited below; not unhandled if the caller stops early
    return page;
  };
  let next = fetchPage(q.after);
  while (true) {
    const page = await next;
    // A full page means there may be more (a relay without paging sends all at once): ask for
    // the next one now, so the relay works on it while this one is printed.
    const more = q.limit === undefined && page.length === size;
    if (more) next = fetchPage(page.at(-1)!.ref);
    yield page.filter((d) =>
      (q.state === undefined || d.state === q.state) && matches(d.props, filters)
    );
    if (!more) return;
  }
}

/** The devices matching filters (and a state), from the relay. */
export async function findDevices(filterArgs: string[], state?: string): Promise<Device[]> {
  const all: Device[] = [];
  for await (const page of devicePages({ filters: filterArgs, state })) all.push(...page);
  return all;
}

/** Prints devices as one JSON array, written page by page as the pages arrive. */
async function streamJson(pages: AsyncGenerator<Device[]>): Promise<void> {
  const out = Deno.stdout;
  const write = (text: string) => out.write(new TextEncoder().encode(text)).then(() => {});
  let first = true;
  for await (const page of pages) {
    if (page.length === 0) continue;
    // Same layout as JSON.stringify(all, null, 2), a page at a time: the page's own array
    // without its brackets.
    const text = JSON.stringify(page, null, 2).slice(2, -2);
    await write((first ? "[\n" : ",\n") + text);
    first = false;
  }
  await write(first ? "[]\n" : "\n]\n");
}

/** Entry point of `od list`. */
export async function listCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    json: { type: "boolean" },
    props: { type: "boolean" },
    show: { type: "string" },
    state: { type: "string" },
    limit: { type: "string" },
    after: { type: "string" },
  }, LIST_USAGE);
  const state = str(values, "state");
  if (state !== undefined && state !== "online" && state !== "offline") {
    throw new UsageError("--state must be online or offline");
  }
  const limitText = str(values, "limit");
  const limit = limitText === undefined ? undefined : Number(limitText);
  if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1 && limit <= 10_000)) {
    throw new UsageError("--limit must be a whole number from 1 to 10000");
  }
  const after = str(values, "after");
  if (after !== undefined && limit === undefined) throw new UsageError("--after needs --limit");
  const listing = { filters: positionals, state, limit, after };
  if (values.json) {
    await streamJson(devicePages(listing));
    return 0;
  }
  const devices: Device[] = [];
  for await (const page of devicePages(listing)) devices.push(...page);
  const shown = (str(values, "show") ?? "").split(",").filter((k) => k !== "");
  const userProps = (d: Device) =>
    Object.entries(d.props).filter(([k]) => !k.startsWith("on:")).map(([k, v]) => `${k}=${v}`)
      .join(" ");
  const extra = [...shown.map((k) => k.toUpperCase()), ...(values.props ? ["PROPS"] : [])];
  printTable(
    ["DEVICE", "STATE", "LAST SEEN", "PARENT", ...extra],
    devices.map((d) => [
      d.ref,
      d.state,
      d.state === "online" ? "now" : ago(d.lastSeen ? Date.parse(d.lastSeen) : null),
      d.parent ?? "",
      ...shown.map((k) => d.props[k] ?? ""),
      ...(values.props ? [userProps(d)] : []),
    ]),
  );
  return 0;
}
