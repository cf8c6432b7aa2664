/**
 * The daemon's side of one connection to the relay: answers OPEN by dialling the named local
 * service (if, and only if, it is exposed) and bridges each stream with a StreamEnd.
 *
 * Lifecycle: frames flow until the link closes; then every stream is closed. The daemon makes
 * a new DeviceLink for each reconnection.
 */
import {
  decodeFrame,
  encodeOpened,
  encodePing,
  encodeReset,
  type Frame,
  FrameType,
  ResetCode,
} from "../protocol/frame.ts";
import type { FrameLink } from "../transport/link.ts";
import { StreamEnd } from "../transport/stream.ts";
import { LinkScheduler } from "../transport/scheduler.ts";
import { log } from "../shared/log.ts";
import { describeTarget, dialService, type ServiceTarget } from "./services.ts";

const MAX_STREAMS = 1024; // the relay enforces the same; this guards against a rogue relay

/** One live connection to the relay. */
export class DeviceLink {
  readonly link: FrameLink;
  lastFrameAt = Date.now();
  /** While set, new tunnels are refused with this reason (the daemon is stopping). */
  refuseNew: string | null = null;
  /** Resolves with the relay's hello message. */
  readonly hello: Promise<Record<string, unknown>>;
  #services: Map<string, ServiceTarget>;
  #streams = new Map<number, StreamEnd | "dialing">();
  #cancelled = new Set<number>(); // streams reset while still dialling
  #resolveHello!: (m: Record<string, unknown>) => void;

  #onControl: (message: Record<string, unknown>) => void;
  // Everything toward the relay goes through the scheduler, so a keystroke's reply never waits
  // behind more than about one bandwidth-delay product of another stream's data.
  #scheduler: LinkScheduler;

  /**
   * `onControl` gets CONTROL messages other than hello. It is a constructor argument because the
   * link may already hold frames, which are handed over as soon as this attaches.
   */
  constructor(
    link: FrameLink,
    services: Map<string, ServiceTarget>,
    onControl: (message: Record<string, unknown>) => void,
  ) {
    this.link = link;
    this.#services = services;
    this.#onControl = onControl;
    this.hello = new Promise((resolve) => (this.#resolveHello = resolve));
    this.#scheduler = new LinkScheduler(link);
    link.onFrame = (raw) => this.#onFrame(raw);
  }

  /** What the link's scheduler measured (for tests and od status). */
  get linkState(): { inflight: number; cap: number; rttMs: number | null } {
    const s = this.#scheduler;
    return { inflight: s.inflight, cap: s.cap, rttMs: s.rttMs };
  }

  /** Closes every stream; called when the link has closed. */
  closeStreams(): void {
    for (const s of this.#streams.values()) {
      if (s !== "dialing") s.reset(ResetCode.DEVICE_GONE, "the device's link to the relay closed");
    }
    this.#streams.clear();
  }

  /** Number of streams open or being dialled. */
  get streamCount(): number {
    return this.#streams.size;
  }

  #onFrame(raw: Uint8Array): void {
    this.lastFrameAt = Date.now();
    const frame = decodeFrame(raw);
    switch (frame.type) {
      case FrameType.OPEN:
        return this.#open(frame.stream, frame.service, frame.from, frame.maxWindow);
      case FrameType.CONTROL:
        if (frame.message.t === "hello") this.#resolveHello(frame.message);
        else this.#onControl(frame.message);
        return;
      case FrameType.PING:
        return this.#scheduler.urgent(encodePing(FrameType.PONG, frame.nonce));
      case FrameType.PONG:
        this.#scheduler.pong(frame.nonce);
        return;
      case FrameType.OPENED:
        throw new Error("the relay sent OPENED, which only devices send");
      default:
        return this.#toStream(frame);
    }
  }

  #toStream(frame: Frame): void {
    const stream = this.#streams.get(frame.stream);
    if (stream === "dialing") {
      if (frame.type === FrameType.RESET) this.#cancelled.add(frame.stream);
      return;
    }
    stream?.handle(frame);
  }

  #open(id: number, service: string, from: string, maxWindow?: number): void {
    if (this.#streams.has(id)) throw new Error(`the relay reused stream id ${id}`);
    if (this.refuseNew) {
      log.info("refused tunnel", { service, from, reason: "stopping" });
      this.link.send(encodeReset(id, ResetCode.REFUSED, this.refuseNew));
      return;
    }
    const target = this.#services.get(service);
    if (!target) {
      const exposed = [...this.#services.keys()].join(", ") || "none";
      log.info("refused tunnel", { service, from, reason: "not exposed" });
      this.#scheduler.send(encodeReset(
        id,
        ResetCode.NOT_EXPOSED,
        `the device does not expose service "${service}" (it exposes: ${exposed})`,
      ));
      return;
    }
    if (this.#streams.size >= MAX_STREAMS) {
      this.#scheduler.send(
        encodeReset(id, ResetCode.LIMIT, "the device has too many open tunnels"),
      );
      return;
    }
    this.#streams.set(id, "dialing");
    dialService(target).then((conn) => {
      if (this.#cancelled.delete(id) || !this.link.open) {
        this.#streams.delete(id);
        conn.close();
        return;
      }
      const stream = new StreamEnd({
        id,
        send: (f, onSent) => this.#scheduler.send(f, onSent),
        io: conn,
        maxWindow,
      });
      this.#streams.set(id, stream);
      this.#scheduler.urgent(encodeOpened(id));
      stream.start();
      stream.done.then(() => this.#streams.delete(id));
    }, (err) => {
      this.#streams.delete(id);
      this.#cancelled.delete(id);
      const reason = `cannot connect to service "${service}" at ${describeTarget(target)}: ` +
        (err instanceof Error ? err.message.replace(/ \(os error \d+\)$/, "") : String(err));
      log.warn("tunnel dial failed", { service, from, error: reason });
      this.#scheduler.send(encodeReset(id, ResetCode.DIAL_FAILED, reason));
    });
  }
}
