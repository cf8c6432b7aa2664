/**
 * One connected device inside the relay: its link, the streams opened on it, and what it
 * reported about itself. Frames for unknown streams are dropped silently, because a RESET may
 * cross DATA already in flight; malformed frames close the link (FrameLink contract).
 */
import {
  decodeFrame,
  encodeControl,
  encodeOpen,
  encodePing,
  FrameType,
  MAX_STREAM_ID,
  ResetCode,
} from "../protocol/frame.ts";
import { CloseCode, type FrameLink } from "../transport/link.ts";
import type { DeviceRecord } from "../store/devices.ts";
import { type DeviceInfo, parseInfo } from "../protocol/control.ts";
import type { DeviceSide, RelayStream } from "./tunnel.ts";

/** Limits a device link is held to. */
export interface SessionLimits {
  /** Streams open at once on one device. */
  maxStreams: number;
}

/** Callbacks from a session to the relay. */
export interface SessionHooks {
  onInfo(session: DeviceSession, info: DeviceInfo): void;
  onClose(session: DeviceSession, code: number, reason: string): void;
}

/** A connected device. */
export class DeviceSession implements DeviceSide {
  readonly record: DeviceRecord;
  readonly link: FrameLink;
  readonly ip: string;
  readonly since = Date.now();
  info: DeviceInfo | null = null;
  lastFrameAt = Date.now();

  #streams = new Map<number, RelayStream>();
  #nextStream = 1;
  #limits: SessionLimits;
  #hooks: SessionHooks;

  constructor(
    record: DeviceRecord,
    link: FrameLink,
    options: { ip: string; limits: SessionLimits; hooks: SessionHooks },
  ) {
    this.record = record;
    this.link = link;
    this.ip = options.ip;
    this.#limits = options.limits;
    this.#hooks = options.hooks;
    link.onFrame = (raw) => this.#onFrame(raw);
    link.onClose = (code, reason) => {
      for (const stream of [...this.#streams.values()]) {
        stream.reset(ResetCode.DEVICE_GONE, `device "${record.name}" disconnected`);
      }
      this.#streams.clear();
      this.#hooks.onClose(this, code, reason);
    };
  }

  /** Greets the daemon with its identity; sent once the link is up. */
  hello(extra: Record<string, unknown> = {}): void {
    this.link.send(encodeControl({
      t: "hello",
      device: this.record.name,
      account: this.record.account,
      ...extra,
    }));
  }

  /** Number of streams open now. */
  get streamCount(): number {
    return this.#streams.size;
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
    tunnel.attach(this, id);
    this.link.send(encodeOpen(id, tunnel.info.service, tunnel.info.from));
    return true;
  }

  /** Sends a frame on the device link. */
  send(frame: Uint8Array): void {
    this.link.send(frame);
  }

  /** Forgets a finished stream. */
  release(stream: number): void {
    this.#streams.delete(stream);
  }

  /** Streams of this device, for revocation. */
  streams(): IterableIterator<RelayStream> {
    return this.#streams.values();
  }

  #onFrame(raw: Uint8Array): void {
    this.lastFrameAt = Date.now();
    const frame = decodeFrame(raw);
    switch (frame.type) {
      case FrameType.PING:
        return this.link.send(encodePing(FrameType.PONG, frame.nonce));
      case FrameType.PONG:
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
    if (message.t === "info") {
      this.info = parseInfo(message);
      this.#hooks.onInfo(this, this.info);
    }
    // Unknown control messages are ignored so newer daemons can add some.
  }
}
