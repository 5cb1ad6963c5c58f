import { randomUUID } from "node:crypto";
import type { Command } from "commander";
import { parseMajorAmount } from "@paygate/money";
import type { App } from "../app.js";
import { checkPayment, samePayment, type PaymentRequest } from "../domain/payment.js";
import { isFinished, PENDING_STATES, retryEntry } from "../domain/queue.js";
import { GatewayError } from "../gateway-client.js";
import { CliError, ExitCode, money, usageError } from "../output.js";
import type { SendResult } from "../queue-runner.js";
import type { StoredEntry } from "../store/queue-store.js";
import type { Session } from "../store/session-store.js";
import { describeResult, entryJson, exitCodeOf, resultJson } from "./entries.js";

interface PayOptions {
  readonly from?: string;
  readonly currency: string;
  readonly memo: string;
  readonly key?: string;
}

export function registerPay(program: Command, app: App): void {
  program
    .command("pay")
    .summary("pay another account; queued and retried if the gateway is unreachable")
    .description(
      "Moves money from one of your accounts to any account, exactly once.\n\n" +
        "The payment gets an idempotency key (a new UUID unless you pass --key) and is written to the\n" +
        "local queue ($PAYCLI_HOME/queue.db, fsync'd) BEFORE it is sent. If the gateway cannot be\n" +
        "reached, or answers that it is busy, the payment stays queued and `paycli sync` sends it later\n" +
        "with the SAME key — the gateway applies a key at most once, so a retry can never pay twice.\n" +
        "A decline (e.g. insufficient_funds) is final and is never retried.",
    )
    .argument("<to-account>", "the account to pay, e.g. bank-b/2001")
    .argument("<amount>", "amount in major units, e.g. 12.50 (at most two decimals, no sign)")
    .option("--from <account>", "your account to pay from (default: your only account in --currency)")
    .option("--currency <code>", "ISO 4217 currency of the amount", "USD")
    .option("--memo <text>", "a note for the payee, at most 140 characters", "")
    .option("--key <idempotency-key>", "reuse a key: re-sends (or reports) that payment instead of making a new one")
    .addHelpText(
      "after",
      `
Exit codes:
  0  paid (committed)
  1  declined by the gateway (reason printed), session expired, or gave up
  2  usage error: bad amount, account or flag; nothing was queued or sent
  3  queued: the gateway is unreachable or busy; run \`paycli sync\` (or \`paycli sync --watch\`)

Examples:
  $ paycli pay bank-b/2001 12.50
  $ paycli pay bank-b/2001 12.50 --from bank-a/1001 --memo "lunch"
  $ paycli pay bank-a/1002 40 --currency EUR --json
  $ paycli pay bank-b/2001 12.50 --key 3f0c...   # ask again about an earlier payment`,
    )
    .action(async (to: string, amountText: string, opts: PayOptions, cmd: Command) => {
      app.use(cmd);
      app.exitCode = await pay(app, to, amountText, opts);
    });
}

async function pay(app: App, toAccountId: string, amountText: string, opts: PayOptions): Promise<ExitCode> {
  const amountMinor = parseMajorAmount(amountText);
  if (amountMinor === undefined)
    throw usageError(
      "invalid_amount",
      `amount ${JSON.stringify(amountText)} is not a number like 12 or 12.50 (at most two decimals, no sign)`,
    );
  const currency = opts.currency.trim().toUpperCase();
  const session = app.requireSession();
  // Loads the certificates now: a setup problem must stop us before anything is queued.
  app.gateway(session.token);
  const fromAccountId = opts.from ?? (await defaultFrom(app, session, currency));
  const key = opts.key ?? randomUUID();
  const request: PaymentRequest = {
    userId: session.userId,
    fromAccountId,
    toAccountId,
    amountMinor,
    currency,
    memo: opts.memo,
  };
  const problems = checkPayment(request, key);
  if (problems.length > 0)
    throw new CliError(
      ExitCode.usage,
      problems[0]?.reason ?? "invalid_argument",
      problems.map((p) => p.message).join("; "),
    );

  const store = app.queue();
  const runner = app.runner(session.token);
  const existing = store.get(key);
  if (existing !== undefined) {
    const again = await payAgain(app, { store, runner }, key, request, existing);
    return "done" in again ? again.done : reportResult(app, key, again.result);
  }
  return reportResult(app, key, await payNew(app, { store, runner }, key, request));
}

interface Queue {
  readonly store: ReturnType<App["queue"]>;
  readonly runner: ReturnType<App["runner"]>;
}

/**
 * The key is already in the queue: the same payment (else the key is refused) is
 * reported if finished, sent now if still open, or left to the process sending it.
 */
async function payAgain(
  app: App,
  { store, runner }: Queue,
  key: string,
  request: PaymentRequest,
  existing: StoredEntry,
): Promise<{ done: ExitCode } | { result: SendResult }> {
  if (!samePayment(existing, request)) {
    throw usageError(
      "idempotency_key_reused",
      `key ${key} already belongs to a different payment (${money(existing.amountMinor, existing.currency)} from ${existing.fromAccountId} to ${existing.toAccountId}); use a new key`,
    );
  }
  if (isFinished(existing.state)) {
    app.note(`key ${key} was already ${existing.state}; not sending it again`);
    app.print(
      { key, state: existing.state, entry: entryJson(existing) },
      `${existing.state}: ${money(existing.amountMinor, existing.currency)} to ${existing.toAccountId}${existing.transactionId ? ` (transaction ${existing.transactionId})` : ""}${existing.lastReason ? ` — ${existing.lastReason}` : ""}`,
    );
    return { done: existing.state === "committed" ? ExitCode.ok : ExitCode.failed };
  }
  const ready = existing.state === "gave_up" ? store.replace(existing, retryEntry(existing, app.now())) : existing;
  const result = ready === undefined ? undefined : await runner.sendNow(ready, true);
  if (result === undefined) {
    const now = store.get(key) ?? existing;
    app.print(
      { key, state: now.state, entry: entryJson(now) },
      `payment ${key} is being sent by another paycli process (pid ${now.claim?.pid ?? "?"}); see \`paycli queue\``,
      "stderr",
    );
    return { done: ExitCode.queued };
  }
  return { result };
}

/** A new key: queued (unless the queue is full) and sent. */
async function payNew(app: App, { store, runner }: Queue, key: string, request: PaymentRequest): Promise<SendResult> {
  const counts = store.counts();
  const depth = PENDING_STATES.reduce((n, s) => n + counts[s], 0);
  if (depth >= app.config().queueDepthMax) {
    throw new CliError(
      ExitCode.failed,
      "queue_full",
      `the offline queue already holds ${depth} payments (PAYCLI_QUEUE_MAX); run \`paycli sync\` before adding more`,
    );
  }
  return runner.submit(key, request);
}

/** The outcome, with what to do next when the payment waits in the queue. */
function reportResult(app: App, key: string, result: SendResult): ExitCode {
  const code = exitCodeOf(result);
  let text = describeResult(result, app.now());
  if (result.entry.state === "queued" && result.outcome.kind !== "needs_login") {
    text +=
      "\nThe payment is safe in the local queue. `paycli sync` sends it (same key, never twice); `paycli sync --watch` keeps trying.";
  } else if (result.outcome.kind === "needs_login") {
    text += `\nThe payment is kept in the local queue (key ${key}). Log in again with \`paycli login\`, then run \`paycli sync\`.`;
  }
  app.print(resultJson(result), text, code === ExitCode.ok ? "stdout" : "stderr");
  return code;
}

/** The caller's only account in `currency`, from the session's cache (works offline) or, failing that, the gateway. */
async function defaultFrom(app: App, session: Session, currency: string): Promise<string> {
  let accounts = session.accounts;
  if (accounts.length === 0) {
    try {
      const fresh = await app.gateway(session.token).balances();
      accounts = fresh.map((a) => ({ accountId: a.accountId, currency: a.currency, bank: a.bank }));
      app.sessions().save({ ...session, accounts, accountsSeenAt: new Date(app.now()).toISOString() });
    } catch (e) {
      if (!(e instanceof GatewayError)) throw e;
      throw usageError("from_required", `cannot look up your accounts (${e.failure.message}); pass --from <account>`);
    }
  }
  const mine = accounts.filter((a) => a.currency === currency);
  if (mine.length === 1 && mine[0] !== undefined) return mine[0].accountId;
  if (mine.length === 0)
    throw usageError(
      "from_required",
      `you have no ${currency} account${accounts.length > 0 ? ` (yours: ${accounts.map((a) => `${a.accountId} ${a.currency}`).join(", ")})` : ""}; pass --from <account> or --currency`,
    );
  throw usageError(
    "from_ambiguous",
    `you have several ${currency} accounts (${mine.map((a) => a.accountId).join(", ")}); pass --from <account>`,
  );
}
