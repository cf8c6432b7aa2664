/**
 * A wake-up timer accurate to about 0.1 ms for the emulator's single scheduler loop: one
 * deadline at a time, kept in memory shared with a worker thread that sleeps until it
 * (clock_worker.ts) and then posts a message to this thread.
 */

/** Milliseconds on the `performance.now()` scale of this thread. */
export type Ms = number;

/** Calls `onTick` once the earliest deadline asked for has passed. */
export class Clock {
  #worker: Worker;
  #seq: Int32Array;
  #deadline: Float64Array;
  #at: Ms = Infinity; // the deadline the worker sleeps towards, Infinity for none

  constructor(onTick: () => void) {
    const shared = new SharedArrayBuffer(16);
    this.#seq = new Int32Array(shared, 0, 2);
    this.#deadline = new Float64Array(shared, 8, 1);
    this.#worker = new Worker(new URL("./clock_worker.ts", import.meta.url).href, {
      type: "module",
    });
    this.#worker.onmessage = (e: MessageEvent<number>) => {
      if (e.data !== Atomics.load(this.#seq, 0)) return; // a deadline replaced since
      this.#at = Infinity;
      onTick();
    };
    this.#worker.postMessage(shared);
  }

  /** Asks for a tick at `at` (or now, if it has passed) unless an earlier one is due. */
  wakeAt(at: Ms): void {
    if (at >= this.#at) return;
    this.#set(at);
  }

  /** Replaces the deadline with `at` (Infinity: none). */
  reset(at: Ms): void {
    if (at !== this.#at) this.#set(at);
  }

  #set(at: Ms): void {
    this.#at = at;
    this.#deadline[0] = at === Infinity ? 0 : performance.timeOrigin + at;
    Atomics.add(this.#seq, 0, 1);
    Atomics.notify(this.#seq, 0);
  }

  /** Stops the worker thread. */
  close(): void {
    Atomics.store(this.#seq, 1, 1);
    Atomics.add(this.#seq, 0, 1);
    Atomics.notify(this.#seq, 0);
    this.#worker.terminate();
  }
}
