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
import type { DeviceRecord } from "../store/devices.ts";
import { announceProps } from "./api.ts";
import type { DeviceSession } from "./device_session.ts";
import type { RelayContext } from "./context.ts";

/**
 * The frames a daemon gets right after its link opens: hello with its identity and the relay's
 * clock, then every stored property (tombstones included) as a full state. Built before the
 * WebSocket upgrade, so nothing that can fail runs after it.
 */
export function greeting(ctx: RelayContext, record: DeviceRecord): Uint8Array[] {
  const hello = encodeRelayMessage({
    t: "hello",
    device: record.name,
    account: record.account,
    now: Date.now(),
    keepalive: ctx.keepaliveS,
  });
  const props = [...ctx.store.props.load(record.rowid)].map(([k, p]) => ({ k, ...p }));
  return [hello, ...encodePropsState(props, true)];
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
      return applyDeviceProps(ctx, session, message);
  }
}

/**
 * Applies a daemon's property changes by last write per key and acknowledges them. Keys and
 * values the relay does not accept (reserved keys, NUL, oversized values, a full device) are
 * listed in the ack; the daemon drops them from its queue and logs them.
 */
function applyDeviceProps(ctx: RelayContext, session: DeviceSession, message: PropsMessage) {
  const valid: PropChange[] = [];
  const refused = new Set<string>();
  for (const c of message.changes) {
    if (keyProblem(c.k) === null && (c.v === null || valueProblem(c.k, c.v) === null)) {
      valid.push(c);
    } else refused.add(c.k);
  }
  const { applied, rejected } = ctx.store.props.apply(session.record.rowid, valid);
  for (const c of rejected) refused.add(c.k);
  announceProps(ctx, session.record, applied, "device");
  session.send(encodeRelayMessage({ t: "props-ack", seq: message.seq, rejected: [...refused] }));
}
