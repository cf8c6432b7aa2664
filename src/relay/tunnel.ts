/**
 * A client tunnel inside the relay: one client link joined to one stream of a device link.
 * The relay forwards DATA, EOF and RESET as they are, rewriting only the stream id in place, and
 * takes part in the credit arithmetic so that no peer can make it buffer:
 *
 * - it checks each direction against the window and resets a stream that overruns it;
 * - it passes a receiver's CREDIT on to the sender only for bytes the relay has actually
 *   written to that receiver's socket. A client (or device) that grants credit but never
 *   reads therefore stalls its own stream after one window instead of filling the relay.
 *
 * Lifecycle: created before the client's upgrade; `opened` settles when the device answers
 * OPEN (or the attempt fails); `attachClient` joins the client link after the 101. `onEnd` runs
 * once, when the tunnel ends for any reason.
 */
import {
  CLIENT_STREAM,
  decodeFrame,
  encodeCredit,
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

/** Why and how a tunnel ended, for logs and the audit trail. */
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
  send(frame: Uint8Array, onSent?: () => void): void;
  release(stream: number): void;
}

/** How an open attempt ended: OPENED, or the reset that refused it. */
export type OpenResult = { ok: true } | { ok: false; code: number; reason: string };

const OPEN_TIMEOUT_MS = 10_000; // a device that cannot dial within 10 s is not going to
const LINGER_MS = 5_000; // time a finished client gets to close its own link
const PINGS_PER_SECOND = 5; // od PINGs a client may send; more are not answered
const PING_BURST = 10;
const MAX_PONG_BACKLOG = 1024 * 1024; // a client this far behind reading gets no pongs

/**
 * Memory a set of streams may commit beyond their initial windows (per device link, per relay).
 * A stream whose credit it holds back is told when some is given back.
 */
export class Budget {
  used = 0;
  #waiting = new Set<() => void>();
  #scheduled = false;

  constructor(readonly limit: number) {}

  /** Bytes that may still be committed. */
  get free(): number {
    return Math.max(0, this.limit - this.used);
  }

  /** Commits (positive) or gives back (negative) bytes. */
  charge(delta: number): void {
    this.used += delta;
    if (delta >= 0 || this.#waiting.size === 0 || this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      const waiting = [...this.#waiting];
      this.#waiting.clear();
      for (const w of waiting) w();
    });
  }

  /** Calls `retry` once after bytes are given back. */
  wait(retry: () => void): void {
    this.#waiting.add(retry);
  }

  /** Stops waiting (the stream ended). */
  forget(retry: () => void): void {
    this.#waiting.delete(retry);
  }
}

/**
 * The credit arithmetic of one direction of a stream, as the relay sees it. Bytes the relay
 * holds for it are `unwritten`; the sender may still send `allowance`. The relay passes the
 * receiver's credit on so that allowance + unwritten never exceeds `cap` (the window the ends
 * agreed on), and beyond the initial window only as far as the budgets allow: a receiver's word
 * alone cannot make the relay hold more.
 */
class Direction {
  sent = 0; // DATA bytes from the sender
  written = 0; // of those, written to the receiver's socket
  creditIn = 0; // credit the receiver granted
  creditOut = 0; // credit passed on to the sender
  eof = false;

  constructor(readonly cap: number, readonly budgets: Budget[]) {}

  /** Bytes the sender may still send. */
  get allowance(): number {
    return STREAM_WINDOW + this.creditOut - this.sent;
  }

  get unwritten(): number {
    return this.sent - this.written;
  }

  /** Credit the receiver granted that has not been passed on. */
  get held(): number {
    return this.creditIn - this.creditOut;
  }

  /** What of this direction's window counts against the budgets. */
  get excess(): number {
    return Math.max(0, this.creditOut - this.written);
  }

  /** Accounts for DATA from the sender; false if it overran its window. */
  take(n: number): boolean {
    this.sent += n;
    return this.allowance >= 0;
  }

  /** Bytes reached the receiver's socket. */
  wrote(n: number): void {
    const before = this.excess;
    this.written += n;
    this.#charge(this.excess - before);
  }

  /** Credit that may be passed on now, and passes it (the caller sends the CREDIT). */
  release(): number {
    // allowance + unwritten = STREAM_WINDOW + creditOut - written: what the sender may have out.
    const room = this.cap - STREAM_WINDOW - (this.creditOut - this.written);
    // Up to the initial window it is free; beyond it, it comes out of the budgets.
    const budget = Math.min(...this.budgets.map((b) => b.free));
    const free = Math.max(0, this.written - this.creditOut) + budget;
    const n = Math.min(this.held, room, free);
    if (n <= 0) return 0;
    const before = this.excess;
    this.creditOut += n;
    this.#charge(this.excess - before);
    return n;
  }

  /** Gives back what this direction held against the budgets (the stream ended). */
  settle(): void {
    this.#charge(-this.excess);
    this.written = this.creditOut; // nothing more is held
  }

  #charge(delta: number): void {
    if (delta !== 0) { for (const b of this.budgets) b.charge(delta); }
  }
}

/** One client tunnel. */
export class RelayStream {
  readonly info: TunnelInfo;
  readonly started = Date.now();
  /** Settles when the device answers the OPEN, refuses it, or the attempt times out. */
  readonly opened: Promise<OpenResult>;
  /** Stream id on the device link; set by DeviceSession.open. */
  deviceStream = 0;
  onEnd: (end: TunnelEnd) => void = () => {};
  /** The client link, once attached. */
  client: FrameLink | null = null;
  /** When the client last sent a frame (ms), for the relay's keepalive sweep. */
  lastFrameAt = Date.now();

  #device: DeviceSide | null = null;
  #openedInfo: Record<string, unknown>;
  #isOpen = false;
  #settleOpen!: (r: OpenResult) => void;
  #finished = false;
  #up: Direction; // client → device
  #down: Direction; // device → client
  #retryUp = () => this.#passCredit(this.#up);
  #retryDown = () => this.#passCredit(this.#down);
  #early: Uint8Array[] = []; // device frames that arrived before the client link
  #timer: ReturnType<typeof setTimeout> | undefined;
  #pingTokens = PING_BURST;
  #pingAt = Date.now();

  /**
   * `openedInfo` is what the client learns with OPENED (id, account, host keys to pin).
   * `maxWindow` is the window both ends may grow to (STREAM_WINDOW where one of them cannot);
   * `budgets` bound what the relay holds beyond the initial windows.
   */
  constructor(
    info: TunnelInfo,
    openedInfo: Record<string, unknown>,
    flow: { maxWindow: number; budgets: Budget[] } = { maxWindow: STREAM_WINDOW, budgets: [] },
  ) {
    this.info = info;
    this.#openedInfo = openedInfo;
    this.#up = new Direction(flow.maxWindow, flow.budgets);
    this.#down = new Direction(flow.maxWindow, flow.budgets);
    this.opened = new Promise((resolve) => (this.#settleOpen = resolve));
  }

  /** True where both ends may grow their windows: BLOCKED passes between them. */
  get growing(): boolean {
    return this.#up.cap > STREAM_WINDOW;
  }

  /** The largest window either end may grow to. */
  get maxWindow(): number {
    return this.#up.cap;
  }

  /** Called by the device session once OPEN has been sent with stream id `stream`. */
  attachDevice(device: DeviceSide, stream: number): void {
    this.#device = device;
    this.deviceStream = stream;
    this.#timer = setTimeout(() => {
      if (!this.#isOpen) {
        this.reset(ResetCode.TIMEOUT, `device "${this.info.device}" did not answer in time`);
      }
    }, OPEN_TIMEOUT_MS);
  }

  /** The frame a client receives first: OPENED with who the device is. */
  openedFrame(): Uint8Array {
    return encodeOpened(CLIENT_STREAM, this.#openedInfo);
  }

  /** Joins the client link (after the 101, which carried `openedFrame()`). */
  attachClient(client: FrameLink): void {
    this.client = client;
    if (this.#finished) {
      client.close(CloseCode.NORMAL, "stream reset");
      return;
    }
    client.onFrame = (raw) => this.#fromClient(raw);
    client.onClose = () => {
      this.#end("reset", ResetCode.CANCELLED, "the client went away", { device: true });
    };
    for (const frame of this.#early.splice(0)) this.#toClient(frame);
  }

  /** True once the device has answered OPENED. */
  get isOpen(): boolean {
    return this.#isOpen;
  }

  /** True once the tunnel has ended. */
  get finished(): boolean {
    return this.#finished;
  }

  /** Ends the tunnel from the relay's side, telling both ends why. */
  reset(code: number, reason: string): void {
    this.#end("reset", code, reason, { device: true, client: true });
    this.client?.close(CloseCode.NORMAL, "stream reset");
  }

  /** Handles a frame from the device for this stream; `raw` is forwarded as is. */
  fromDevice(raw: Uint8Array, frame: Frame): void {
    if (this.#finished) return;
    switch (frame.type) {
      case FrameType.OPENED:
        if (this.#isOpen) return this.#violation("the device opened a stream twice", "device");
        this.#isOpen = true;
        clearTimeout(this.#timer);
        this.#settleOpen({ ok: true });
        metrics.tunnelOpened(this.started);
        return;
      case FrameType.DATA:
        metrics.forwardedBytes.inc("device_to_client", frame.data.length);
        if (!this.#down.take(frame.data.length) || this.#down.eof || !this.#isOpen) {
          return this.#violation("the device sent data beyond its window", "device");
        }
        setStream(raw, CLIENT_STREAM);
        return this.#toClient(raw, frame.data.length);
      case FrameType.CREDIT:
        return this.#grant(this.#up, frame.bytes);
      case FrameType.BLOCKED:
        if (!this.growing) return this.#violation("BLOCKED was not negotiated", "device");
        setStream(raw, CLIENT_STREAM);
        return this.#toClient(raw);
      case FrameType.EOF:
        this.#down.eof = true;
        setStream(raw, CLIENT_STREAM);
        this.#toClient(raw);
        return this.#maybeDone();
      case FrameType.RESET:
        setStream(raw, CLIENT_STREAM);
        this.#toClient(raw);
        this.#end("reset", frame.code, frame.reason, {});
        this.client?.close(CloseCode.NORMAL, "stream reset");
        return;
      default:
        return this.#violation(`frame type ${frame.type} is not valid on a stream`, "device");
    }
  }

  /** Sends toward the client, holding frames until its link is attached. */
  #toClient(raw: Uint8Array, data = 0): void {
    if (!this.client) {
      this.#early.push(raw.slice());
      if (data > 0) this.#written(this.#down, data); // held here, within the window
      return;
    }
    this.client.send(raw, data > 0 ? () => this.#written(this.#down, data) : undefined);
  }

  /** Bytes of a direction reached the receiver's socket: credit held for them may move on. */
  #written(dir: Direction, n: number): void {
    dir.wrote(n);
    if (dir.held > 0) this.#passCredit(dir);
  }

  #grant(dir: Direction, bytes: number): void {
    dir.creditIn += bytes;
    if (dir.held > dir.cap) {
      const by = dir === this.#up ? "device" : "client";
      return this.#violation("granted more credit than the window", by);
    }
    this.#passCredit(dir);
  }

  #passCredit(dir: Direction): void {
    if (this.#finished) return;
    const n = dir.release();
    if (n > 0) {
      if (dir === this.#up) this.#toClient(encodeCredit(CLIENT_STREAM, n));
      else this.#device?.send(encodeCredit(this.deviceStream, n));
    }
    // Held back by a budget: try again once some is given back.
    if (dir.held > 0) {
      for (const b of dir.budgets) b.wait(dir === this.#up ? this.#retryUp : this.#retryDown);
    }
  }

  #fromClient(raw: Uint8Array): void {
    this.lastFrameAt = Date.now();
    if (this.#finished) return;
    const frame = decodeFrame(raw); // a throw closes the client link (FrameLink contract)
    if (frame.type === FrameType.PING) {
      if (this.#takePing()) this.client!.send(encodePing(FrameType.PONG, frame.nonce));
      return;
    }
    if (frame.type === FrameType.PONG) return; // unsolicited: the client's ACK nudge
    if (frame.stream !== CLIENT_STREAM) {
      return this.#violation(`a client link carries only stream ${CLIENT_STREAM}`, "client");
    }
    switch (frame.type) {
      case FrameType.DATA: {
        const n = frame.data.length;
        metrics.forwardedBytes.inc("client_to_device", n);
        if (!this.#up.take(n) || this.#up.eof || !this.#isOpen) {
          return this.#violation("the client sent data beyond its window", "client");
        }
        setStream(raw, this.deviceStream);
        this.#device?.send(raw, () => this.#written(this.#up, n));
        return;
      }
      case FrameType.CREDIT:
        return this.#grant(this.#down, frame.bytes);
      case FrameType.BLOCKED:
        if (!this.growing) return this.#violation("BLOCKED was not negotiated", "client");
        setStream(raw, this.deviceStream);
        this.#device?.send(raw);
        return;
      case FrameType.EOF:
        if (!this.#isOpen) return this.#violation("the client sent EOF before OPENED", "client");
        this.#up.eof = true;
        setStream(raw, this.deviceStream);
        this.#device?.send(raw);
        return this.#maybeDone();
      case FrameType.RESET:
        setStream(raw, this.deviceStream);
        this.#device?.send(raw);
        this.#end("reset", frame.code, frame.reason, {});
        return;
      default:
        return this.#violation(`frame type ${frame.type} is not valid on a client link`, "client");
    }
  }

  /** Client PINGs are answered at a bounded rate, so a flood cannot queue pongs. */
  #takePing(): boolean {
    const now = Date.now();
    this.#pingTokens = Math.min(
      PING_BURST,
      this.#pingTokens + ((now - this.#pingAt) / 1000) * PINGS_PER_SECOND,
    );
    this.#pingAt = now;
    if (this.#pingTokens < 1 || (this.client?.bufferedAmount ?? 0) > MAX_PONG_BACKLOG) return false;
    this.#pingTokens--;
    return true;
  }

  #violation(reason: string, by: "client" | "device"): void {
    const text = `Protocol violation by the ${by}: ${reason}`;
    this.#end("error", ResetCode.PROTOCOL, text, { device: true, client: true });
    this.client?.close(CloseCode.PROTOCOL, text);
  }

  #maybeDone(): void {
    if (this.#up.eof && this.#down.eof) this.#end("ok", null, "", {});
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
    if (!this.#isOpen) this.#settleOpen({ ok: false, code: resetCode, reason });
    if (notify.device && this.#device) {
      this.#device.send(encodeReset(this.deviceStream, resetCode, reason));
    }
    if (notify.client) this.client?.send(encodeReset(CLIENT_STREAM, resetCode, reason));
    this.#device?.release(this.deviceStream);
    this.#early = [];
    for (const dir of [this.#up, this.#down]) {
      dir.settle();
      for (const b of dir.budgets) b.forget(dir === this.#up ? this.#retryUp : this.#retryDown);
    }
    const client = this.client;
    if (client?.open) {
      // Give the client a moment to close its own link after the last frames, then close it.
      const linger = setTimeout(() => client.close(CloseCode.NORMAL, "stream finished"), LINGER_MS);
      const previous = client.onClose;
      client.onClose = (c, r) => {
        clearTimeout(linger);
        previous?.(c, r);
      };
    }
    this.onEnd({
      result,
      code,
      reason,
      bytesUp: this.#up.sent,
      bytesDown: this.#down.sent,
      durationMs: Date.now() - this.started,
    });
  }
}
