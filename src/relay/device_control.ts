/**
 * The relay's side of a device link's CONTROL messages, apart from link mechanics so any link
 * code can call it: the greeting a daemon gets after connecting (hello, then the full property
 * state), and what a daemon reports (info, property changes, answered with an ack).
 */
import {
  type DaemonMessage,
  encodePropsState,
  encodeRelayMessage,
  type PropsMessage,
} from "../protocol/control.ts";
import { keyProblem, type PropChange, valueProblem } from "../protocol/props.ts";
import { type DeviceRecord, StoreUnavailable } from "../store/types.ts";
import { log } from "../shared/log.ts";
import { announceProps } from "./api.ts";
import type { DeviceSession } from "./device_session.ts";
import type { RelayContext } from "./context.ts";

/** What a daemon is sent when its link opens, and the properties that carried. */
export interface Greeting {
  frames: Uint8Array[];
  props: PropChange[];
  /** When the properties were read (ms). */
  readAt: number;
}

/**
 * The frames a daemon gets right after its link opens: hello with its identity and the relay's
 * clock, then every stored property (tombstones included) as a full state. Built before the
 * WebSocket upgrade, so nothing that can fail runs after it.
 */
export async function greeting(ctx: RelayContext, record: DeviceRecord): Promise<Greeting> {
  const readAt = Date.now();
  const props = [...await ctx.store.props.load(record.rowid)].map(([k, p]) => ({ k, ...p }));
  const hello = encodeRelayMessage({
    t: "hello",
    device: record.name,
    account: record.account,
    now: Date.now(),
    keepalive: ctx.keepaliveS,
  });
  return { frames: [hello, ...encodePropsState(props, true)], props, readAt };
}

/** Acts on one validated message from a daemon. */
export function handleDaemonMessage(
  ctx: RelayContext,
  session: DeviceSession,
  message: DaemonMessage,
): void {
  switch (message.t) {
    case "info": {
      const { t: _, ...info } = message;
      session.info = info;
      ctx.presence.info(session.record.rowid, info);
      return;
    }
    case "props":
      applyDeviceProps(ctx, session, message).catch((err) => {
        log.error("cannot apply a device's property changes", {
          device: session.record.name,
          error: err,
        });
      });
      return;
  }
}

const RETRY_MS = [1_000, 2_000, 5_000, 10_000]; // while the store is away, then every 10 s

/**
 * Applies a daemon's property changes by last write per key and acknowledges them. Keys and
 * values the relay does not accept (reserved keys, NUL, oversized values, a full device) are
 * listed in the ack; the daemon drops them from its queue and logs them. While the store is
 * unavailable the relay tries again (the daemon sends its next batch only after the ack), so
 * neither the link nor the changes are lost.
 */
async function applyDeviceProps(ctx: RelayContext, session: DeviceSession, message: PropsMessage) {
  const valid: PropChange[] = [];
  const refused = new Set<string>();
  for (const c of message.changes) {
    if (keyProblem(c.k) === null && (c.v === null || valueProblem(c.k, c.v) === null)) {
      valid.push(c);
    } else refused.add(c.k);
  }
  let result;
  for (let attempt = 0;; attempt++) {
    try {
      result = await ctx.store.props.apply(session.record.rowid, valid);
      break;
    } catch (err) {
      if (!(err instanceof StoreUnavailable) || !session.link.open) throw err;
      const wait = RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)];
      await new Promise((r) => setTimeout(r, wait));
      if (!session.link.open) return;
    }
  }
  const { applied, rejected } = result;
  for (const c of rejected) refused.add(c.k);
  ctx.mirror.noteFromDevice(session, applied);
  await announceProps(ctx, session.record, applied, "device").catch((err) => {
    log.warn("cannot record a property event", { device: session.record.name, error: err });
  });
  session.send(encodeRelayMessage({ t: "props-ack", seq: message.seq, rejected: [...refused] }));
}
