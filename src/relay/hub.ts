/**
 * The relay's live state: which devices are connected and which tunnels are open. A device
 * that connects again replaces its old link (a restarted daemon whose old TCP connection the
 * relay has not noticed dying yet).
 */
import { ResetCode } from "../protocol/frame.ts";
import { CloseCode } from "../transport/link.ts";
import type { DeviceSession } from "./device_session.ts";
import type { RelayStream } from "./tunnel.ts";

/** Connected devices and open tunnels. */
export class Hub {
  #devices = new Map<number, DeviceSession>(); // by device row id
  #tunnels = new Map<RelayStream, number>(); // to the device's row id

  /** The session of a device, if it is online. */
  get(rowid: number): DeviceSession | undefined {
    return this.#devices.get(rowid);
  }

  /** Registers a new session, closing any older one of the same device. */
  attach(session: DeviceSession): void {
    const old = this.#devices.get(session.record.rowid);
    this.#devices.set(session.record.rowid, session);
    old?.link.close(CloseCode.REPLACED, "the device connected again");
  }

  /** Forgets a session if it is still the current one; true if it was. */
  detach(session: DeviceSession): boolean {
    if (this.#devices.get(session.record.rowid) !== session) return false;
    this.#devices.delete(session.record.rowid);
    return true;
  }

  /** All connected device sessions. */
  sessions(): IterableIterator<DeviceSession> {
    return this.#devices.values();
  }

  /** Number of connected devices. */
  get deviceCount(): number {
    return this.#devices.size;
  }

  /** Tracks a tunnel to the device with row id `rowid` until it ends. */
  addTunnel(tunnel: RelayStream, rowid: number): void {
    this.#tunnels.set(tunnel, rowid);
  }

  /** The row id of the device a tracked tunnel goes to. */
  rowidOf(tunnel: RelayStream): number | undefined {
    return this.#tunnels.get(tunnel);
  }

  /** Forgets an ended tunnel. */
  removeTunnel(tunnel: RelayStream): void {
    this.#tunnels.delete(tunnel);
  }

  /** Number of open tunnels opened with one key. */
  tunnelsOfKey(keyId: string): number {
    let n = 0;
    for (const t of this.#tunnels.keys()) if (t.info.keyId === keyId) n++;
    return n;
  }

  /** All open tunnels. */
  tunnels(): IterableIterator<RelayStream> {
    return this.#tunnels.keys();
  }

  /** Number of open tunnels. */
  get tunnelCount(): number {
    return this.#tunnels.size;
  }

  /** Closes every tunnel `which` selects, telling both ends `reason`; returns how many. */
  closeTunnels(
    which: (t: RelayStream) => boolean,
    reason: string,
    code: number = ResetCode.REFUSED,
  ) {
    let n = 0;
    for (const t of [...this.#tunnels.keys()]) {
      if (which(t)) {
        t.reset(code, reason);
        n++;
      }
    }
    return n;
  }
}
