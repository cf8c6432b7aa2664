/**
 * `od events`: follows the account's events (state, property, clone, enrolled, renamed,
 * removed) as they happen, optionally replaying from --since; `--await STATE` waits until a
 * device reaches that state, for scripts: exit 0 when it does, 124 on timeout (as timeout(1)).
 */
import { parse, str } from "../cli/args.ts";
import { OdError, UsageError } from "../shared/errors.ts";
import { parseSince } from "../cli/output.ts";
import { normalizeId } from "../protocol/names.ts";
import { callApi, lines, openStream, RelayError, type RelayTarget } from "../transport/dial.ts";
import { clientTarget, loadClientConfig } from "./config.ts";
import { relayFailure } from "./commands.ts";

const USAGE = `Usage: od events [--device DEV] [--type TYPE,…] [--since TIME] [--no-follow] [--json]
       od events --await online|offline --device DEV [--timeout SECONDS]

Prints your account's events as they happen: state (online/offline), props (changes), clone,
enrolled, renamed, removed. --since replays from TIME first (an ISO time like
2026-11-25T10:00:00Z, or an age like 30s, 10m, 2h, 7d); --no-follow stops after the replay.
--json prints one JSON object per line.

--await waits until DEV is online (or offline): exit 0 when it is (at once if it already is),
124 when --timeout passes first (default: wait forever).
`;

interface EventLine {
  at: string;
  device: string;
  type: string;
  [k: string]: unknown;
}

function describe(e: EventLine): string {
  const { at: _at, device: _d, type, id: _id, ...rest } = e;
  if (type === "state") return String(rest.state);
  if (type === "props") {
    const changes = (rest.changes as { key: string; value: string | null }[]) ?? [];
    const text = changes.map((c) => (c.value === null ? `-${c.key}` : `${c.key}=${c.value}`));
    return `${text.join(" ")} (by ${rest.origin})`;
  }
  return Object.entries(rest).map(([k, v]) => `${k}=${v}`).join(" ");
}

/** Entry point of `od events`. */
export async function eventsCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    device: { type: "string" },
    type: { type: "string" },
    since: { type: "string" },
    json: { type: "boolean" },
    "no-follow": { type: "boolean" },
    await: { type: "string" },
    timeout: { type: "string" },
  }, USAGE);
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  let device: string | undefined;
  try {
    device = str(values, "device") === undefined ? undefined : normalizeId(str(values, "device")!);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const target = clientTarget(loadClientConfig());
  const awaited = str(values, "await");
  if (awaited !== undefined) {
    return await awaitState(target, awaited, device, str(values, "timeout"));
  }
  const params = new URLSearchParams();
  if (device) params.set("device", device);
  if (values.type) params.set("type", String(values.type));
  if (values.since) params.set("since", String(parseSince(String(values.since))));
  if (!values["no-follow"]) params.set("follow", "1");
  else if (!values.since) throw new UsageError("--no-follow needs --since");
  const res = await openStream(target, `/v1/events?${params}`).catch(relayFailure);
  for await (const line of lines(res)) {
    if (values.json) console.log(line);
    else {
      const e = JSON.parse(line) as EventLine;
      console.log(`${e.at}  ${e.device}  ${e.type}  ${describe(e)}`);
    }
  }
  return 0;
}

async function awaitState(
  target: RelayTarget,
  state: string,
  device: string | undefined,
  timeoutText: string | undefined,
): Promise<number> {
  if (state !== "online" && state !== "offline") {
    throw new UsageError("--await must be online or offline");
  }
  if (!device) throw new UsageError("--await needs --device DEV");
  const timeout = timeoutText === undefined ? Infinity : Number(timeoutText);
  if (!(timeout > 0)) throw new UsageError("--timeout must be a positive number of seconds");
  const ac = new AbortController();
  const timer = Number.isFinite(timeout) ? setTimeout(() => ac.abort(), timeout * 1000) : undefined;
  try {
    // Subscribe first, then look: a change between the two is in the stream, not lost.
    const res = await openStream(
      target,
      `/v1/events?follow=1&type=state&device=${device}`,
      ac.signal,
    );
    const now = await callApi(target, "GET", `/v1/devices/${device}`).catch((err) => {
      if (err instanceof RelayError && err.status === 404) return null; // may be enrolled later
      throw err;
    }) as { state: string } | null;
    if (now?.state === state) return 0;
    for await (const line of lines(res)) {
      if ((JSON.parse(line) as EventLine).state === state) return 0;
    }
    throw new OdError("the relay closed the event stream");
  } catch (err) {
    if (ac.signal.aborted) {
      console.error(`od: device "${device}" did not become ${state} within ${timeout} s`);
      return 124;
    }
    return relayFailure(err);
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
}
