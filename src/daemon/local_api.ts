/**
 * The daemon's side of the local socket (protocol/local.ts), through which `od props` on the
 * device reads and edits this device's properties and `od status` asks how the daemon is. The state directory is mode 0700, so the
 * socket is usable exactly by whoever may use the state directory.
 */
import {
  type DaemonStatus,
  LOCAL_SOCKET as SOCKET,
  type LocalReply,
  MAX_LOCAL_REQUEST as MAX_REQUEST,
  parseLocalRequest,
} from "../protocol/local.ts";
import { log } from "../shared/log.ts";
import { OdError } from "../shared/errors.ts";
import type { LocalProps } from "../store/local_props.ts";

/** Throws if another daemon already serves this state directory's socket. */
export async function ensureSoleDaemon(stateDir: string): Promise<void> {
  const path = `${stateDir}/${SOCKET}`;
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
  } catch {
    return; // no socket, or a stale one left by a killed daemon
  }
  throw new OdError(`another od daemon is already running with state directory ${stateDir}`);
}

/** Serves the local socket until `signal` aborts. `onEdit` is told after each stored edit. */
export function serveLocalApi(options: {
  stateDir: string;
  props: LocalProps;
  clockOffset: () => number;
  onEdit: () => void;
  status: () => DaemonStatus;
  signal?: AbortSignal;
}): void {
  const path = `${options.stateDir}/${SOCKET}`;
  try {
    Deno.removeSync(path); // left by a daemon that was killed
  } catch {
    // none
  }
  const listener = Deno.listen({ transport: "unix", path });
  options.signal?.addEventListener("abort", () => listener.close(), { once: true });
  (async () => {
    for await (const conn of listener) {
      handle(conn, options).catch((err) => log.warn("local request failed", { error: err }))
        .finally(() => {
          try {
            conn.close();
          } catch {
            // closed
          }
        });
    }
  })().catch(() => {}).finally(() => {
    try {
      Deno.removeSync(path);
    } catch {
      // gone
    }
  });
}

async function readLine(conn: Deno.Conn): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const buf = new Uint8Array(64 * 1024);
  while (size <= MAX_REQUEST) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
    size += n;
    if (buf.subarray(0, n).includes(10)) break;
  }
  const all = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  return new TextDecoder().decode(all).split("\n")[0];
}

async function handle(
  conn: Deno.Conn,
  options: Parameters<typeof serveLocalApi>[0],
): Promise<void> {
  let reply: LocalReply | { ok: true; status: DaemonStatus };
  try {
    const req = parseLocalRequest(JSON.parse(await readLine(conn)));
    if (req.op === "get") reply = { ok: true, props: options.props.view() };
    else if (req.op === "status") reply = { ok: true, status: options.status() };
    else {
      const props = options.props.edit(req.set, req.rm, options.clockOffset());
      options.onEdit();
      reply = { ok: true, props };
    }
  } catch (err) {
    reply = { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
  const bytes = new TextEncoder().encode(JSON.stringify(reply) + "\n");
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}
