/// <reference lib="dom" />
/**
 * Follows the account's event stream (`GET /v1/events?follow=1`, JSON lines, an empty line as
 * a heartbeat every 15 s) and hands each event to the pages that listen. One stream per page
 * load, shared by every view. When the stream breaks it reconnects with a growing pause, and
 * tells the listeners to re-read what they show, since events may have been missed meanwhile.
 */
import type { Event as OdEvent } from "../src/protocol/api.ts";
import { ApiError, request } from "./api.ts";

/** What a view gets from the stream. */
export interface EventListener {
  event(e: OdEvent): void;
  /** The stream was reconnected: events may have been missed. */
  resync(): void;
}

const listeners = new Set<EventListener>();
let running: AbortController | null = null;
const BACKOFF_MS = [1_000, 2_000, 5_000, 15_000];

/** Adds a listener; returns the function that removes it. */
export function listen(l: EventListener): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}

async function readLines(res: Response, signal: AbortSignal): Promise<void> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  signal.addEventListener("abort", () => reader.cancel().catch(() => {}), { once: true });
  let buffered = "";
  while (true) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += value;
    let nl;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (line === "") continue; // heartbeat
      let event: OdEvent;
      try {
        event = JSON.parse(line);
      } catch {
        continue;
      }
      // A copy: a listener may navigate, which removes it and adds the next page's, and a Set
      // visits entries added while it is iterated (the new page would get the same event).
      for (const l of [...listeners]) l.event(event);
    }
  }
}

/** Starts following (once); stop() ends it, as signing out does. */
export function startFollowing(): void {
  if (running) return;
  const controller = new AbortController();
  running = controller;
  (async () => {
    for (let attempt = 0; !controller.signal.aborted; attempt++) {
      try {
        const res = await request("GET", "/v1/events?follow=1", { signal: controller.signal });
        if (attempt > 0) listeners.forEach((l) => l.resync());
        attempt = 0;
        await readLines(res, controller.signal);
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) break; // signed out: the page says so
      }
      if (controller.signal.aborted) break;
      const pause = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
      await new Promise((r) => setTimeout(r, pause));
    }
  })();
}

/** Stops following. */
export function stopFollowing(): void {
  running?.abort();
  running = null;
}
