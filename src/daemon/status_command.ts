/**
 * `od status [--json]` on a device: asks the running daemon over its local socket how its link
 * to the relay stands. Exit 0 online; 1 not connected, with a sentence saying which (connecting,
 * backing off and why, refused and why, stopping); 3 no daemon running.
 */
import { parse, str } from "../cli/args.ts";
import { OdError } from "../shared/errors.ts";
import { printJson } from "../cli/output.ts";
import { type DaemonStatus, LOCAL_SOCKET, parseStatusReply } from "../protocol/local.ts";
import { defaultStateDir, loadState } from "../store/device_state.ts";

const USAGE = `Usage: od status [--state DIR] [--json]

Shows how this device's od daemon is doing: online since when, or connecting, backing off
(until when, and why), refused by the relay (and why), or stopping; the relay, the proxy in
use, the device ID and account, services, open tunnels, the last error and the version.

Exit status: 0 online, 1 not connected, 3 no daemon running.

Options:
  --state DIR   the daemon's state directory (default as for od daemon)
  --json        print the status as one JSON object
`;

/** Exit code when no daemon answers on the state directory's socket. */
export const NO_DAEMON = 3;
const ANSWER_TIMEOUT_MS = 5_000; // a daemon that does not answer in 5 s is as good as absent

/** Entry point of `od status`. */
export async function statusCommand(args: string[]): Promise<number> {
  const { values } = parse(
    args,
    { state: { type: "string" }, json: { type: "boolean" } },
    USAGE,
    { positionals: false },
  );
  const stateDir = str(values, "state") ?? defaultStateDir();
  const status = await askDaemon(stateDir);
  if (!status) {
    const enrolled = (() => {
      try {
        return loadState(stateDir)?.device;
      } catch {
        return undefined;
      }
    })();
    if (values.json) printJson({ state: "no-daemon", stateDir });
    throw new OdError(
      `no od daemon is running with state directory ${stateDir}` +
        (enrolled
          ? ` (device "${enrolled}"; start it, e.g. systemctl start od-daemon)`
          : " (and it holds no enrolment)"),
      { exitCode: NO_DAEMON },
    );
  }
  if (values.json) printJson(status);
  else printStatus(status);
  if (status.state === "online") return 0;
  throw new OdError(notConnected(status), { exitCode: 1 });
}

/** The daemon's status, or null when no daemon answers on the socket. */
async function askDaemon(stateDir: string): Promise<DaemonStatus | null> {
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: `${stateDir}/${LOCAL_SOCKET}` });
  } catch (err) {
    if (err instanceof Deno.errors.PermissionDenied) {
      throw new OdError(`cannot ask the daemon: ${stateDir} is not readable (run as its owner)`);
    }
    return null; // no socket, or a stale one left by a killed daemon
  }
  const timer = setTimeout(() => conn.close(), ANSWER_TIMEOUT_MS);
  try {
    await conn.write(new TextEncoder().encode('{"op":"status"}\n'));
    let text = "";
    const decoder = new TextDecoder();
    const buf = new Uint8Array(16 * 1024);
    for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
      text += decoder.decode(buf.subarray(0, n), { stream: true });
    }
    return parseStatusReply(JSON.parse(text + decoder.decode()));
  } catch {
    throw new OdError(`the daemon's socket in ${stateDir} gave no status od understands`);
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // closed by the timer
    }
  }
}

/** "3 min ago" style age of an ISO time. */
function age(iso: string, now = Date.now()): string {
  const s = Math.round(Math.abs(now - Date.parse(iso)) / 1000);
  const text = s < 90
    ? `${s} s`
    : s < 5400
    ? `${Math.round(s / 60)} min`
    : `${Math.round(s / 3600)} h`;
  return Date.parse(iso) > now ? `in ${text}` : `${text} ago`;
}

/** The one sentence for a daemon that is not online. */
function notConnected(s: DaemonStatus): string {
  const retry = s.retryAt ? `; next attempt ${age(s.retryAt)}` : "";
  switch (s.state) {
    case "connecting":
      return `not connected: connecting to ${s.relay} (since ${age(s.since)})`;
    case "enrolling":
      return `not connected: enrolling with ${s.relay}` +
        (s.reason ? `, which failed: ${s.reason}${retry}` : "");
    case "refused":
      return `not connected: the relay refused this device: ${
        s.reason ?? "no reason given"
      }${retry}`;
    case "stopping":
      return "not connected: the daemon is stopping (open tunnels may finish)";
    default:
      return `not connected: backing off after: ${s.reason ?? "a failure"}${retry}`;
  }
}

function printStatus(s: DaemonStatus): void {
  const rows: [string, string][] = [
    ["state", `${s.state} since ${s.since} (${age(s.since)})`],
  ];
  if (s.retryAt) rows.push(["next attempt", `${s.retryAt} (${age(s.retryAt)})`]);
  if (s.reason) rows.push(["reason", s.reason]);
  rows.push(["relay", s.relay], ["proxy", s.proxy ?? "none (direct)"]);
  if (s.device) rows.push(["device", `${s.device} (account ${s.account ?? "?"})`]);
  rows.push(
    ["services", Object.entries(s.services).map(([k, v]) => `${k}=${v}`).join(", ") || "none"],
    ["tunnels", String(s.tunnels)],
    ["keepalive", `${s.keepalive} s`],
  );
  if (s.lastError) {
    rows.push(["last error", `${s.lastError.message} (${age(s.lastError.at)})`]);
  }
  rows.push(["version", `od ${s.version}`], ["pid", String(s.pid)]);
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) console.log(`${(k + ":").padEnd(width + 1)} ${v}`);
}
