// How paycli talks back: exit codes, errors, tables for people, one JSON
// document for programs (--json). Amounts are bigint minor units everywhere;
// in JSON they are decimal strings, as in the proto JSON mapping for int64.
import { formatMoney } from "@paygate/money";
import { escapeControlCharacters, isAccountId } from "@paygate/vocab";

export const ExitCode = {
  ok: 0,
  /** Declined by the gateway, or any other error it (or the session) returned. */
  failed: 1,
  /** Bad flags or arguments, bad configuration, missing certificates. Nothing was sent. */
  usage: 2,
  /** The payment is safely queued (gateway unreachable or busy); `paycli sync` will send it. */
  queued: 3,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** An expected way for a command to end, with what to tell the user. */
export class CliError extends Error {
  override name = "CliError";
  constructor(
    readonly exitCode: ExitCode,
    readonly reason: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export const usageError = (reason: string, message: string) => new CliError(ExitCode.usage, reason, message);

/** Throws the usage error `invalid_account_id` unless `account` is an account id; `example` is shown as one. */
export function requireAccountIdArg(account: string, example: string): void {
  if (!isAccountId(account))
    throw usageError("invalid_account_id", `account ${JSON.stringify(account)} is not an account id like ${example}`);
}

export interface Writer {
  write(chunk: string): unknown;
}

/**
 * Every string paycli writes passes through this: text from the gateway (a
 * memo someone else typed, a decline message) must never reach the terminal
 * as a control sequence, so control characters are shown escaped (\x1b).
 * Newlines are paycli's own line structure and stay.
 */
export function printableWriter(inner: Writer): Writer {
  return { write: (chunk) => inner.write(escapeControlCharacters(chunk, "c", "\n")) };
}

/**
 * JSON for programs: the same values, with DEL, C1 and bidi controls as \u
 * escapes (JSON.stringify leaves them raw; it escapes C0 itself, so a raw
 * newline here is only the pretty-printing's).
 */
export function toJson(value: unknown, pretty = true): string {
  return escapeControlCharacters(
    JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v), pretty ? 2 : undefined),
    "json",
    "\n",
  );
}

/** One table cell or fixed-width field: escaped whole, so a newline in a memo cannot start a row. */
export function cell(text: string): string {
  return escapeControlCharacters(text);
}

export interface Column {
  readonly header: string;
  readonly align?: "left" | "right";
}

/** A plain-text table: header, a rule, rows; widths fit the longest cell. */
export function formatTable(columns: readonly Column[], rawRows: readonly (readonly string[])[]): string {
  const rows = rawRows.map((r) => r.map(cell));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    columns
      .map((c, i) => {
        const cell = cells[i] ?? "";
        const w = widths[i] ?? 0;
        return c.align === "right" ? cell.padStart(w) : cell.padEnd(w);
      })
      .join("  ")
      .trimEnd();
  return (
    [line(columns.map((c) => c.header)), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n") + "\n"
  );
}

export function money(amountMinor: bigint, currency: string): string {
  return formatMoney(amountMinor, currency);
}

/** "2026-05-01 12:00:03Z": UTC, to the second. */
export function formatTime(at: number | Date | null | undefined): string {
  if (at === null || at === undefined) return "-";
  const d = typeof at === "number" ? new Date(at) : at;
  return `${d.toISOString().slice(0, 19).replace("T", " ")}Z`;
}

export function isoTime(at: number | Date | null | undefined): string | null {
  if (at === null || at === undefined) return null;
  return (typeof at === "number" ? new Date(at) : at).toISOString();
}

/** "in 4s", "in 2m 05s", "now" — how long until `at`. */
export function formatIn(at: number, now: number): string {
  const ms = at - now;
  if (ms <= 0) return "now";
  const s = Math.ceil(ms / 1000);
  if (s < 60) return `in ${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `in ${m}m ${String(s % 60).padStart(2, "0")}s`;
  return `in ${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}
