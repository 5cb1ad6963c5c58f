import type { Command } from "commander";
import { failureError, type App } from "../app.js";
import { fullJitterDelayMs } from "../domain/backoff.js";
import { GatewayError } from "../gateway-client.js";
import {
  cell,
  CliError,
  ExitCode,
  formatTable,
  formatTime,
  money,
  toJson,
  usageError,
  type Column,
} from "../output.js";
import type { TransactionView } from "../views.js";
import { transactionJson } from "./entries.js";

const COLUMNS: Column[] = [
  { header: "SEQ", align: "right" },
  { header: "DECIDED" },
  { header: "STATUS" },
  { header: "AMOUNT", align: "right" },
  { header: "FROM" },
  { header: "TO" },
  { header: "MEMO / REASON" },
  { header: "TRANSACTION" },
];
// --follow prints rows as they arrive, so its widths are fixed up front.
const FOLLOW_WIDTHS = [6, 20, 9, 18, 14, 14, 24, 0];

function row(t: TransactionView): string[] {
  return [
    t.sequence.toString(),
    formatTime(t.decidedAt ?? t.createdAt),
    t.status,
    money(t.amountMinor, t.currency),
    t.fromAccountId,
    t.toAccountId,
    t.status === "aborted" ? t.declineReason : t.memo,
    t.transactionId,
  ];
}

function fixedLine(cells: readonly string[]): string {
  return cells
    .map(cell)
    .map((c, i) => {
      const w = FOLLOW_WIDTHS[i] ?? 0;
      return COLUMNS[i]?.align === "right" ? c.padStart(w) : c.padEnd(w);
    })
    .join("  ")
    .trimEnd();
}

export function registerHistory(program: Command, app: App): void {
  program
    .command("history")
    .summary("list your transactions; --follow keeps printing new ones")
    .description(
      "Streams your transactions in the gateway's log order (ListTransactions), starting after\n" +
        "sequence --after. With --follow the stream stays open and prints each new transaction as it\n" +
        "is decided; if the connection drops it reconnects (with backoff) after the last sequence seen,\n" +
        "so nothing is skipped or printed twice. Ctrl-C stops it.\n" +
        "With --json: one JSON document {transactions: [...]}; with --json --follow: one JSON object\n" +
        "per line (JSON Lines), since the stream has no end.",
    )
    .option("--after <n>", "only transactions after this sequence number", "0")
    .option("--limit <n>", "at most this many (without --follow; 0 = the gateway's maximum)", "0")
    .option("--follow", "keep the stream open and print new transactions as they are decided")
    .addHelpText(
      "after",
      `
Examples:
  $ paycli history
  $ paycli history --after 120 --limit 20
  $ paycli history --follow
  $ paycli history --follow --json | jq -c 'select(.status == "aborted")'`,
    )
    .action(async (opts: { after: string; limit: string; follow?: boolean }, cmd: Command) => {
      app.use(cmd);
      if (!/^\d{1,18}$/.test(opts.after))
        throw usageError("invalid_argument", "--after must be a non-negative integer");
      const limit = Number(opts.limit);
      if (!Number.isSafeInteger(limit) || limit < 0 || limit > 100_000)
        throw usageError("invalid_argument", "--limit must be an integer from 0 to 100000");
      const follow = opts.follow === true;
      const session = app.requireSession();
      const client = app.gateway(session.token);
      const config = app.config();
      let after = BigInt(opts.after);

      if (!follow) {
        const all: TransactionView[] = [];
        try {
          for await (const t of client.transactions({ afterSequence: after, follow: false, limit, signal: app.signal }))
            all.push(t);
        } catch (e) {
          throw failureError(e);
        }
        app.print(
          { transactions: all.map(transactionJson) },
          all.length === 0 ? "no transactions" : formatTable(COLUMNS, all.map(row)),
        );
        app.exitCode = ExitCode.ok;
        return;
      }

      if (!app.json) app.io.stdout.write(`${fixedLine(COLUMNS.map((c) => c.header))}\n`);
      // Consecutive failed reconnects; reset by every transaction received.
      let failures = 0;
      while (!app.signal?.aborted) {
        try {
          for await (const t of client.transactions({
            afterSequence: after,
            follow: true,
            limit: 0,
            signal: app.signal,
          })) {
            failures = 0;
            if (t.sequence > after) after = t.sequence;
            app.io.stdout.write(app.json ? `${toJson(transactionJson(t), false)}\n` : `${fixedLine(row(t))}\n`);
          }
          // The gateway closed the stream (e.g. shutting down): reconnect like after an error.
          failures++;
          if (failures >= config.queue.attemptsMax)
            throw new CliError(
              ExitCode.failed,
              "stream_closed",
              "the gateway keeps closing the history stream; giving up",
            );
        } catch (e) {
          if (app.signal?.aborted) break;
          if (!(e instanceof GatewayError) || e.failure.kind !== "transient") throw failureError(e);
          failures++;
          if (failures >= config.queue.attemptsMax) throw failureError(e);
          app.note(`history: ${e.failure.message}; reconnecting after sequence ${after}`);
        }
        await app.sleep(fullJitterDelayMs(Math.min(failures - 1, 30), config.queue.backoff, app.random), app.signal);
      }
      app.exitCode = ExitCode.ok;
    });
}
