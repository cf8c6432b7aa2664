/**
 * One connected device inside the relay: its link, the streams opened on it, and what it
 * reported about itself. Frames for unknown streams are dropped silently, because a RESET may
 * cross DATA already in flight; malformed frames close the link (FrameLink contract).
 */
import {
  decodeFrame,
  encodeOpen,
  encodePing,
  FrameType,
  MAX_STREAM_ID,
  ResetCode,
} from "../protocol/frame.ts";
import { CloseCode, type FrameLink } from "../transport/link.ts";
import type { DeviceRecord } from "../store/devices.ts";
import {
  type DaemonMessage,
  type DeviceInfo,
  encodePropsState,
  encodeRelayMessage,
  parseDaemonMessage,
} from "../protocol/control.ts";
import type { PropChange } from "../protocol/props.ts";
import { Budget, type DeviceSide, type RelayStream } from "./tunnel.ts";
import { LinkScheduler } from "../transport/scheduler.ts";

/** Limits a device link is held to. */
export interface SessionLimits {
  /** Streams open at once on one device. */
  maxStreams: number;
  /** Bytes a device link's streams may hold in the relay beyond their initial windows. */
  linkBudget: number;
}

/** Callbacks from a session to the relay. */
export interface SessionHooks {
  /** Acts on a validated CONTROL message from the daemon (see device_control.ts). */
  onMessage(session: DeviceSession, message: DaemonMessage): void;
  onClose(session: DeviceSession, code: number, reason: string): void;
}
// Each CONTROL message may write to the store; a device gets a burst of 200 and then 50 a
// second, far above what a daemon sends, far below what would load the disk.
const CONTROL_BURST = 200;
const CONTROL_PER_SECOND = 50;
// A daemon reports itself right after connecting; a peer that does not is not a daemon.
const INFO_TIMEOUT_MS = 10_000;

/** A connected device. */
export class DeviceSession implements DeviceSide {
  readonly record: DeviceRecord;
  readonly link: FrameLink;
  readonly ip: string;
  readonly since = Date.now();
  info: DeviceInfo | null = null;
  lastFrameAt = Date.now();
  /** Whether the daemon can grow stream windows (it sent x-od-windows). */
  readonly windows: boolean;
  /** What this link's streams may hold in the relay beyond their initial windows. */
  readonly budget: Budget;

  #streams = new Map<number, RelayStream>();
  #tokens = CONTROL_BURST;
  #tokensAt = Date.now();
  #infoTimer: ReturnType<typeof setTimeout>;
  #nextStream = 1;
  #limits: SessionLimits;
  #hooks: SessionHooks;
  #scheduler: LinkScheduler;

  constructor(
    record: DeviceRecord,
    link: FrameLink,
    options: {
      ip: string;
      limits: SessionLimits;
      hooks: SessionHooks;
      windows?: boolean;
    },
  ) {
    this.record = record;
    this.link = link;
    this.ip = options.ip;
    this.windows = options.windows ?? false;
    this.budget = new Budget(options.limits.linkBudget);
    this.#limits = options.limits;
    this.#hooks = options.hooks;
    // Everything toward the device goes through the scheduler, so a keystroke never waits
    // behind more than about one bandwidth-delay product of another stream's data.
    this.#scheduler = new LinkScheduler(link);
    link.onFrame = (raw) => this.#onFrame(raw);
    this.#infoTimer = setTimeout(() => {
      if (!this.info) this.link.close(CloseCode.TIMEOUT, "no info message within 10 s");
    }, INFO_TIMEOUT_MS);
    link.onClose = (code, reason) => {
      clearTimeout(this.#infoTimer);
      for (const stream of [...this.#streams.values()]) {
        // The reason says whether the device went quiet (keepalive) or left on purpose.
        const why = reason ? ` (${reason})` : "";
        stream.reset(ResetCode.DEVICE_GONE, `device "${record.name}" disconnected${why}`);
      }
      this.#streams.clear();
      this.#hooks.onClose(this, code, reason);
    };
  }

  /**
   * Sends property values changed by clients to the daemon, split into frames by their encoded
   * size (see encodePropsState).
   */
  pushProps(changes: PropChange[]): void {
    for (const frame of encodePropsState(changes, false)) this.#scheduler.urgent(frame);
  }

  /** Takes the device's new id after a rename and tells the daemon. */
  renamed(name: string): void {
    this.record.name = name; // events, logs and the store watcher use the live session's name
    this.#scheduler.urgent(encodeRelayMessage({ t: "renamed", device: name }));
  }

  /** Number of streams open now. */
  get streamCount(): number {
    return this.#streams.size;
  }

  /** Number of streams the device has not answered yet. */
  get pendingOpens(): number {
    let n = 0;
    for (const s of this.#streams.values()) if (!s.isOpen) n++;
    return n;
  }

  /** Asks the device to open `service` for a client tunnel; false if at the stream limit. */
  open(tunnel: RelayStream): boolean {
    if (this.#streams.size >= this.#limits.maxStreams || !this.link.open) return false;
    if (this.#nextStream > MAX_STREAM_ID) {
      this.link.close(CloseCode.LIMIT, "stream ids exhausted; reconnect");
      return false;
    }
    const id = this.#nextStream++;
    this.#streams.set(id, tunnel);
    tunnel.attachDevice(this, id);
    const maxWindow = tunnel.growing ? tunnel.maxWindow : undefined;
    this.#scheduler.urgent(encodeOpen(id, tunnel.info.service, tunnel.info.from, maxWindow));
    return true;
  }

  /** Sends a frame toward the device, scheduled; `onSent` runs once it reached the socket. */
  send(frame: Uint8Array, onSent?: () => void): void {
    this.#scheduler.send(frame, onSent);
  }

  /** What the link's scheduler measured: bytes in flight, its cap, RTT (for tests, metrics). */
  get linkState(): { inflight: number; cap: number; rttMs: number | null } {
    const s = this.#scheduler;
    return { inflight: s.inflight, cap: s.cap, rttMs: s.rttMs };
  }

  /** Forgets a finished stream. */
  release(stream: number): void {
    this.#streams.delete(stream);
  }

  /** Streams of this device, for revocation. */
  streams(): IterableIterator<RelayStream> {
    return this.#streams.values();
  }

  #controlBudget(): boolean {
    const now = Date.now();
    this.#tokens = Math.min(
      CONTROL_BURST,
      this.#tokens + ((now - this.#tokensAt) / 1000) * CONTROL_PER_SECOND,
    );
    this.#tokensAt = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  #onFrame(raw: Uint8Array): void {
    this.lastFrameAt = Date.now();
    const frame = decodeFrame(raw);
    switch (frame.type) {
      case FrameType.PING:
        return this.#scheduler.urgent(encodePing(FrameType.PONG, frame.nonce));
      case FrameType.PONG:
        this.#scheduler.pong(frame.nonce);
        return;
      case FrameType.CONTROL:
        return this.#onControl(frame.message);
      case FrameType.OPEN:
        throw new Error("devices may not open streams");
      default: {
        const stream = this.#streams.get(frame.stream);
        if (stream) stream.fromDevice(raw, frame);
      }
    }
  }

  #onControl(message: Record<string, unknown>): void {
    if (!this.#controlBudget()) {
      this.link.close(CloseCode.LIMIT, "too many control messages");
      return;
    }
    // Malformed messages throw ProtocolError, which closes this link only; unknown ones are
    // skipped so newer daemons can add some.
    const parsed = parseDaemonMessage(message);
    if (parsed?.t === "info") clearTimeout(this.#infoTimer); // idle devices hold no timer
    if (parsed) this.#hooks.onMessage(this, parsed);
  }
}
