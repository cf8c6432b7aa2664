/**
 * A FrameLink carries whole protocol frames between two peers: a WebSocket in production, an
 * in-memory pair in unit tests. Roles talk to links only, so they never know which it is.
 *
 * Lifecycle: frames arrive through `onFrame` until `onClose` fires once; after that `send` is a
 * no-op. Neither side can pause the other: the protocol's credit windows bound what is in flight.
 */

/** A message-oriented, never-blocking link carrying protocol frames. */
export interface FrameLink {
  /**
   * Queues one frame. The bytes are captured at once, so the caller may reuse `frame`;
   * `onSent` runs once the frame has been handed to the network (for credit accounting).
   */
  send(frame: Uint8Array, onSent?: () => void): void;
  /** Closes the link with a WebSocket close code and a short reason for the peer. */
  close(code?: number, reason?: string): void;
  /** Bytes queued by `send` that the peer has not yet been sent. */
  readonly bufferedAmount: number;
  /** True until the link has closed. */
  readonly open: boolean;
  /**
   * Called with each incoming frame. A throw closes the link with `CloseCode.PROTOCOL`. Frames
   * that arrive before a handler is set are held and delivered when it is set.
   */
  onFrame: ((frame: Uint8Array) => void) | null;
  /**
   * Called once when the link is closed by either side; a handler set after the close is
   * called at once, so each owner of the link learns of it.
   */
  onClose: ((code: number, reason: string) => void) | null;
}

/** WebSocket close codes od uses (4000–4999 is the application range). */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL: 4400, //    the peer sent a malformed or forbidden frame
  REVOKED: 4401, //     the credential was revoked or the share removed
  REPLACED: 4409, //    the same device connected again elsewhere
  TIMEOUT: 4408, //     keepalive or handshake timeout
  LIMIT: 4429, //       too many streams, frames or bytes
} as const;

/**
 * Delivery common to all links: holds frames and the close event until handlers are set, so
 * nothing is lost between a socket opening and its owner attaching (a WebSocket may dispatch a
 * message in the same turn as its open event).
 */
export abstract class BaseLink {
  #frameHandler: ((frame: Uint8Array) => void) | null = null;
  #closeHandler: ((code: number, reason: string) => void) | null = null;
  #inbox: Uint8Array[] = [];
  #closedWith: [number, string] | null = null;
  protected closed = false;

  abstract close(code?: number, reason?: string): void;

  get onFrame() {
    return this.#frameHandler;
  }
  set onFrame(handler: ((frame: Uint8Array) => void) | null) {
    this.#frameHandler = handler;
    // Hand over what arrived before; stop if the handler replaces itself (it then gets the rest).
    while (handler && this.#frameHandler === handler && this.#inbox.length > 0) {
      this.#dispatch(handler, this.#inbox.shift()!);
    }
  }

  get onClose() {
    return this.#closeHandler;
  }
  set onClose(handler: ((code: number, reason: string) => void) | null) {
    this.#closeHandler = handler;
    // A handler set after the close (a new owner taking over the link) still learns of it.
    if (handler && this.#closedWith) handler(...this.#closedWith);
  }

  get open(): boolean {
    return !this.closed;
  }

  protected deliver(frame: Uint8Array): void {
    if (this.closed) return;
    const handler = this.#frameHandler;
    if (!handler || this.#inbox.length > 0) this.#inbox.push(frame);
    else this.#dispatch(handler, frame);
  }

  #dispatch(handler: (frame: Uint8Array) => void, frame: Uint8Array): void {
    try {
      handler(frame);
    } catch (err) {
      this.close(CloseCode.PROTOCOL, err instanceof Error ? err.message : String(err));
    }
  }

  protected finish(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true; // frames already received stay in the inbox for a late handler
    this.#closedWith = [code, reason];
    this.#closeHandler?.(code, reason);
  }
}

/**
 * Two FrameLinks joined in memory; delivery is asynchronous like a real socket, after
 * `delayMs` each way (a path's one-way delay, for tests of windows and scheduling).
 */
export function linkPair(delayMs = 0): [FrameLink, FrameLink] {
  const a = new MemoryLink(delayMs);
  const b = new MemoryLink(delayMs);
  a.peer = b;
  b.peer = a;
  return [a, b];
}

class MemoryLink extends BaseLink implements FrameLink {
  peer: MemoryLink | null = null;
  bufferedAmount = 0;

  constructor(readonly delayMs: number) {
    super();
  }

  send(frame: Uint8Array, onSent?: () => void): void {
    if (this.closed) return;
    const copy = frame.slice();
    const peer = this.peer!;
    this.bufferedAmount += copy.length;
    this.bufferedAmount -= copy.length;
    queueMicrotask(() => onSent?.());
    setTimeout(() => peer.deliver(copy), this.delayMs);
  }

  close(code: number = CloseCode.NORMAL, reason = ""): void {
    if (this.closed) return;
    this.finish(code, reason);
    const peer = this.peer!;
    setTimeout(() => peer.finish(code, reason), 0);
  }
}
