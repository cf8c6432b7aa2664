/**
 * A client tunnel inside the relay: one client link joined to one stream of a device link.
 * The relay forwards DATA, CREDIT, EOF and RESET frames as they are, rewriting only the stream
 * id in place, and keeps the credit arithmetic of both directions so a peer that overruns its
 * window is reset instead of making the relay buffer for it.
 */
import {
  CLIENT_STREAM,
  decodeFrame,
  encodeOpened,
  encodePing,
  encodeReset,
  type Frame,
  FrameType,
  ResetCode,
  setStream,
  STREAM_WINDOW,
} from "../protocol/frame.ts";
import { CloseCode, type FrameLink } from "../transport/link.ts";
import { metrics } from "./relay_metrics.ts";

/** Why and how a tunnel ended, for logs and (later) the audit trail. */
export interface TunnelEnd {
  result: "ok" | "reset" | "error";
  code: number | null;
  reason: string;
  bytesUp: number;
  bytesDown: number;
  durationMs: number;
}

/** Who opened a tunnel and to what. */
export interface TunnelInfo {
  accountId: number;
  keyId: string;
  /** The device as the client named it (`dev` or `owner.dev`). */
  device: string;
  /** The device's own id and its owner account, for re-checking access later. */
  deviceName: string;
  ownerId: number;
  service: string;
  from: string;
}

/** The device side a tunnel talks to (implemented by DeviceSession). */
export interface DeviceSide {
  send(frame: Uint8Array): void;
  release(stream: number): void;
}

const OPEN_TIMEOUT_MS = 10_000; // a device that cannot dial within 10 s is not going to
const LINGER_MS = 5_000; // time a finished client gets to close its own link

/** One client tunnel. */
export class RelayStream {
  readonly info: TunnelInfo;
  readonly client: FrameLink;
  readonly started = Date.now();
  /** Stream id on the device link; set by DeviceSession.open. */
  deviceStream = 0;
  onEnd: (end: TunnelEnd) => void = () => {};

  #device: DeviceSide | null = null;
  #openedInfo: Record<string, unknown>;
  #opened = false;
  #finished = false;
  #toDevice = STREAM_WINDOW; // bytes the client may still send
  #toClient = STREAM_WINDOW; // bytes the device may still send
  #clientEof = false;
  #deviceEof = false;
  #bytesUp = 0;
  #bytesDown = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * `openedInfo` is what the client is told about the device with OPENED (id, account, host
   * keys for pinning).
   */
  constructor(client: FrameLink, info: TunnelInfo, openedInfo: Record<string, unknown>) {
    this.client = client;
    this.info = info;
    this.#openedInfo = openedInfo;
    client.onFrame = (raw) => this.#fromClient(raw);
    client.onClose = () => {
      this.#end("reset", ResetCode.CANCELLED, "the client went away", { device: true });
    };
  }

  /** Called by the device session once OPEN has been sent with stream id `stream`. */
  attach(device: DeviceSide, stream: number): void {
    this.#device = device;
    this.deviceStream = stream;
    this.#timer = setTimeout(() => {
      if (!this.#opened) {
        this.reset(ResetCode.TIMEOUT, `device "${this.info.device}" did not answer in time`);
      }
    }, OPEN_TIMEOUT_MS);
  }

  /** True once the device has answered OPENED. */
  get opened(): boolean {
    return this.#opened;
  }

  /** True once the tunnel has ended. */
  get finished(): boolean {
    return this.#finished;
  }

  /** Ends the tunnel from the relay's side, telling both ends why. */
  reset(code: number, reason: string): void {
    this.#end("reset", code, reason, { device: true, client: true });
    this.client.close(CloseCode.NORMAL, "stream reset");
  }

  /** Handles a frame from the device for this stream; `raw` is forwarded as is. */
  fromDevice(raw: Uint8Array, frame: Frame): void {
    if (this.#finished) return;
    switch (frame.type) {
      case FrameType.OPENED:
        if (this.#opened) return this.#violation("the device opened a stream twice", "device");
        this.#opened = true;
        clearTimeout(this.#timer);
        metrics.tunnelOpened(this.started);
        // The client learns who the device is in the same frame, so it is one write.
        this.client.send(encodeOpened(CLIENT_STREAM, this.#openedInfo));
        return;
      case FrameType.DATA:
        this.#toClient -= frame.data.length;
        this.#bytesDown += frame.data.length;
        metrics.forwardedBytes.inc("device_to_client", frame.data.length);
        if (this.#toClient < 0 || this.#deviceEof || !this.#opened) {
          return this.#violation("the device sent data beyond its window", "device");
        }
        break;
      case FrameType.CREDIT:
        this.#toDevice = Math.min(STREAM_WINDOW, this.#toDevice + frame.bytes);
        break;
      case FrameType.EOF:
        this.#deviceEof = true;
        break;
      case FrameType.RESET:
        setStream(raw, CLIENT_STREAM);
        this.client.send(raw);
        this.#end("reset", frame.code, frame.reason, {});
        this.client.close(CloseCode.NORMAL, "stream reset");
        return;
      default:
        return this.#violation(`frame type ${frame.type} is not valid on a stream`, "device");
    }
    setStream(raw, CLIENT_STREAM);
    this.client.send(raw);
    this.#maybeDone();
  }

  #fromClient(raw: Uint8Array): void {
    if (this.#finished) return;
    const frame = decodeFrame(raw); // a throw closes the client link (FrameLink contract)
    if (frame.type === FrameType.PING) {
      this.client.send(encodePing(FrameType.PONG, frame.nonce));
      return;
    }
    if (frame.type === FrameType.PONG) return; // unsolicited: the client's ACK nudge
    if (frame.stream !== CLIENT_STREAM) {
      return this.#violation(`a client link carries only stream ${CLIENT_STREAM}`, "client");
    }
    switch (frame.type) {
      case FrameType.DATA:
        this.#toDevice -= frame.data.length;
        this.#bytesUp += frame.data.length;
        metrics.forwardedBytes.inc("client_to_device", frame.data.length);
        if (this.#toDevice < 0 || this.#clientEof || !this.#opened) {
          return this.#violation("the client sent data beyond its window", "client");
        }
        break;
      case FrameType.CREDIT:
        this.#toClient = Math.min(STREAM_WINDOW, this.#toClient + frame.bytes);
        break;
      case FrameType.EOF:
        if (!this.#opened) return this.#violation("the client sent EOF before OPENED", "client");
        this.#clientEof = true;
        break;
      case FrameType.RESET:
        setStream(raw, this.deviceStream);
        this.#device?.send(raw);
        this.#end("reset", frame.code, frame.reason, {});
        return;
      default:
        return this.#violation(`frame type ${frame.type} is not valid on a client link`, "client");
    }
    setStream(raw, this.deviceStream);
    this.#device?.send(raw);
    this.#maybeDone();
  }

  #violation(reason: string, by: "client" | "device"): void {
    const text = `Protocol violation by the ${by}: ${reason}`;
    this.#end("error", ResetCode.PROTOCOL, text, { device: true, client: true });
    this.client.close(CloseCode.PROTOCOL, text);
  }

  #maybeDone(): void {
    if (this.#clientEof && this.#deviceEof) this.#end("ok", null, "", {});
  }

  #end(
    result: TunnelEnd["result"],
    code: number | null,
    reason: string,
    notify: { device?: boolean; client?: boolean },
  ): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#timer);
    const resetCode = code ?? ResetCode.CANCELLED;
    if (notify.device && this.#device) {
      this.#device.send(encodeReset(this.deviceStream, resetCode, reason));
    }
    if (notify.client) this.client.send(encodeReset(CLIENT_STREAM, resetCode, reason));
    this.#device?.release(this.deviceStream);
    if (this.client.open) {
      // Give the client a moment to close its own link after the last frames, then close it.
      const linger = setTimeout(
        () => this.client.close(CloseCode.NORMAL, "stream finished"),
        LINGER_MS,
      );
      const previous = this.client.onClose;
      this.client.onClose = (c, r) => {
        clearTimeout(linger);
        previous?.(c, r);
      };
    }
    this.onEnd({
      result,
      code,
      reason,
      bytesUp: this.#bytesUp,
      bytesDown: this.#bytesDown,
      durationMs: Date.now() - this.started,
    });
  }
}
