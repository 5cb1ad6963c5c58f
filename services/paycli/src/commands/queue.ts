import type { Command } from "commander";
import type { App } from "../app.js";
import { PENDING_STATES, retryEntry } from "../domain/queue.js";
import { CliError, ExitCode, usageError } from "../output.js";
import { drain } from "./drain.js";
import { entriesTable, entryJson } from "./entries.js";

export function registerQueue(program: Command, app: App): void {
  const queue = program
    .command("queue")
    .summary("list the offline payment queue; `queue flush` / `queue retry <key>`")
    .description(
      "Lists the local payment queue ($PAYCLI_HOME/queue.db): payments waiting to be sent (queued,\n" +
        "or sending right now), then recent results — committed, declined, and gave_up (the attempt\n" +
        "budget PAYCLI_ATTEMPTS_MAX ran out; the outcome is unknown until you `queue retry` it).\n" +
        "Works offline: it reads only the local file.",
    )
    .option("--recent <n>", "how many recent results to show", "20")
    .addHelpText(
      "after",
      `
States:
  queued     waiting; sent at NEXT ATTEMPT by \`paycli sync\` (or now by \`paycli queue flush\`)
  sending    a paycli process is sending it now (a crashed sender's claim is taken over)
  committed  paid (the transaction id is shown)
  declined   refused by the gateway with a reason; never retried
  gave_up    retried PAYCLI_ATTEMPTS_MAX times without an answer; \`paycli queue retry <key>\`

Examples:
  $ paycli queue
  $ paycli queue --json | jq '.pending | length'
  $ paycli queue flush
  $ paycli queue retry 3f0c2a9e-...`,
    )
    .action(async (opts: { recent: string }, cmd: Command) => {
      app.use(cmd);
      const recentMax = Number(opts.recent);
      if (!Number.isSafeInteger(recentMax) || recentMax < 0 || recentMax > 10_000)
        throw usageError("invalid_argument", "--recent must be an integer from 0 to 10000");
      const store = app.queue();
      const pending = store.pending(10_000);
      const recent = store.recent(recentMax);
      const counts = store.counts();
      const depth = PENDING_STATES.reduce((n, s) => n + counts[s], 0);
      const now = app.now();
      const text = [
        depth === 0 ? "queue: empty" : `queue: ${depth} payment${depth === 1 ? "" : "s"} waiting`,
        pending.length > 0 ? entriesTable(pending, now) : "",
        recent.length > 0 ? `recent results:\n${entriesTable(recent, now)}` : "",
      ]
        .filter((s) => s.length > 0)
        .join("\n");
      app.print({ depth, counts, pending: pending.map(entryJson), recent: recent.map(entryJson) }, text);
      app.exitCode = ExitCode.ok;
    });

  queue
    .command("flush")
    .summary("try every queued payment now, ignoring its backoff")
    .description(
      "Sends every one of your queued payments now, whatever its next attempt time, oldest first,\n" +
        "with its original idempotency key. Use it when you know the gateway is back. Like `sync`,\n" +
        "it stops at the first failure that means the gateway itself is unreachable.",
    )
    .addHelpText(
      "after",
      "\nExit codes: as for `paycli sync`.\n\nExamples:\n  $ paycli queue flush\n  $ paycli queue flush --json",
    )
    .action(async (_opts: unknown, cmd: Command) => {
      app.use(cmd);
      app.exitCode = await drain(app, { watch: false, force: true });
    });

  queue
    .command("retry")
    .summary("put a given-up payment back in the queue (same key)")
    .description(
      "A payment gives up after PAYCLI_ATTEMPTS_MAX transient failures; whether it was applied is\n" +
        "unknown. `retry` queues it again with a fresh attempt budget and the SAME idempotency key,\n" +
        "so if the first send did go through, the gateway answers with that result instead of paying again.",
    )
    .argument("<key>", "the payment's idempotency key (see `paycli queue`)")
    .addHelpText("after", "\nExamples:\n  $ paycli queue retry 3f0c2a9e-6b1d-4f7e-9a55-2d8c1e0b7a41 && paycli sync")
    .action(async (key: string, _opts: unknown, cmd: Command) => {
      app.use(cmd);
      const store = app.queue();
      const e = store.get(key);
      if (e === undefined) throw usageError("unknown_key", `no payment with key ${key} in the queue`);
      if (e.state !== "gave_up")
        throw new CliError(
          ExitCode.usage,
          "not_given_up",
          `payment ${key} is ${e.state}; only a gave_up payment can be retried`,
        );
      const back = store.replace(e, retryEntry(e, app.now()));
      if (back === undefined)
        throw new CliError(
          ExitCode.failed,
          "conflict",
          `payment ${key} changed meanwhile; look at \`paycli queue\` again`,
        );
      app.print(
        { key, state: back.state, entry: entryJson(back) },
        `payment ${key} is queued again; \`paycli sync\` sends it`,
      );
      app.exitCode = ExitCode.ok;
    });
}
