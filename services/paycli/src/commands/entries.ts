// How queue entries and send results look, in tables and in JSON; shared by
// pay, sync, queue and status so one payment reads the same everywhere.
import type { StoredEntry } from "../store/queue-store.js";
import type { SendResult } from "../queue-runner.js";
import { ExitCode, formatIn, formatTable, formatTime, isoTime, money, type Column } from "../output.js";
import type { TransactionView } from "../views.js";

export function entryJson(e: StoredEntry) {
  return {
    key: e.key,
    state: e.state,
    userId: e.userId,
    fromAccountId: e.fromAccountId,
    toAccountId: e.toAccountId,
    amountMinor: e.amountMinor,
    currency: e.currency,
    amount: money(e.amountMinor, e.currency),
    memo: e.memo,
    attempts: e.attempts,
    createdAt: isoTime(e.createdAt),
    updatedAt: isoTime(e.updatedAt),
    nextAttemptAt: isoTime(e.nextAttemptAt),
    lastReason: e.lastReason,
    lastError: e.lastError,
    transactionId: e.transactionId,
    sendingPid: e.state === "sending" ? (e.claim?.pid ?? null) : null,
  };
}

export function transactionJson(t: TransactionView) {
  return {
    ...t,
    amount: money(t.amountMinor, t.currency),
    createdAt: isoTime(t.createdAt),
    decidedAt: isoTime(t.decidedAt),
  };
}

const ENTRY_COLUMNS: Column[] = [
  { header: "KEY" },
  { header: "STATE" },
  { header: "AMOUNT", align: "right" },
  { header: "FROM" },
  { header: "TO" },
  { header: "ATTEMPTS", align: "right" },
  { header: "NEXT ATTEMPT" },
  { header: "LAST ERROR / TRANSACTION" },
];

export function entriesTable(entries: readonly StoredEntry[], now: number): string {
  return formatTable(
    ENTRY_COLUMNS,
    entries.map((e) => [
      e.key,
      e.state === "sending" && e.claim !== null ? `sending(pid ${e.claim.pid})` : e.state,
      money(e.amountMinor, e.currency),
      e.fromAccountId,
      e.toAccountId,
      String(e.attempts),
      e.state === "queued" && e.nextAttemptAt !== null
        ? `${formatTime(e.nextAttemptAt)} (${formatIn(e.nextAttemptAt, now)})`
        : "-",
      e.state === "committed"
        ? `txn ${e.transactionId ?? "?"}`
        : e.lastReason === null
          ? "-"
          : `${e.lastReason}: ${e.lastError ?? ""}`,
    ]),
  );
}

export function resultJson(r: SendResult) {
  return {
    key: r.entry.key,
    state: r.entry.state,
    outcome: r.outcome,
    superseded: r.superseded,
    transaction: r.transaction === null ? null : transactionJson(r.transaction),
    entry: entryJson(r.entry),
  };
}

/** One line per send, for pay and for sync's progress. */
export function describeResult(r: SendResult, now: number): string {
  const e = r.entry;
  const what = `${money(e.amountMinor, e.currency)} from ${e.fromAccountId} to ${e.toAccountId} (key ${e.key})`;
  const prefix = r.superseded ? "(recorded by another paycli process) " : "";
  switch (e.state) {
    case "committed":
      return `${prefix}paid ${what}: transaction ${e.transactionId ?? "?"} committed`;
    case "declined":
      return `${prefix}declined ${what}: ${e.lastReason ?? "declined"} — ${e.lastError ?? ""}${e.transactionId ? ` (transaction ${e.transactionId})` : ""}`;
    case "gave_up":
      return `${prefix}gave up on ${what}: ${e.lastError ?? ""}`;
    case "queued":
      if (r.outcome.kind === "needs_login") return `${prefix}kept in queue ${what}: ${e.lastError ?? ""}`;
      return `${prefix}queued ${what}: ${e.lastReason ?? "?"} (${e.lastError ?? ""}); attempt ${e.attempts} failed, next at ${formatTime(e.nextAttemptAt)} (${formatIn(e.nextAttemptAt ?? now, now)})`;
    case "sending":
      return `${prefix}being sent by process ${e.claim?.pid ?? "?"}: ${what}`;
  }
}

/** The exit code a single payment's state calls for. */
export function exitCodeOf(r: SendResult): ExitCode {
  switch (r.entry.state) {
    case "committed":
      return ExitCode.ok;
    case "queued":
      return r.outcome.kind === "needs_login" ? ExitCode.failed : ExitCode.queued;
    case "sending":
      return ExitCode.queued;
    case "declined":
    case "gave_up":
      return ExitCode.failed;
  }
}
