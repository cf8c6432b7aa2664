/**
 * `od pipe DEV SERVICE`: bridges stdin/stdout to a service on a device. This is what ssh runs as
 * its ProxyCommand, so it stays silent on success and says one sentence on failure.
 */
import {
  CLIENT_STREAM,
  decodeFrame,
  encodePing,
  FrameType,
  MAX_WINDOW,
  ResetCode,
  STREAM_WINDOW,
  WINDOWS_HEADER,
} from "../protocol/frame.ts";
import { dialLink, type RelayTarget } from "../transport/dial.ts";
import { CloseCode } from "../transport/link.ts";
import type { SocketLink } from "../transport/socket_link.ts";
import { type ByteIO, StreamEnd } from "../transport/stream.ts";
import { OdError } from "../shared/errors.ts";
import { DEFAULT_KEEPALIVE_S, Keepalive } from "../transport/keepalive.ts";

const STOP_GRACE_MS = 1000;

/** Options for a pipe. */
export interface PipeOptions {
  target: RelayTarget;
  device: string;
  service: string;
  io: ByteIO;
  /** Seconds between keepalive pings on the tunnel. */
  keepalive?: number;
  /** Called with the relay's description of the device before any byte flows. */
  onDevice?: (device: TunnelDevice | null) => void | Promise<void>;
}

/** stdin and stdout as a ByteIO; closing the write side closes stdout so the reader sees EOF. */
export function stdio(): ByteIO {
  return {
    read: (p) => Deno.stdin.read(p),
    write: (p) => Deno.stdout.write(p),
    closeWrite: () => {
      try {
        Deno.stdout.close();
      } catch {
        // already closed
      }
    },
    close: () => {
      for (const f of [Deno.stdin, Deno.stdout]) {
        try {
          f.close();
        } catch {
          // already closed
        }
      }
    },
  };
}

/** Who the relay says the device is, sent with OPENED on a client link. */
export interface TunnelDevice {
  id: string;
  account: string;
  hostKeys: string[];
  /** How far the stream's windows may grow (absent: the fixed window of older relays). */
  maxWindow?: number;
}

/** An open tunnel: its link and the device it reaches. */
export interface Tunnel {
  link: SocketLink;
  device: TunnelDevice | null;
  /** The relay's keepalive period (s), when it said: ping at least this often. */
  keepalive?: number;
}

function parseDevice(m: Record<string, unknown>): TunnelDevice | null {
  if (typeof m.id !== "string" || typeof m.account !== "string" || !Array.isArray(m.hostKeys)) {
    return null;
  }
  const hostKeys = m.hostKeys.filter((k): k is string => typeof k === "string").slice(0, 16);
  const maxWindow = typeof m.maxWindow === "number" && Number.isSafeInteger(m.maxWindow) &&
      m.maxWindow > STREAM_WINDOW && m.maxWindow <= MAX_WINDOW
    ? m.maxWindow
    : undefined;
  return { id: m.id, account: m.account, hostKeys, maxWindow };
}

/** Opens the tunnel and waits for the device's answer; throws OdError with the reason. */
export async function openTunnel(
  target: RelayTarget,
  device: string,
  service: string,
): Promise<Tunnel> {
  const withWindows = { ...target, headers: { ...target.headers, [WINDOWS_HEADER]: "1" } };
  const link = await dialLink(withWindows, "/v1/tunnel", { device, service });
  // Acknowledges the relay's 101 now rather than after a delayed-ACK timeout (see frame.ts).
  link.send(encodePing(FrameType.PONG, new Uint8Array(8)));
  let info: TunnelDevice | null = null;
  let keepalive: number | undefined;
  const answer = await new Promise<{ ok: true } | { ok: false; reason: string }>((resolve) => {
    let answered = false;
    link.onFrame = (raw) => {
      const frame = decodeFrame(raw);
      if (frame.type === FrameType.OPENED) {
        answered = true;
        info = frame.info ? parseDevice(frame.info) : null;
        const k = frame.info?.keepalive;
        if (typeof k === "number" && k >= 1 && k <= 3600) keepalive = k;
        link.onFrame = null; // hold the data that follows until the caller attaches
        link.onClose = null; // and a close, which would otherwise be consumed here and lost
        resolve({ ok: true });
      } else if (frame.type === FrameType.RESET) {
        answered = true;
        resolve({ ok: false, reason: frame.reason });
      }
    };
    // Setting onFrame may have handed over a held answer already; a close then stays held too.
    if (answered) return;
    link.onClose = (code, reason) => {
      resolve({ ok: false, reason: reason || `the relay closed the tunnel (code ${code})` });
    };
  });
  if (!answer.ok) {
    link.close();
    throw new OdError(`cannot open ${service} on "${device}": ${answer.reason}`);
  }
  return { link, device: info, keepalive };
}

/** Runs a pipe to completion; resolves when both directions have ended. */
export async function runPipe(options: PipeOptions): Promise<void> {
  const { link, device, keepalive: relayPeriod } = await openTunnel(
    options.target,
    options.device,
    options.service,
  );
  await options.onDevice?.(device); // before any byte reaches ssh, which then checks the pins
  const stream = new StreamEnd({
    id: CLIENT_STREAM,
    send: (f, onSent) => link.send(f, onSent),
    io: options.io,
    maxWindow: device?.maxWindow,
  });
  let lastFrameAt = Date.now();
  let closedBy: string | null = null;
  link.onFrame = (raw) => {
    lastFrameAt = Date.now();
    const frame = decodeFrame(raw);
    if (frame.type === FrameType.PING) link.send(encodePing(FrameType.PONG, frame.nonce));
    else if (frame.type !== FrameType.PONG) stream.handle(frame);
  };
  link.onClose = (code, reason) => {
    if (!stream.finished) {
      closedBy = reason || `the relay closed the tunnel (code ${code})`;
      stream.reset(ResetCode.CANCELLED, closedBy);
    }
  };
  const keepalive = new Keepalive(
    link,
    Math.min(options.keepalive ?? DEFAULT_KEEPALIVE_S, relayPeriod ?? Infinity) * 1000,
    () => lastFrameAt,
    (silentMs) => {
      link.close(
        CloseCode.TIMEOUT,
        `the relay stopped answering (nothing for ${Math.round(silentMs / 1000)} s)`,
      );
    },
  );
  // ssh closes our pipes and then sends SIGHUP to its ProxyCommand; systemd and timeout send
  // SIGTERM. A stream that is already ending gets a moment to finish, so the relay records a
  // clean end rather than a client that vanished; otherwise it is reset with a reason.
  let stopTimer: ReturnType<typeof setTimeout> | undefined;
  const stop = () => {
    stopTimer ??= setTimeout(
      () => stream.reset(ResetCode.CANCELLED, "the client stopped"),
      STOP_GRACE_MS,
    );
  };
  const signals: Deno.Signal[] = ["SIGHUP", "SIGTERM"];
  for (const sig of signals) Deno.addSignalListener(sig, stop);
  stream.start();
  const ending = await stream.done;
  clearTimeout(stopTimer);
  for (const sig of signals) Deno.removeSignalListener(sig, stop);
  keepalive.stop();
  link.close(CloseCode.NORMAL, "done");
  await link.flushed(); // the last frames (our EOF) reach the relay before the process exits
  if (ending && !ending.local) {
    throw new OdError(`tunnel to "${options.device}" was reset: ${ending.reason}`);
  }
  if (ending && closedBy) throw new OdError(`tunnel to "${options.device}" closed: ${closedBy}`);
}
