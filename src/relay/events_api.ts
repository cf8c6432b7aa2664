/**
 * GET /v1/events: the account's events as JSON lines, oldest first. With `since` it replays
 * the log from that time; with `follow=1` it then stays open and streams new events as they
 * happen (an empty line every 15 s keeps proxies from closing it). A subscriber that stops
 * reading is dropped once far behind, so it cannot make the relay buffer without bound.
 */
import type { KeyInfo } from "../store/accounts.ts";
import { normalizeId } from "../protocol/names.ts";
import { HttpError } from "./http.ts";
import { eventView } from "./events.ts";
import { EVENT_TYPES } from "../protocol/api.ts";
import type { RelayContext } from "./context.ts";
import type { EventRecord } from "../store/events.ts";

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
export function streamEvents(ctx: RelayContext, key: KeyInfo, req: Request): Response {
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
  // Events batched for writing (presence) that happened before this request are part of it.
  if (since !== undefined) ctx.events.flush();
  const stored = since === undefined ? [] : ctx.store.events.query({ ...query, since });
  const line = (e: EventRecord) => encoder.encode(JSON.stringify(eventView(e)) + "\n");
  let stop = () => {};
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const e of stored) controller.enqueue(line(e));
      if (!follow) return controller.close();
      const unsubscribe = ctx.events.subscribe({
        ...query,
        keyId: key.id,
        end() {
          stop();
          controller.close(); // the key was revoked: the stream ends like a finished one
        },
        push(e) {
          if ((controller.desiredSize ?? 0) < -MAX_BEHIND) {
            stop();
            controller.error(new Error("subscriber fell too far behind"));
          } else controller.enqueue(line(e));
        },
      });
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
