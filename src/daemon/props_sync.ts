/**
 * Sends the device's pending property changes to the relay, one batch at a time, and drops
 * them from the queue only when the relay acknowledges them; applies the relay's values to the
 * local copy. A link that dies mid-batch loses nothing: the next link sends the batch again, and
 * last-write-wins makes the repeat harmless. Batches are cut by their encoded size
 * (encodePropsBatch), so no value, however it escapes, can make a frame too big.
 */
import {
  encodePropsBatch,
  type PropsAckMessage,
  type PropsStateMessage,
} from "../protocol/control.ts";
import { MAX_PROPS, MAX_TOMBSTONES, type PropChange } from "../protocol/props.ts";
import type { FrameLink } from "../transport/link.ts";
import { log } from "../shared/log.ts";
import type { LocalProps } from "../store/local_props.ts";

// A relay's full state has at most this many entries; a relay sending more is not trusted.
const MAX_FULL_STATE = MAX_PROPS + MAX_TOMBSTONES;

/** Property sync over one link. */
export class PropsSync {
  #link: FrameLink;
  #props: LocalProps;
  #inFlight = false;
  #incoming: PropChange[] = []; // a full state being received in parts
  #receivingFull = false;

  constructor(link: FrameLink, props: LocalProps) {
    this.#link = link;
    this.#props = props;
  }

  /** Sends the next batch of pending changes, unless one is already waiting for its ack. */
  flush(): void {
    if (this.#inFlight || !this.#link.open) return;
    const batch = encodePropsBatch(this.#props.pending());
    if (batch === null) return;
    this.#inFlight = true;
    this.#link.send(batch.frame);
  }

  /** Applies the relay's acknowledgement and sends the next batch. */
  ack(message: PropsAckMessage): void {
    this.#props.ack(message.seq, message.rejected);
    if (message.rejected.length > 0) {
      log.warn("the relay refused property changes", { keys: message.rejected.join(",") });
    }
    this.#inFlight = false;
    this.flush();
  }

  /** Takes the relay's values: a full state (in parts until `last`) or client edits. */
  state(message: PropsStateMessage): void {
    const values = Object.entries(message.props).map(([k, p]) => ({ k, v: p.v, at: p.at }));
    if (message.full) {
      this.#receivingFull = true;
      this.#incoming = [];
    }
    if (!this.#receivingFull) return this.#props.applyRelay(values, false);
    this.#incoming.push(...values);
    if (this.#incoming.length > MAX_FULL_STATE) {
      log.warn("the relay sent more properties than a device can have; ignored");
      this.#receivingFull = false;
      this.#incoming = [];
      return;
    }
    if (message.last) {
      this.#receivingFull = false;
      this.#props.applyRelay(this.#incoming, true);
      this.#incoming = [];
    }
  }
}
