/**
 * `od forward [BIND:]PORT DEV SERVICE`: listens locally and opens one tunnel per accepted
 * connection, for a device's web UI or database, until interrupted. A failed tunnel closes
 * only its own connection, with one line on stderr.
 */
import { expectPositionals, parse } from "../cli/args.ts";
import { OdError, UsageError } from "../shared/errors.ts";
import { normalizeDeviceArg, serviceProblem } from "../protocol/names.ts";
import { callApi, RelayError } from "../transport/dial.ts";
import { StreamEnd } from "../transport/stream.ts";
import { CLIENT_STREAM, decodeFrame, encodePing, FrameType } from "../protocol/frame.ts";
import { CloseCode } from "../transport/link.ts";
import { clientTarget, loadClientConfig } from "./config.ts";
import { relayFailure } from "./commands.ts";
import { openTunnel } from "./pipe.ts";
import type { RelayTarget } from "../transport/dial.ts";

const USAGE = `Usage: od forward [BIND:]PORT DEV SERVICE

Listens on BIND:PORT (default bind 127.0.0.1; port 0 picks a free one) and connects every
accepted connection to SERVICE on device DEV, until interrupted (Ctrl-C).

  od forward 8080 pi1 web      then open http://127.0.0.1:8080/
`;

/** Parses `PORT`, `HOST:PORT` or `[V6]:PORT`. */
export function parseBind(value: string): { hostname: string; port: number } {
  const m = /^(?:(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):)?(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`"${value}" is not [BIND:]PORT`);
  return { hostname: m[1] ?? m[2] ?? "127.0.0.1", port };
}

/** Entry point of `od forward`. */
export async function forwardCommand(args: string[]): Promise<number> {
  const { positionals } = parse(args, {}, USAGE);
  const [bindText, typed, service] = expectPositionals(positionals, [
    "[BIND:]PORT",
    "DEV",
    "SERVICE",
  ]);
  const bind = parseBind(bindText);
  let device: string;
  try {
    device = normalizeDeviceArg(typed);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (serviceProblem(service)) throw new UsageError(serviceProblem(service)!);
  const target = clientTarget(loadClientConfig());
  // Fail now, not at the first connection, if the device does not exist.
  await callApi(target, "GET", `/v1/devices/${encodeURIComponent(device)}`).catch(relayFailure);
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: bind.hostname, port: bind.port });
  } catch (err) {
    throw new OdError(`cannot listen on ${bind.hostname}:${bind.port}: ${(err as Error).message}`);
  }
  const addr = listener.addr as Deno.NetAddr;
  console.error(
    `Forwarding ${addr.hostname}:${addr.port} to ${service} on "${device}" (Ctrl-C to stop)`,
  );
  const stop = () => listener.close();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  try {
    for await (const conn of listener) {
      conn.setNoDelay(true);
      bridge(target, device, service, conn).catch((err) => {
        const msg = err instanceof RelayError || err instanceof OdError ? err.message : String(err);
        console.error(`od: connection from ${(conn.remoteAddr as Deno.NetAddr).hostname}: ${msg}`);
        try {
          conn.close();
        } catch {
          // closed
        }
      });
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.BadResource)) throw err; // closed by the signal
  }
  return 0;
}

async function bridge(target: RelayTarget, device: string, service: string, conn: Deno.TcpConn) {
  const { link, device: info } = await openTunnel(target, device, service);
  const stream = new StreamEnd({
    id: CLIENT_STREAM,
    send: (f, onSent) => link.send(f, onSent),
    io: conn,
    maxWindow: info?.maxWindow,
  });
  link.onFrame = (raw) => {
    const frame = decodeFrame(raw);
    if (frame.type === FrameType.PING) link.send(encodePing(FrameType.PONG, frame.nonce));
    else if (frame.type !== FrameType.PONG) stream.handle(frame);
  };
  link.onClose = () => stream.reset(0, "the tunnel closed");
  stream.start();
  await stream.done;
  link.close(CloseCode.NORMAL, "done");
}
