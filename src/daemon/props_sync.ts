/**
 * Sends the device's pending property changes to the relay, one batch at a time, and drops
 * them from the queue only when the relay acknowledges them; applies the relay's values to the
 * local copy. A link that dies mid-batch loses nothing: the next link sends the batch again, and
 * last-write-wins makes the repeat harmless.
 */
import { encodeControl } from "../protocol/frame.ts";
import type { PropValue } from "../protocol/props.ts";
import type { FrameLink } from "../transport/link.ts";
import { log } from "../shared/log.ts";
import type { LocalProps } from "./props_store.ts";

const BATCH_BYTES = 48 * 1024; // keeps each CONTROL frame well under MAX_DATA

/** Property sync over one link. */
export class PropsSync {
  #link: FrameLink;
  #props: LocalProps;
  #inFlight = false;
  #incoming = new Map<string, PropValue>(); // a full sync being received in parts
  #receivingFull = false;

  constructor(link: FrameLink, props: LocalProps) {
    this.#link = link;
    this.#props = props;
  }

  /** Sends the next batch of pending changes, unless one is already waiting for its ack. */
  flush(): void {
    if (this.#inFlight || !this.#link.open) return;
    const batch = [];
    let size = 0;
    for (const c of this.#props.pending()) {
      const bytes = c.k.length + (c.v?.length ?? 0) * 3 + 48;
      if (batch.length > 0 && size + bytes > BATCH_BYTES) break;
      batch.push(c);
      size += bytes;
    }
    if (batch.length === 0) return;
    this.#inFlight = true;
    const seq = batch[batch.length - 1].seq;
    this.#link.send(encodeControl({
      t: "props",
      seq,
      changes: batch.map(({ k, v, at }) => ({ k, v, at })),
    }));
  }

  /** Handles the relay's props-ack and props-state messages; false for other messages. */
  handle(message: Record<string, unknown>): boolean {
    if (message.t === "props-ack" && typeof message.seq === "number") {
      const rejected = Array.isArray(message.rejected) ? message.rejected.map(String) : [];
      this.#props.ack(message.seq, rejected);
      if (rejected.length > 0) {
        log.warn("the relay refused property changes", { keys: rejected.join(",") });
      }
      this.#inFlight = false;
      this.flush();
      return true;
    }
    if (message.t === "props-state" && typeof message.props === "object" && message.props) {
      const values = new Map(Object.entries(message.props as Record<string, PropValue>));
      if (message.full) {
        this.#receivingFull = true;
        this.#incoming = new Map();
      }
      if (this.#receivingFull) {
        for (const [k, v] of values) this.#incoming.set(k, v);
        if (message.last) {
          this.#receivingFull = false;
          this.#props.saveSnapshot(this.#incoming, false);
        }
      } else this.#props.saveSnapshot(values, true);
      return true;
    }
    return false;
  }
}
