/** The audit log as a table, for `od audit` and `od admin audit`. */
import { printTable } from "./output.ts";
import type { AuditRow } from "../store/audit.ts";

/** An audit row as the relay returns it (the JSON form built by auditView). */
export type AuditView = ReturnType<typeof auditView>;

/** Prints audit rows as a table. */
export function printAudit(rows: AuditView[]): void {
  printTable(
    [
      "TIME",
      "ACCOUNT",
      "KEY",
      "FROM",
      "ACTION",
      "DEVICE",
      "SERVICE",
      "RESULT",
      "MS",
      "UP",
      "DOWN",
      "REASON",
    ],
    rows.map((r) => [
      r.at,
      r.account ?? "-",
      r.key ?? "-",
      r.ip,
      r.action,
      r.device ?? "",
      r.service ?? "",
      r.count > 1 ? `${r.result} x${r.count}` : r.result,
      r.durationMs === null ? "" : String(r.durationMs),
      r.bytesUp === null ? "" : String(r.bytesUp),
      r.bytesDown === null ? "" : String(r.bytesDown),
      r.reason,
    ]),
  );
}

/** The JSON form of an audit row, as `od audit --json` and `od admin audit --json` print it. */
export function auditView(r: AuditRow) {
  return {
    id: r.id,
    at: new Date(r.at).toISOString(),
    account: r.account,
    owner: r.owner,
    key: r.keyId,
    ip: r.ip,
    action: r.action,
    device: r.device,
    service: r.service,
    result: r.result,
    reason: r.reason,
    durationMs: r.durationMs,
    bytesUp: r.bytesUp,
    bytesDown: r.bytesDown,
    count: r.count,
  };
}
