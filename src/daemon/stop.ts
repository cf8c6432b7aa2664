/** The daemon's graceful stop (SIGTERM): see drain(). */
import { CloseCode } from "../transport/link.ts";
import { log } from "../shared/log.ts";
import type { DeviceLink } from "./device_link.ts";
import type { StatusBoard } from "./status.ts";

/** Seconds open tunnels may finish after SIGTERM, unless --grace says otherwise. */
export const DEFAULT_GRACE_S = 10;
const DRAIN_POLL_MS = 100; // how often a stopping daemon looks whether its tunnels have ended

/**
 * The graceful stop: new tunnels are refused, open ones go on until they end or the grace
 * period runs out (or a second signal), and then the link closes. The link and its keepalive
 * stay up meanwhile, so a session finishing its last command is not cut.
 */
export async function drain(
  device: DeviceLink,
  options: { graceS?: number; kill?: AbortSignal; status: StatusBoard },
): Promise<void> {
  const graceMs = (options.graceS ?? DEFAULT_GRACE_S) * 1000;
  const deadline = Date.now() + graceMs;
  options.status.set("stopping");
  device.refuseNew = "the device's od daemon is stopping (restarting?); try again in a moment";
  if (device.streamCount > 0) {
    log.info("stopping: waiting for open tunnels", {
      tunnels: device.streamCount,
      grace: `${graceMs / 1000}s`,
    });
  }
  while (
    device.streamCount > 0 && Date.now() < deadline && !options.kill?.aborted &&
    device.link.open
  ) {
    await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
  }
  if (device.streamCount > 0) {
    log.warn("stopping: closing tunnels still open", { tunnels: device.streamCount });
  }
  device.link.close(CloseCode.GOING_AWAY, "the daemon is stopping");
}
