/**
 * GET /v1/events: the account's events as JSON lines, oldest first. With `since` it replays
 * the log from that time; with `follow=1` it then stays open and streams new events as they
 * happen (an empty line every 15 s keeps proxies from closing it). A subscriber that stops
 * reading is dropped once far behind, so it cannot make the relay buffer without bound.
 */
import type { EventRecord, KeyInfo } from "../store/types.ts";
import { normalizeId } from "../protocol/names.ts";
import { HttpError } from "./http.ts";
import { eventView } from "./events.ts";
import { EVENT_TYPES } from "../protocol/api.ts";
import type { RelayContext } from "./context.ts";

const HEARTBEAT_MS = 15_000;
const MAX_BEHIND = 10_000; // queued lines before a stalled subscriber is dropped
const MAX_SUBSCRIBERS = 1_000; // across all accounts; each costs a little memory
const encoder = new TextEncoder();

function parseSince(value: string | null): number | undefined {
  if (value === null || value === "") return undefined;
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(ms)) throw new HttpError(400, `since "${value}" is not a time`);
  return ms;
}

/** Handles GET /v1/events. */
export async function streamEvents(
  ctx: RelayContext,
  key: KeyInfo,
  req: Request,
): Promise<Response> {
  const params = new URL(req.url).searchParams;
  let device: string | undefined;
  try {
    const d = params.get("device");
    device = d ? normalizeId(d) : undefined;
  } catch (err) {
    throw new HttpError(400, (err as Error).message);
  }
  const types = (params.get("type") ?? "").split(",").filter((t) => t !== "");
  const unknown = types.find((t) => !(EVENT_TYPES as readonly string[]).includes(t));
  if (unknown) {
    throw new HttpError(400, `unknown event type "${unknown}" (use ${EVENT_TYPES.join(", ")})`);
  }
  const since = parseSince(params.get("since"));
  const follow = params.get("follow") === "1";
  if (follow && ctx.events.size >= MAX_SUBSCRIBERS) {
    throw new HttpError(503, "too many event subscribers; try again later", {
      "retry-after": "10",
    });
  }
  const query = { accountId: key.accountId, device, types };
  // Subscribed before the log is read, so nothing committed in between is missed; what both
  // deliver is sent once.
  const early: EventRecord[] = [];
  let push: (e: EventRecord) => void = (e) => early.push(e);
  let endedEarly = false; // the key was revoked before the stream started
  let end: () => void = () => (endedEarly = true);
  const unsubscribe = follow
    ? ctx.events.subscribe({ ...query, keyId: key.id, push: (e) => push(e), end: () => end() })
    : () => {};
  let stored: EventRecord[];
  try {
    // Events batched for writing (presence) that happened before this request are part of it.
    if (since !== undefined) await ctx.events.flush();
    stored = since === undefined ? [] : await ctx.store.events.query({ ...query, since });
  } catch (err) {
    unsubscribe();
    throw err;
  }
  const line = (e: EventRecord) => encoder.encode(JSON.stringify(eventView(e)) + "\n");
  let stop = () => {};
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      const sent = new Set(stored.map((e) => e.id));
      for (const e of stored) controller.enqueue(line(e));
      if (!follow) return controller.close();
      push = (e) => {
        if ((controller.desiredSize ?? 0) < -MAX_BEHIND) {
          stop();
          controller.error(new Error("subscriber fell too far behind"));
        } else if (!sent.has(e.id)) controller.enqueue(line(e));
      };
      end = () => {
        stop();
        controller.close(); // the key was revoked: the stream ends like a finished one
      };
      for (const e of early.splice(0)) push(e);
      if (endedEarly) return end();
      const heartbeat = setInterval(() => controller.enqueue(encoder.encode("\n")), HEARTBEAT_MS);
      stop = () => {
        unsubscribe();
        clearInterval(heartbeat);
      };
    },
    cancel() {
      stop();
    },
  }, { highWaterMark: 1 });
  return new Response(body, {
    headers: { "content-type": "application/x-ndjson", "cache-control": "no-store" },
  });
}
