/** The audit log as a table, for `od audit` and `od admin audit`. */
import { printTable } from "./output.ts";
import type { AuditEntry } from "../protocol/api.ts";

/** Prints audit rows as a table. */
export function printAudit(rows: AuditEntry[]): void {
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
