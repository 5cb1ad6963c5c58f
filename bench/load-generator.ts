// The load generator: its own Node process (forked by bench/run.ts), so its
// CPU is not the services' CPU and it can be measured on its own. It talks to
// the gateway and to the echo server with the same code path a client uses:
// connect-node, Connect binary protocol, HTTP/2 over mTLS, one reused HTTP/2
// session per target (or `connections` of them). Closed loop: `concurrency`
// workers each send the next request as soon as the previous one answers.
// With several gateway replicas, request i goes to replica i mod N (what a
// Service without session affinity does, evenly), at every concurrency.
// Commands arrive as IPC messages and each gets one reply; a cell also sends
// two unsolicited events, when its measured window opens and when it closes,
// so the orchestrator can read the services' /metrics at exactly those moments.
import { randomUUID } from "node:crypto";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { AuthService, CardService, PaymentService, TransactionStatus, SettleItemStatus } from "@paygate/proto/gateway";
import { createMtlsTransport, errorInfo, retryableReasons, type Reason } from "@paygate/rpc";
import { tlsFilesFor } from "@paygate/testkit";
import { summarize, type LatencySummary } from "./lib/stats.js";
import { password, transferShape, USERS, type Accounts, type Scenario } from "./scenarios.js";

export interface InitCommand {
  readonly type: "init";
  /** Every gateway replica; logins and settlement use the first. */
  readonly gatewayUrls: readonly string[];
  /** Unset when this run measures no echo. */
  readonly echoUrl?: string;
  readonly certsDir: string;
  readonly accounts: Accounts;
  /** HTTP/2 sessions per target; workers are spread over them. */
  readonly connections: number;
}

export interface CellCommand {
  readonly type: "cell";
  readonly scenario: Scenario;
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  /** Unique per run, so idempotency keys never collide with an earlier run's. */
  readonly runId: string;
  /** duplicate-storm: how many requests share one key. */
  readonly duplicatesPerKey: number;
  readonly cards?: readonly CardFixture[];
  /** Stop after this many requests even if the duration has not passed. */
  readonly requestsMax?: number;
  /** Send WindowEvents for this cell (the orchestrator reads /metrics on them). */
  readonly windowEvents?: boolean;
}

/** Sent (not as a reply) when a cell's measured window opens and when it closes. */
export interface WindowEvent {
  readonly event: "window";
  readonly phase: "open" | "close";
  readonly scenario: Scenario;
  readonly concurrency: number;
}

export interface DrainCommand {
  readonly type: "drain";
  readonly concurrency: number;
  readonly requests: number;
  readonly runId: string;
}

export interface SettleCommand {
  readonly type: "settle";
  readonly authCodes: readonly string[];
  readonly batchItemsMax: number;
  readonly runId: string;
  /** No new batch starts after this long (the rest stay authorized, i.e. held). */
  readonly budgetMs: number;
}

export type Command = InitCommand | CellCommand | DrainCommand | SettleCommand | { readonly type: "exit" };

export interface CardFixture {
  readonly number: string;
  readonly expMonth: number;
  readonly expYear: number;
  readonly cvc: string;
  readonly cardholderName: string;
}

export interface CellResult {
  readonly scenario: Scenario;
  readonly concurrency: number;
  readonly windowMs: number;
  /** Answers that finished inside the measured window (after warm-up). */
  readonly answered: number;
  /** Of those, committed transfers (or approved authorizations). */
  readonly ok: number;
  readonly okPerSecond: number;
  readonly latency: LatencySummary;
  /** Failures in the window by reason. */
  readonly errors: Record<string, number>;
  /** Whole cell, warm-up and drain included: what the balance checks need. */
  readonly totals: {
    readonly committed: number;
    readonly failed: number;
    readonly ambiguous: number;
    readonly retries: number;
  };
  readonly storm?: {
    readonly keys: number;
    readonly keysCommitted: number;
    readonly keysWithSeveralTxns: number;
    readonly requestsPerKey: number;
  };
  readonly authCodes?: readonly string[];
}

export interface DrainResult {
  readonly committed: number;
  readonly errors: Record<string, number>;
}

export interface SettleResult {
  /** Authorizations offered; `items` of them were sent before the budget ran out. */
  readonly offered: number;
  readonly budgetMs: number;
  readonly items: number;
  readonly captured: number;
  readonly failed: Record<string, number>;
  readonly calls: number;
  readonly elapsedMs: number;
  readonly itemsPerSecond: number;
}

const CLIENT_TIMEOUT_MS = 30_000;
/** duplicate-storm: a copy that finds its key in flight retries this often at most. */
const IN_USE_RETRIES_MAX = 2_000;
const TRANSIENT_RETRIES_MAX = 20;
/** A warm-up waits this long at most for every worker's first answer. */
const WARMUP_MAX_MS = 60_000;
/** A window with too few answers is stretched to this many times its duration at most. */
const WINDOW_STRETCH_MAX = 4;
/** Failures after which we cannot know whether money moved (for the balance checks). */
const AMBIGUOUS_REASONS = new Set(["internal", "deadline_exceeded", "unavailable", "canceled", "unknown"]);

let init: InitCommand | undefined;
const transports = new Map<string, Transport[]>();
const tokens = new Map<string, string>();

function transportsFor(baseUrl: string): Transport[] {
  let ts = transports.get(baseUrl);
  if (!ts) {
    const tls = tlsFilesFor(init!.certsDir, "paycli");
    ts = Array.from({ length: init!.connections }, () =>
      createMtlsTransport({ baseUrl, tls, timeoutMs: CLIENT_TIMEOUT_MS, reload: false }),
    );
    transports.set(baseUrl, ts);
  }
  return ts;
}

/** clients[replica][connection] of one service over the given targets. */
function clientsOf<S extends typeof PaymentService | typeof CardService>(
  service: S,
  baseUrls: readonly string[],
): Client<S>[][] {
  return baseUrls.map((u) => transportsFor(u).map((t) => createClient(service, t)));
}

/** Request i to replica i mod N; worker w on connection w mod connections. */
function pickClient<C>(clients: readonly (readonly C[])[], i: number, w: number): C {
  const replica = clients[i % clients.length]!;
  return replica[w % replica.length]!;
}

const firstGateway = () => init!.gatewayUrls[0]!;

async function tokenFor(user: string): Promise<string> {
  let t = tokens.get(user);
  if (!t) {
    // A session from one replica works on every replica (they share the store).
    const auth = createClient(AuthService, transportsFor(firstGateway())[0]!);
    t = (await auth.login({ username: user, password: password(user) })).sessionToken;
    tokens.set(user, t);
  }
  return t;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Outcome {
  readonly ok: boolean;
  readonly reason?: string;
  readonly txnId?: string;
  readonly retries: number;
  readonly authCode?: string;
}

/** duplicate-storm: how many keys were sent, committed, and answered with more than one txn id. */
function stormOf(keyTxns: ReadonlyMap<string, ReadonlySet<string>>, seq: number, duplicatesPerKey: number) {
  let committed = 0;
  let several = 0;
  for (const s of keyTxns.values()) {
    if (s.size > 0) committed++;
    if (s.size > 1) several++;
  }
  return {
    keys: Math.ceil(seq / duplicatesPerKey),
    keysCommitted: committed,
    keysWithSeveralTxns: several,
    requestsPerKey: duplicatesPerKey,
  };
}

async function runCell(cmd: CellCommand): Promise<CellResult> {
  const acc = init!.accounts;
  const card = cmd.scenario === "card";
  if (cmd.scenario === "echo" && init!.echoUrl === undefined) throw new Error("echo: this run started no echo server");
  const targets = cmd.scenario === "echo" ? [init!.echoUrl!] : init!.gatewayUrls;
  const payments = clientsOf(PaymentService, targets);
  const cards = clientsOf(CardService, init!.gatewayUrls);
  const users = card ? [USERS.shop] : [USERS.payerA, USERS.payerB, USERS.whale, USERS.storm];
  const headers = new Map<string, Record<string, string>>();
  for (const u of users) headers.set(u, { authorization: `Bearer ${await tokenFor(u)}` });

  const keyTxns = new Map<string, Set<string>>();
  const authCodes: string[] = [];
  const totals = { committed: 0, failed: 0, ambiguous: 0, retries: 0 };

  async function transferOnce(i: number, w: number): Promise<Outcome> {
    const storm = cmd.scenario === "duplicate-storm";
    const keyIndex = storm ? Math.floor(i / cmd.duplicatesPerKey) : i;
    // Every copy of a storm key must be the same request (same fingerprint).
    const shape = storm
      ? transferShape(cmd.scenario, acc, keyIndex, 0, ((keyIndex * 2654435761) % 4096) / 4096)
      : transferShape(cmd.scenario, acc, i, Math.random(), Math.random());
    const key = storm ? `${cmd.runId}-storm-c${cmd.concurrency}-${keyIndex}` : randomUUID();
    const client = pickClient(payments, i, w);
    const req = {
      idempotencyKey: key,
      fromAccountId: shape.from,
      toAccountId: shape.to,
      amountMinor: 1n,
      currency: "USD",
      memo: "bench",
    };
    let retries = 0;
    for (let inUse = 0, transient = 0; ; ) {
      try {
        const res = await client.transfer(req, { headers: headers.get(shape.user)! });
        const txnId = res.transaction?.transactionId ?? "";
        if (storm) {
          let s = keyTxns.get(key);
          if (!s) keyTxns.set(key, (s = new Set()));
          s.add(txnId);
        }
        return {
          ok: res.transaction?.status === TransactionStatus.COMMITTED,
          reason: res.transaction?.status === TransactionStatus.COMMITTED ? undefined : "not_committed",
          txnId,
          retries,
        };
      } catch (e) {
        const reason = errorInfo(e).reason;
        // Only the storm retries: it measures how duplicates are answered, and
        // every key must reach a final answer for the money-moved-once check.
        if (storm && reason === "idempotency_key_in_use" && inUse++ < IN_USE_RETRIES_MAX) {
          retries++;
          await sleep(1 + Math.floor(Math.random() * 3));
          continue;
        }
        if (storm && retryableReasons.has(reason as Reason) && transient++ < TRANSIENT_RETRIES_MAX) {
          retries++;
          await sleep(10 * transient);
          continue;
        }
        return { ok: false, reason, retries };
      }
    }
  }

  async function authorizeOnce(i: number, w: number): Promise<Outcome> {
    const c = cmd.cards![i % cmd.cards!.length]!;
    try {
      const res = await pickClient(cards, i, w).authorize(
        {
          idempotencyKey: randomUUID(),
          card: c,
          amountMinor: 100n,
          currency: "USD",
          merchantReference: `bench-${i}`,
          merchantAccountId: acc.cardMerchant,
        },
        { headers: headers.get(USERS.shop)! },
      );
      return { ok: true, authCode: res.authorization?.authCode ?? "", retries: 0 };
    } catch (e) {
      return { ok: false, reason: errorInfo(e).reason, retries: 0 };
    }
  }

  const samples: number[] = [];
  const errors: Record<string, number> = {};
  let answered = 0;
  let ok = 0;
  let seq = 0;
  // The window opens once warm-up time has passed AND every worker has had an
  // answer (the pipeline is full, even when one answer takes longer than the
  // warm-up), and stays open past its duration until it holds at least one
  // answer per worker, so a very slow configuration is measured, not reported as 0/s.
  const started = performance.now();
  const warmMin = started + cmd.warmupMs;
  const warmMax = started + Math.max(cmd.warmupMs, WARMUP_MAX_MS);
  const answeredOnce = new Uint8Array(cmd.concurrency);
  let workersAnswered = 0;
  let warmEnd = cmd.warmupMs === 0 ? started : Number.POSITIVE_INFINITY;
  let end = warmEnd + cmd.durationMs;
  let hardEnd = warmEnd + cmd.durationMs * WINDOW_STRETCH_MAX;
  let lastCounted = 0;
  const answersMin = cmd.requestsMax === undefined ? Math.max(10, cmd.concurrency) : 0;
  const open = (now: number) => now < end || (answered < answersMin && now < hardEnd);
  const windowEvent = (phase: WindowEvent["phase"]) => {
    if (cmd.windowEvents)
      process.send!(
        { event: "window", phase, scenario: cmd.scenario, concurrency: cmd.concurrency } satisfies WindowEvent,
        undefined,
        undefined,
        () => {},
      );
  };
  if (warmEnd === started) windowEvent("open");
  let closed = false;
  await Promise.all(
    Array.from({ length: cmd.concurrency }, async (_, w) => {
      while (open(performance.now()) && (cmd.requestsMax === undefined || seq < cmd.requestsMax)) {
        const i = seq++;
        const t0 = performance.now();
        const out = card ? await authorizeOnce(i, w) : await transferOnce(i, w);
        const t1 = performance.now();
        if (!answeredOnce[w]) {
          answeredOnce[w] = 1;
          workersAnswered++;
        }
        if (
          warmEnd === Number.POSITIVE_INFINITY &&
          ((t1 >= warmMin && workersAnswered === cmd.concurrency) || t1 >= warmMax)
        ) {
          warmEnd = t1;
          end = warmEnd + cmd.durationMs;
          hardEnd = warmEnd + cmd.durationMs * WINDOW_STRETCH_MAX;
          windowEvent("open");
        }
        totals.retries += out.retries;
        if (out.ok) {
          totals.committed++;
          if (out.authCode) authCodes.push(out.authCode);
        } else {
          totals.failed++;
          if (AMBIGUOUS_REASONS.has(out.reason ?? "")) totals.ambiguous++;
        }
        if (t1 >= warmEnd && (t1 <= end || (answered < answersMin && t1 <= hardEnd))) {
          lastCounted = t1;
          answered++;
          samples.push(t1 - t0);
          if (out.ok) ok++;
          else errors[out.reason ?? "unknown"] = (errors[out.reason ?? "unknown"] ?? 0) + 1;
        }
      }
      // The first worker out ends the window: the others only finish what they have in flight.
      if (!closed) {
        closed = true;
        windowEvent("close");
      }
    }),
  );
  // A count-bound cell ends before its deadline (rate over the time it took); a
  // stretched window ends at its last counted answer.
  const windowMs = Math.max(
    1,
    cmd.requestsMax !== undefined
      ? Math.min(performance.now(), end) - warmEnd
      : Math.max(Math.min(end, performance.now()), lastCounted) - warmEnd,
  );
  const result: CellResult = {
    scenario: cmd.scenario,
    concurrency: cmd.concurrency,
    windowMs: Math.round(windowMs),
    answered,
    ok,
    okPerSecond: Math.round((ok / windowMs) * 1000 * 10) / 10,
    latency: summarize(samples),
    errors,
    totals,
  };
  if (cmd.scenario === "duplicate-storm") return { ...result, storm: stormOf(keyTxns, seq, cmd.duplicatesPerKey) };
  return card ? { ...result, authCodes } : result;
}

/** hot-debit correctness: more requests than the payer can afford, all at once. */
async function runDrain(cmd: DrainCommand): Promise<DrainResult> {
  const acc = init!.accounts;
  const payments = clientsOf(PaymentService, init!.gatewayUrls);
  const headers = { authorization: `Bearer ${await tokenFor(USERS.drain)}` };
  const errors: Record<string, number> = {};
  let committed = 0;
  let next = 0;
  await Promise.all(
    Array.from({ length: cmd.concurrency }, async (_, w) => {
      while (next < cmd.requests) {
        const i = next++;
        try {
          const res = await pickClient(payments, i, w).transfer(
            {
              idempotencyKey: `${cmd.runId}-drain-${i}`,
              fromAccountId: acc.drain,
              toAccountId: acc.b[i % acc.b.length]!,
              amountMinor: 1n,
              currency: "USD",
            },
            { headers },
          );
          if (res.transaction?.status === TransactionStatus.COMMITTED) committed++;
          else errors.not_committed = (errors.not_committed ?? 0) + 1;
        } catch (e) {
          const reason = errorInfo(e).reason;
          errors[reason] = (errors[reason] ?? 0) + 1;
        }
      }
    }),
  );
  return { committed, errors };
}

async function runSettle(cmd: SettleCommand): Promise<SettleResult> {
  const client = createClient(CardService, transportsFor(firstGateway())[0]!);
  const headers = { authorization: `Bearer ${await tokenFor(USERS.shop)}` };
  const failed: Record<string, number> = {};
  let captured = 0;
  let calls = 0;
  const t0 = performance.now();
  let sent = 0;
  for (let at = 0; at < cmd.authCodes.length && performance.now() - t0 < cmd.budgetMs; at += cmd.batchItemsMax) {
    const items = cmd.authCodes.slice(at, at + cmd.batchItemsMax).map((authCode) => ({ authCode, amountMinor: 100n }));
    calls++;
    sent += items.length;
    try {
      const res = await client.settleBatch(
        { idempotencyKey: `${cmd.runId}-settle-${at}`, items },
        { headers, timeoutMs: 300_000 },
      );
      for (const r of res.results) {
        if (r.status === SettleItemStatus.CAPTURED) captured++;
        else failed[r.reason || "failed"] = (failed[r.reason || "failed"] ?? 0) + 1;
      }
    } catch (e) {
      const reason = errorInfo(e).reason;
      failed[`batch:${reason}`] = (failed[`batch:${reason}`] ?? 0) + items.length;
    }
  }
  const elapsedMs = performance.now() - t0;
  return {
    offered: cmd.authCodes.length,
    budgetMs: cmd.budgetMs,
    items: sent,
    captured,
    failed,
    calls,
    elapsedMs: Math.round(elapsedMs),
    itemsPerSecond: Math.round((captured / elapsedMs) * 1000),
  };
}

async function handle(cmd: Command): Promise<unknown> {
  switch (cmd.type) {
    case "init":
      init = cmd;
      for (const u of [USERS.payerA, USERS.payerB, USERS.whale, USERS.storm, USERS.drain]) await tokenFor(u);
      return { ready: true };
    case "cell":
      return runCell(cmd);
    case "drain":
      return runDrain(cmd);
    case "settle":
      return runSettle(cmd);
    case "exit":
      setImmediate(() => process.exit(0));
      return { bye: true };
  }
}

if (!process.send) {
  process.stderr.write("load-generator.ts is forked by bench/run.ts (it needs an IPC channel)\n");
  process.exit(2);
}
process.on("message", (msg: { id: number; cmd: Command }) => {
  handle(msg.cmd).then(
    (result) => process.send!({ id: msg.id, result }, undefined, undefined, () => {}),
    (e: unknown) =>
      process.send!({ id: msg.id, error: e instanceof Error ? `${e.message}\n${e.stack ?? ""}` : String(e) }),
  );
});
// The parent going away ends us too.
process.on("disconnect", () => process.exit(0));
