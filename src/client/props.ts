/**
 * `od props [--device DEV] set|get|rm …`. With --device it edits any device of yours through the
 * relay. Without, it acts on this device: through the running daemon's socket, or, when the
 * daemon is not running, directly on the state directory's queue, which the daemon delivers
 * when it starts and reaches the relay. The device-local files and the socket's messages are
 * shared with the daemon through the layers below (store/local_props.ts, protocol/local.ts).
 */
import { parse, str } from "../cli/args.ts";
import { OdError, UsageError } from "../shared/errors.ts";
import { printJson } from "../cli/output.ts";
import { checkKeys, parseAssignments } from "../protocol/props.ts";
import type { PropsResult } from "../protocol/api.ts";
import { LOCAL_SOCKET, parseLocalReply } from "../protocol/local.ts";
import { normalizeDeviceArg } from "../protocol/names.ts";
import { callApi } from "../transport/dial.ts";
import { clientTarget, loadClientConfig } from "./config.ts";
import { relayFailure } from "./commands.ts";
import { defaultStateDir, loadState } from "../store/device_state.ts";
import { LocalProps } from "../store/local_props.ts";

const USAGE = `Usage: od props [--device DEV] [--json] set KEY=VALUE…
       od props [--device DEV] [--json] get [KEY…]
       od props [--device DEV] [--json] rm KEY…

Reads and edits device properties. On a device, without --device, it acts on that device
(through the running daemon; changes made while it is offline or stopped are queued on disk
and delivered when it reconnects). With --device DEV it acts on any device of yours.

Keys are 1-64 of A-Z a-z 0-9 _ . : -, values up to 4 KiB, at most 256 per device. Keys
starting with on: (on:state, on:lastSeen, …) are maintained by the relay and read-only.
"get KEY" prints just the value; "get" prints KEY=VALUE lines.

Options:
  --device DEV   act on DEV through the relay instead of on this device
  --state DIR    this device's state directory (default as for od daemon)
  --json         print JSON
`;

/** Entry point of `od props`. */
export async function propsCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    device: { type: "string" },
    state: { type: "string" },
    json: { type: "boolean" },
  }, USAGE);
  const [action, ...rest] = positionals;
  let set: Record<string, string> = {};
  let rm: string[] = [];
  try {
    if (action === "set") {
      if (rest.length === 0) throw new RangeError("set needs KEY=VALUE");
      set = parseAssignments(rest);
    } else if (action === "rm") {
      if (rest.length === 0) throw new RangeError("rm needs KEY");
      checkKeys(rest);
      rm = rest;
    } else if (action !== "get") {
      throw new RangeError(action ? `unknown props command "${action}"` : "missing set, get or rm");
    }
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const device = str(values, "device");
  const props = device === undefined
    ? await localProps(
      str(values, "state") ?? defaultStateDir(),
      action === "get" ? null : { set, rm },
    )
    : await remoteProps(device, action === "get" ? null : { set, rm });
  return show(props, action === "get" ? rest : null, values.json === true);
}

function show(props: Record<string, string>, keys: string[] | null, json: boolean): number {
  if (keys && keys.length > 0) {
    const has = (k: string) => Object.hasOwn(props, k);
    const missing = keys.filter((k) => !has(k));
    if (json) {
      printJson(Object.fromEntries(keys.filter(has).map((k) => [k, props[k]])));
    } else if (keys.length === 1 && missing.length === 0) console.log(props[keys[0]]);
    else for (const k of keys) if (has(k)) console.log(`${k}=${props[k]}`);
    if (missing.length > 0) {
      throw new OdError(`property ${missing.map((k) => `"${k}"`).join(", ")} is not set`);
    }
    return 0;
  }
  if (keys === null) return 0; // set and rm print nothing, like other Unix tools
  if (json) printJson(props);
  else for (const [k, v] of Object.entries(props)) console.log(`${k}=${v}`);
  return 0;
}

async function remoteProps(
  device: string,
  edit: { set: Record<string, string>; rm: string[] } | null,
) {
  let ref: string;
  try {
    ref = normalizeDeviceArg(device);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const target = clientTarget(loadClientConfig());
  const path = `/v1/devices/${encodeURIComponent(ref)}`;
  const answer =
    await (edit === null
      ? callApi(target, "GET", path)
      : callApi(target, "PATCH", `${path}/props`, edit)).catch(relayFailure) as PropsResult;
  return answer.props;
}

/** Asks the running daemon; if there is none, uses the state directory directly. */
async function localProps(
  stateDir: string,
  edit: { set: Record<string, string>; rm: string[] } | null,
) {
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: `${stateDir}/${LOCAL_SOCKET}` });
  } catch {
    return offlineProps(stateDir, edit);
  }
  try {
    const request = edit === null ? { op: "get" } : { op: "edit", ...edit };
    await conn.write(new TextEncoder().encode(JSON.stringify(request) + "\n"));
    let text = "";
    const decoder = new TextDecoder(); // one decoder: a character may straddle two reads
    const buf = new Uint8Array(64 * 1024);
    for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
      text += decoder.decode(buf.subarray(0, n), { stream: true });
    }
    text += decoder.decode();
    let reply;
    try {
      reply = parseLocalReply(JSON.parse(text));
    } catch {
      throw new OdError(`the daemon's socket in ${stateDir} gave no answer od understands`);
    }
    if (!reply.ok) throw new UsageError(reply.error);
    return reply.props;
  } finally {
    conn.close();
  }
}

function offlineProps(
  stateDir: string,
  edit: { set: Record<string, string>; rm: string[] } | null,
) {
  const state = loadState(stateDir);
  if (!state) {
    throw new OdError(`${stateDir} holds no device state; is od daemon set up on this machine?`);
  }
  const props = new LocalProps(stateDir);
  if (edit === null) return props.view();
  try {
    return props.edit(edit.set, edit.rm, state.clockOffset ?? 0);
  } catch (err) {
    if (err instanceof RangeError) throw new UsageError(err.message);
    if (err instanceof Deno.errors.PermissionDenied) {
      throw new OdError(`cannot write to ${stateDir}: permission denied (run as its owner)`);
    }
    throw err;
  }
}
