// Gateway restart with N logged-but-unacknowledged COMMIT decisions (issue 6:
// "all resolved within 5 s"). The durable state is the one a gateway leaves
// when it dies after logging COMMIT and before any bank acknowledged it:
//   1. a real stack (2 banks + gateway from dist/, mTLS, durable SQLite,
//      production-like timeouts as in bench/run.ts);
//   2. the gateway is stopped; for each txn "<replica>:<uuid>" this process,
//      presenting the gateway's certificate, sends Prepare to both banks
//      (both vote YES: holds are durable), then writes what the coordinator's
//      decide() writes — the txn COMMITTED with its sequence number, the COMMIT
//      decision and one unacknowledged decision_acks row per bank — straight
//      into the gateway's SQLite file (services/gateway/src/store/db.ts schema);
//   3. the gateway is started again, and every ~50 ms this process reads the
//      unacknowledged rows of that file (a WAL reader never blocks the gateway)
//      and each bank's paygate_bank_prepared_transactions gauge, until both
//      are 0. Totals is not what is polled: it runs the bank's full journal
//      audit on the bank's event loop, which would slow the Commits being
//      timed; it (and the gateway's Reconcile) run once, after;
//   4. checks the money: conserved (stack.assertConserved), no PREPARED left
//      (Totals), every account moved by exactly the sum of its legs, and every
//      txn has exactly one debit and one credit journal entry.
// Writes bench/results/recovery-<time>.json. Timing goals are reported, never
// asserted: exit 1 only if resolution timed out or a money check failed.
//   node --import tsx bench/recovery.ts [--decisions 10000] [--prepare-concurrency 64]
//        [--accounts-per-bank 100] [--bank-resolver on|off] [--timeout-s 300] [--cpu-prof]
import { randomUUID } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import type { Client } from "@connectrpc/connect";
import { LedgerService, LegDirection, ParticipantService, Vote } from "@paygate/proto/bank";
import { repoRoot, Stack, TEST_PASSWORD_SUFFIX, type LogLine } from "@paygate/testkit";
// Exported by the gateway on purpose (package.json "exports"): the seeded rows
// carry the fingerprint the gateway itself would have stored for them.
import { transferFingerprint } from "@paygate/gateway/transfer-rules";
import { createFsyncProbe } from "./lib/fsync-probe.js";
import { reproduceCommand, runStamp } from "./lib/run-id.js";
import { profileMarkdown, summarizeProfile, type ProfileSummary } from "./profile-summary.js";
import { cpuSeconds, machineInfo } from "./lib/proc.js";

const { values: args } = parseArgs({
  options: {
    decisions: { type: "string", default: "10000" },
    "prepare-concurrency": { type: "string", default: "64" },
    "accounts-per-bank": { type: "string", default: "100" },
    // off: the banks' in-doubt resolvers wait an hour, so only the gateway's redrive resolves.
    "bank-resolver": { type: "string", default: "on" },
    "poll-ms": { type: "string", default: "50" },
    "timeout-s": { type: "string", default: "300" },
    // Profiles the restarted gateway from spawn until every decision is resolved (bench/lib/cpu-profile.mjs).
    "cpu-prof": { type: "boolean", default: false },
    out: { type: "string", default: join(repoRoot, "bench", "results") },
  },
});

const decisionsN = Number(args.decisions);
const prepareConcurrency = Number(args["prepare-concurrency"]);
const perBank = Number(args["accounts-per-bank"]);
const pollMs = Number(args["poll-ms"]);
const timeoutMs = Number(args["timeout-s"]) * 1000;
const bankResolver = args["bank-resolver"] === "on";
if (!Number.isInteger(decisionsN) || decisionsN < 1 || decisionsN > 1_000_000)
  throw new Error("--decisions: an integer in 1..1000000");
if (!Number.isInteger(prepareConcurrency) || prepareConcurrency < 1 || prepareConcurrency > 1024)
  throw new Error("--prepare-concurrency: an integer in 1..1024");
if (!Number.isInteger(perBank) || perBank < 1 || perBank > 10_000)
  throw new Error("--accounts-per-bank: an integer in 1..10000");
if (!["on", "off"].includes(args["bank-resolver"]!)) throw new Error("--bank-resolver: on or off");

const BANKS = ["bank-a", "bank-b"] as const;
type BankName = (typeof BANKS)[number];
const PAYER: Record<BankName, string> = { "bank-a": "payer-a", "bank-b": "payer-b" };
const CURRENCY = "USD";
const OPENING_MINOR = 1_000_000_000n;
/** The issue's target, reported against (not asserted). */
const TARGET_MS = 5_000;
/** Prepared txns written to the gateway log per SQLite transaction. */
const LOG_FLUSH_MAX = 512;
const PREPARE_ATTEMPTS_MAX = 3;
const PROGRESS_INTERVAL_MS = 1_000;
/** Commit RPCs closer than this belong to the same burst (one redrive tick). */
const BURST_GAP_MS = 100;
// Production-like timing, as bench/run.ts uses: the gateway's own defaults
// except the prepare timeout the Stack shares with the banks.
const PREPARE_TIMEOUT_MS = 10_000;
const GATEWAY_ENV = { COMMIT_TIMEOUT_MS: "5000", REDRIVE_INTERVAL_MS: "1000", REDRIVE_BACKOFF_MAX_MS: "30000" };
const BANK_ENV = { RESOLVE_INTERVAL_MS: "1000", ...(bankResolver ? {} : { PREPARE_TIMEOUT_MS: "3600000" }) };

const startedAt = new Date();
const stamp = runStamp(startedAt);
const command = reproduceCommand({
  makeTarget: "bench-recovery",
  makeVar: "RECOVERY_ARGS",
  script: "bench/recovery.ts",
});
const log = (msg: string) => process.stdout.write(`recovery: ${msg}\n`);
const fmt = (n: number) => n.toLocaleString("en-US");
const round = (n: number, digits = 0) => Math.round(n * 10 ** digits) / 10 ** digits;

// ---- the plan: N cross-bank transfers, both directions, amounts that differ ----

const accountsOf = (bank: BankName) =>
  Array.from({ length: perBank }, (_, i) => `${bank}/${(bank === "bank-a" ? 1_000_000 : 2_000_000) + i}`);
const ACCOUNTS: Record<BankName, string[]> = { "bank-a": accountsOf("bank-a"), "bank-b": accountsOf("bank-b") };

function recoverySeed(): string {
  const users = ["admin", ...Object.values(PAYER)];
  return [
    `banks: [${BANKS.join(", ")}]`,
    "users:",
    ...users.map(
      (u) =>
        `  - { id: ${u}, username: ${u}, password: ${u}${TEST_PASSWORD_SUFFIX}, roles: [${u === "admin" ? "admin" : "customer"}] }`,
    ),
    "accounts:",
    ...BANKS.flatMap((b) =>
      ACCOUNTS[b].map(
        (id) => `  - { id: ${id}, owner: ${PAYER[b]}, currency: ${CURRENCY}, opening_minor: ${OPENING_MINOR} }`,
      ),
    ),
  ].join("\n");
}

interface PlannedTxn {
  readonly txnId: string;
  readonly idempotencyKey: string;
  readonly fromBank: BankName;
  readonly toBank: BankName;
  readonly fromAccountId: string;
  readonly toAccountId: string;
  readonly callerUserId: string;
  readonly amountMinor: bigint;
}

function planTxns(replica: string): PlannedTxn[] {
  return Array.from({ length: decisionsN }, (_, i) => {
    const fromBank: BankName = i % 2 === 0 ? "bank-a" : "bank-b";
    const toBank: BankName = fromBank === "bank-a" ? "bank-b" : "bank-a";
    return {
      txnId: `${replica}:${randomUUID()}`,
      idempotencyKey: `recovery-${stamp}-${i}`,
      fromBank,
      toBank,
      fromAccountId: ACCOUNTS[fromBank][(i >> 1) % perBank]!,
      toAccountId: ACCOUNTS[toBank][(i * 31 + 7) % perBank]!,
      callerUserId: PAYER[fromBank],
      amountMinor: BigInt(1 + (i % 97)),
    };
  });
}

// ---- step 2: prepare at the banks as the gateway, log COMMIT as the gateway would ----

type Participant = Client<typeof ParticipantService>;

async function prepareAt(client: Participant, bank: string, t: PlannedTxn): Promise<void> {
  const debit = bank === t.fromBank;
  const leg = {
    accountId: debit ? t.fromAccountId : t.toAccountId,
    direction: debit ? LegDirection.DEBIT : LegDirection.CREDIT,
    amountMinor: t.amountMinor,
    currency: CURRENCY,
    ownerUserId: debit ? t.callerUserId : "",
  };
  for (let attempt = 1; ; attempt++) {
    try {
      // A re-delivered Prepare of the same legs is answered as the first was.
      const res = await client.prepare({ txnId: t.txnId, legs: [leg] }, { timeoutMs: 30_000 });
      if (res.vote !== Vote.YES) throw new Error(`${bank} voted NO on ${t.txnId}: ${res.reason}`);
      return;
    } catch (e) {
      if (attempt >= PREPARE_ATTEMPTS_MAX || String(e).includes("voted NO")) throw e;
    }
  }
}

interface LogWriter {
  /** Durably logs COMMIT for these txns, exactly as the coordinator's decide() leaves them. */
  logCommitted(txns: readonly PlannedTxn[]): void;
}

function createLogWriter(db: Database.Database, commitTimeoutMs: number): LogWriter {
  const insertTxn =
    db.prepare(`INSERT INTO txns (txn_id, sequence, caller_user_id, idempotency_key, owns_key, fingerprint, from_account_id, to_account_id,
      from_bank, to_bank, amount_minor, currency, memo, status, decline_reason, created_at, decided_at)
    VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, 'COMMITTED', '', ?, ?)`);
  const insertDecision = db.prepare(
    "INSERT INTO decisions (txn_id, decision, reason, decided_at) VALUES (?, 'COMMIT', '', ?)",
  );
  const insertAck = db.prepare("INSERT INTO decision_acks (txn_id, bank, next_attempt_at) VALUES (?, ?, ?)");
  let sequence = Number((db.prepare("SELECT COALESCE(MAX(sequence), 0) AS s FROM txns").get() as { s: number }).s);
  const write = db.transaction((txns: readonly PlannedTxn[]) => {
    const nowMs = Date.now();
    for (const t of txns) {
      const memo = "recovery bench";
      const fingerprint = transferFingerprint({
        idempotencyKey: t.idempotencyKey,
        fromAccountId: t.fromAccountId,
        toAccountId: t.toAccountId,
        amountMinor: t.amountMinor,
        currency: CURRENCY,
        memo,
      });
      sequence += 1;
      insertTxn.run(
        t.txnId,
        sequence,
        t.callerUserId,
        t.idempotencyKey,
        fingerprint,
        t.fromAccountId,
        t.toAccountId,
        t.fromBank,
        t.toBank,
        t.amountMinor,
        CURRENCY,
        memo,
        nowMs,
        nowMs,
      );
      insertDecision.run(t.txnId, nowMs);
      // decide() schedules the first resend one commit timeout out: its caller sends the first Commit itself.
      for (const bank of [t.fromBank, t.toBank]) insertAck.run(t.txnId, bank, nowMs + commitTimeoutMs);
    }
  });
  return { logCommitted: (txns) => write(txns) };
}

async function prepareAll(
  stack: Stack,
  txns: readonly PlannedTxn[],
  writer: LogWriter,
): Promise<{ elapsedMs: number }> {
  const clients = new Map(BANKS.map((b) => [b, stack.bankClient(ParticipantService, b)]));
  const started = performance.now();
  let next = 0;
  let prepared = 0;
  let logged = 0;
  let buffer: PlannedTxn[] = [];
  const flush = () => {
    writer.logCommitted(buffer);
    logged += buffer.length;
    buffer = [];
  };
  const progress = setInterval(() => {
    const s = (performance.now() - started) / 1000;
    log(
      `prepared ${fmt(prepared)}/${fmt(txns.length)} txns at both banks (${fmt(Math.round(prepared / s))}/s), COMMIT logged for ${fmt(logged)}`,
    );
  }, PROGRESS_INTERVAL_MS);
  try {
    await Promise.all(
      Array.from({ length: Math.min(prepareConcurrency, txns.length) }, async () => {
        while (next < txns.length) {
          const t = txns[next++]!;
          await Promise.all([t.fromBank, t.toBank].map((b) => prepareAt(clients.get(b)!, b, t)));
          prepared++;
          buffer.push(t);
          if (buffer.length >= LOG_FLUSH_MAX) flush();
        }
      }),
    );
    flush();
  } finally {
    clearInterval(progress);
  }
  const elapsedMs = performance.now() - started;
  log(
    `prepared ${fmt(prepared)}/${fmt(txns.length)} txns at both banks in ${round(elapsedMs / 1000, 1)} s (${fmt(Math.round(prepared / (elapsedMs / 1000)))}/s), COMMIT logged for ${fmt(logged)}`,
  );
  return { elapsedMs };
}

// ---- step 3: observe ----

interface PromSample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

async function scrape(port: number): Promise<PromSample[]> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  const out: PromSample[] = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

const sumOf = (
  samples: readonly PromSample[],
  name: string,
  where: (l: Record<string, string>) => boolean = () => true,
) => samples.filter((s) => s.name === name && where(s.labels)).reduce((a, s) => a + s.value, 0);

interface PollSample {
  /** Since the gateway was spawned. */
  readonly tMs: number;
  readonly unackedAcks: number;
  readonly unresolvedDecisions: number;
  readonly prepared: Record<string, number>;
}

// ---- step 4: what the Commit RPCs at the banks say about where the time went ----

interface CommitLine {
  readonly bank: string;
  /** Commit, or CommitBatch once the gateway batches (one line per call, whatever its size). */
  readonly method: string;
  readonly startMs: number;
  readonly endMs: number;
  readonly redelivered: boolean;
  readonly ok: boolean;
}

const COMMIT_METHOD = /ParticipantService\/Commit(Batch)?$/;

function commitLines(stack: Stack, spawnEpochMs: number): CommitLine[] {
  return BANKS.flatMap((b) =>
    stack
      .bank(b)
      .find((l: LogLine) => l.msg === "rpc" && typeof l.method === "string" && COMMIT_METHOD.test(l.method))
      .map((l) => {
        const endMs = Date.parse(String(l.time)) - spawnEpochMs;
        return {
          bank: b,
          method: String(l.method).replace(/^.*\//, ""),
          startMs: endMs - Number(l.durationMs ?? 0),
          endMs,
          redelivered: l.retry === true,
          ok: l.code === "ok",
        };
      }),
  ).sort((a, b) => a.startMs - b.startMs);
}

interface Burst {
  readonly startMs: number;
  readonly endMs: number;
  readonly commits: number;
}

function bursts(lines: readonly CommitLine[]): Burst[] {
  const out: { startMs: number; endMs: number; commits: number }[] = [];
  for (const l of lines) {
    const last = out.at(-1);
    if (last && l.startMs <= last.endMs + BURST_GAP_MS) {
      last.endMs = Math.max(last.endMs, l.endMs);
      last.commits++;
    } else out.push({ startMs: l.startMs, endMs: l.endMs, commits: 1 });
  }
  return out.map((b) => ({ startMs: round(b.startMs), endMs: round(b.endMs), commits: b.commits }));
}

interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

async function balances(stack: Stack): Promise<Map<string, { balance: bigint; held: bigint }>> {
  const out = new Map<string, { balance: bigint; held: bigint }>();
  for (const b of BANKS) {
    const ledger = stack.bankClient(LedgerService, b);
    for (const id of ACCOUNTS[b]) {
      const a = (await ledger.getAccount({ accountId: id })).account;
      if (!a) throw new Error(`no account ${id}`);
      out.set(id, { balance: a.balanceMinor, held: a.heldMinor });
    }
  }
  return out;
}

/** Every planned txn has exactly one debit (-amount) and one credit (+amount) entry, where it should. */
async function checkEntries(stack: Stack, txns: readonly PlannedTxn[]): Promise<Check> {
  const want = new Map<string, { debit: string; credit: string; amount: bigint }>(
    txns.map((t) => [t.txnId, { debit: t.fromAccountId, credit: t.toAccountId, amount: t.amountMinor }]),
  );
  const seen = new Map<string, number>();
  const problems: string[] = [];
  for (const b of BANKS) {
    const ledger = stack.bankClient(LedgerService, b);
    for (const id of ACCOUNTS[b]) {
      let after = 0n;
      for (let page = 0; page < 1_000_000; page++) {
        let n = 0;
        for await (const r of ledger.listEntries({ accountId: id, afterSequence: after, limit: 1000 })) {
          const e = r.entry;
          if (!e) continue;
          n++;
          after = e.sequence;
          if (e.kind === "opening") continue;
          const w = want.get(e.txnId);
          const expected =
            w &&
            (e.kind === "transfer_debit"
              ? w.debit === id && e.amountMinor === -w.amount
              : e.kind === "transfer_credit" && w.credit === id && e.amountMinor === w.amount);
          if (!expected) problems.push(`${id}: unexpected ${e.kind} ${e.amountMinor} for ${e.txnId}`);
          seen.set(`${e.txnId} ${e.kind}`, (seen.get(`${e.txnId} ${e.kind}`) ?? 0) + 1);
        }
        if (n === 0) break;
      }
    }
  }
  let wrongCount = 0;
  for (const t of txns)
    for (const kind of ["transfer_debit", "transfer_credit"]) if (seen.get(`${t.txnId} ${kind}`) !== 1) wrongCount++;
  return {
    name: "every txn's legs applied exactly once",
    ok: problems.length === 0 && wrongCount === 0,
    detail: `${fmt(txns.length)} txns: ${fmt(txns.length * 2 - wrongCount)} of ${fmt(txns.length * 2)} legs have exactly one journal entry; unexpected entries: ${problems.length}${problems.length ? ` (${problems.slice(0, 3).join("; ")})` : ""}`,
  };
}

// ---- the run ----

/** What main() has open: closed in its finally block whatever failed. */
interface Live {
  db?: Database.Database;
  stopPolling: boolean;
}

/** The gateway's decision log and the banks' PREPARED gauges, as the watch reads them. */
interface Gauges {
  unackedAcks: Database.Statement;
  unresolved: Database.Statement;
  countOf: (s: Database.Statement) => number;
  bankScrape: (b: BankName) => ReturnType<typeof scrape>;
  preparedGauge: (b: BankName) => Promise<number>;
}

type Scraped = Awaited<ReturnType<typeof scrape>>;

/** With the gateway stopped, writes the planned COMMIT decisions into its log and PREPAREs every txn at the banks. */
async function prepareDecisions(stack: Stack, txns: readonly PlannedTxn[], live: Live) {
  const dbFile = join(stack.gateway.env.GATEWAY_DATA_DIR!, "gateway.db");
  await stack.gateway.stop();
  const db = new Database(dbFile);
  live.db = db;
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("busy_timeout = 5000");
  const prep = await prepareAll(stack, txns, createLogWriter(db, Number(GATEWAY_ENV.COMMIT_TIMEOUT_MS)));
  return { db, prep };
}

function gaugesOf(stack: Stack, db: Database.Database): Gauges {
  const unackedAcks = db.prepare("SELECT count(*) AS n FROM decision_acks WHERE acked_at IS NULL");
  const unresolved = db.prepare("SELECT count(DISTINCT txn_id) AS n FROM decision_acks WHERE acked_at IS NULL");
  const countOf = (s: Database.Statement) => Number((s.get() as { n: number }).n);
  // From the "listening" lines, which are dropped below with the set-up's log lines.
  const bankMetricsPorts = new Map(BANKS.map((b) => [b, stack.bank(b).metricsPort]));
  const bankScrape = (b: BankName) => scrape(bankMetricsPorts.get(b)!);
  // A scrape that fails (a stalled machine) counts as "unknown", never as resolved.
  const preparedGauge = async (b: BankName) =>
    sumOf(
      await bankScrape(b).catch(() => [{ name: "paygate_bank_prepared_transactions", labels: {}, value: -1 }]),
      "paygate_bank_prepared_transactions",
    );
  return { unackedAcks, unresolved, countOf, bankScrape, preparedGauge };
}

const preparedAtBanks = async (g: Gauges) =>
  Object.fromEntries(await Promise.all(BANKS.map(async (b) => [b, await g.preparedGauge(b)] as const)));

/** The state the restarted gateway must recover from; throws unless it is what was planned. */
async function readStartState(g: Gauges) {
  const startState = {
    unackedAcks: g.countOf(g.unackedAcks),
    unresolvedDecisions: g.countOf(g.unresolved),
    prepared: await preparedAtBanks(g),
  };
  log(
    `gateway log: ${fmt(startState.unresolvedDecisions)} COMMIT decisions, ${fmt(startState.unackedAcks)} unacknowledged (txn, bank) pairs; PREPARED at ${BANKS.map((b) => `${b}: ${fmt(startState.prepared[b] ?? 0)}`).join(", ")}`,
  );
  if (startState.unresolvedDecisions !== decisionsN || BANKS.some((b) => startState.prepared[b] !== decisionsN))
    throw new Error("the prepared state is not what was planned");
  return startState;
}

const stackPids = (stack: Stack) => [stack.gateway.pid, ...BANKS.map((b) => stack.bank(b).pid)];

/** Where the gateway's CPU profile goes; with --cpu-prof, the gateway's next start runs under the profiler. */
function setUpProfile(stack: Stack) {
  const profileDir = join(args.out!, `recovery-${stamp}-profile`);
  const profileFile = join(profileDir, "gateway.cpuprofile");
  if (args["cpu-prof"]) {
    // Node 20 refuses --cpu-prof in NODE_OPTIONS; the preload starts the profiler. The profile names lines of this exact bundle.
    mkdirSync(profileDir, { recursive: true });
    copyFileSync(join(repoRoot, "dist", "gateway.js"), join(profileDir, "bundle.js"));
    stack.gateway.env.NODE_OPTIONS = `--import ${join(repoRoot, "bench", "lib", "cpu-profile.mjs")}`;
    stack.gateway.env.BENCH_CPU_PROFILE = profileFile;
  }
  return { profileDir, profileFile };
}

/** Starts the gateway and polls until every decision is acknowledged and nothing is PREPARED (or the timeout). */
async function restartAndWatch(stack: Stack, g: Gauges, live: Live) {
  const samples: PollSample[] = [];
  let spawnAt = 0;
  let resolvedAtMs: number | undefined;
  const poll = async () => {
    while (!live.stopPolling) {
      const t0 = performance.now();
      const prepared = await preparedAtBanks(g);
      const s = {
        tMs: round(t0 - spawnAt, 1),
        unackedAcks: g.countOf(g.unackedAcks),
        unresolvedDecisions: g.countOf(g.unresolved),
        prepared,
      };
      samples.push(s);
      if (s.unackedAcks === 0 && BANKS.every((b) => prepared[b] === 0)) {
        resolvedAtMs = s.tMs;
        return;
      }
      if (t0 - spawnAt > timeoutMs) return;
      await new Promise((r) => setTimeout(r, Math.max(0, pollMs - (performance.now() - t0))));
    }
  };
  const { profileDir, profileFile } = setUpProfile(stack);
  log("starting the gateway ...");
  const spawnEpochMs = Date.now();
  spawnAt = performance.now();
  const watching = poll().finally(() => (live.stopPolling = true));
  // Handled where it is awaited; this only keeps a failed start from reporting it twice.
  watching.catch(() => {});
  try {
    await stack.gateway.start();
  } finally {
    liveStackPids = stackPids(stack);
  }
  const listeningMs = round(performance.now() - spawnAt, 1);
  log(`gateway listening ${listeningMs} ms after spawn; waiting for every decision to be acknowledged ...`);
  const progress = setInterval(() => {
    const s = samples.at(-1);
    if (s)
      log(
        `${round(s.tMs / 1000, 1)} s: ${fmt(decisionsN - s.unresolvedDecisions)}/${fmt(decisionsN)} decisions resolved; PREPARED ${BANKS.map((b) => `${b} ${fmt(s.prepared[b] ?? 0)}`).join(", ")}`,
      );
  }, PROGRESS_INTERVAL_MS);
  await watching;
  clearInterval(progress);
  live.stopPolling = true;
  return { samples, resolvedAtMs, listeningMs, spawnEpochMs, profileDir, profileFile };
}

/** With --cpu-prof: stops the profiled gateway (the profile is written at exit), starts an unprofiled one, summarizes. */
async function readProfile(stack: Stack, profileDir: string, profileFile: string): Promise<ProfileSummary | undefined> {
  if (!args["cpu-prof"]) return undefined;
  let profile: ProfileSummary | undefined;
  // The profile is written at exit: stop the profiled gateway now, run the checks on an unprofiled one.
  await stack.gateway.stop();
  delete stack.gateway.env.NODE_OPTIONS;
  delete stack.gateway.env.BENCH_CPU_PROFILE;
  await stack.gateway.start();
  liveStackPids = stackPids(stack);
  if (existsSync(profileFile)) {
    const bundleUrl = pathToFileURL(join(repoRoot, "dist", "gateway.js")).href;
    profile = summarizeProfile(
      JSON.parse(readFileSync(profileFile, "utf8")) as Parameters<typeof summarizeProfile>[0],
      25,
      { [bundleUrl]: join(profileDir, "bundle.js") },
    );
    process.stdout.write(`\n${profileMarkdown(`gateway, spawn to resolved (${profileFile})`, profile)}\n\n`);
  } else log(`no profile was written to ${profileFile}`);
  return profile;
}

/** What the watch measured after it ended: CPU and /metrics of every process. */
interface AfterWatch {
  gatewayCpu: number;
  bankCpu: Record<string, number>;
  gatewayMetrics: Scraped;
  bankMetricsBefore: Map<BankName, Scraped>;
  bankMetricsAfter: Map<BankName, Scraped>;
}

/** fsyncs at each bank during the watch, from the /metrics deltas. */
function bankFsyncs(a: AfterWatch) {
  const bankDelta = (b: BankName, name: string, where?: (l: Record<string, string>) => boolean) =>
    sumOf(a.bankMetricsAfter.get(b)!, name, where) - sumOf(a.bankMetricsBefore.get(b)!, name, where);
  return Object.fromEntries(
    BANKS.map((b) => {
      const count = bankDelta(b, "paygate_bank_fsync_duration_seconds_count");
      const sumS = bankDelta(b, "paygate_bank_fsync_duration_seconds_sum");
      return [b, { count, totalMs: round(sumS * 1000), meanMs: count ? round((sumS * 1000) / count, 3) : Number.NaN }];
    }),
  );
}

/** Where the time went: the banks' Commit lines grouped in bursts, the gateway's redrives, CPU and fsyncs. */
function whereTimeWent(stack: Stack, spawnEpochMs: number, a: AfterWatch) {
  const lines = commitLines(stack, spawnEpochMs);
  const bs = bursts(lines);
  const busyMs = bs.reduce((x, b) => x + (b.endMs - b.startMs), 0);
  const firstCommitMs = lines[0]?.startMs ?? Number.NaN;
  const resolverResolved = Object.fromEntries(
    BANKS.map((b) => [b, stack.bank(b).find("in-doubt txn resolved").length]),
  );
  const fsyncs = bankFsyncs(a);
  const clientCommit = (l: Record<string, string>) => COMMIT_METHOD.test(l.method ?? "");
  const gwCommitCount = sumOf(a.gatewayMetrics, "paygate_rpc_client_duration_seconds_count", clientCommit);
  const gwCommitSumS = sumOf(a.gatewayMetrics, "paygate_rpc_client_duration_seconds_sum", clientCommit);
  const where = {
    commitRpcsAtBanks: Object.fromEntries(
      BANKS.map((b) => [
        b,
        Object.fromEntries(
          [...new Set(lines.map((l) => l.method))].map((m) => [
            m,
            lines.filter((l) => l.bank === b && l.method === m).length,
          ]),
        ),
      ]),
    ),
    commitRpcsRedelivered: lines.filter((l) => l.redelivered).length,
    commitRpcsFailed: lines.filter((l) => !l.ok).length,
    resolvedByBankResolvers: resolverResolved,
    gatewayRedriveAttempts: sumOf(a.gatewayMetrics, "paygate_2pc_redrive_attempts_total"),
    gatewayRecoveryLine: stack.gateway.find("coordinator recovery").at(-1) ?? null,
    firstCommitAfterSpawnMs: round(firstCommitMs),
    bursts: bs.length,
    burstCommitsMean: bs.length ? round(lines.length / bs.length, 1) : 0,
    burstDurationMeanMs: bs.length ? round(busyMs / bs.length, 1) : 0,
    commitBusyMs: round(busyMs),
    // The banks have no Commit to serve: the gateway is between ticks or busy with its own log.
    idleBetweenBurstsMs: bs.length > 1 ? round(bs.at(-1)!.endMs - bs[0]!.startMs - busyMs) : 0,
    // recover() sends one batch before "listening"; the loop's first tick follows one REDRIVE_INTERVAL_MS later.
    firstGapMs: bs.length > 1 ? round(bs[1]!.startMs - bs[0]!.endMs) : 0,
    bankCommitServerMeanMs: lines.length
      ? round(lines.reduce((x, l) => x + (l.endMs - l.startMs), 0) / lines.length, 3)
      : Number.NaN,
    gatewayCommitClientMeanMs: gwCommitCount ? round((gwCommitSumS * 1000) / gwCommitCount, 3) : Number.NaN,
    bankFsyncs: fsyncs,
    cpuSeconds: { gateway: round(a.gatewayCpu, 2), ...a.bankCpu },
    burstList: bs,
  };
  return { where, lines, busyMs, fsyncs, resolverResolved };
}

/** Each bank's Totals, then stack.assertConserved, as checks. */
async function totalsChecks(stack: Stack, checks: Check[]): Promise<void> {
  for (const b of BANKS) {
    const t = await stack.bankClient(LedgerService, b).totals({});
    checks.push({
      name: `${b} holds no PREPARED txn (Totals)`,
      ok: t.prepared.length === 0 && t.ledgerConsistent,
      detail: `prepared: ${t.prepared.length}; ledger consistent: ${t.ledgerConsistent}${t.problems.length ? `; ${t.problems.slice(0, 3).join("; ")}` : ""}`,
    });
  }
  try {
    const r = await stack.assertConserved(25);
    const cur = r.currencies
      .map((c) => `${c.currency} balance ${c.balanceMinor} = deposited ${c.depositedMinor}`)
      .join("; ");
    checks.push({
      name: "money conserved (stack.assertConserved)",
      ok: r.conserved && r.inDoubt.length === 0,
      detail: `${cur}; in doubt: ${r.inDoubt.length}`,
    });
  } catch (e) {
    checks.push({ name: "money conserved (stack.assertConserved)", ok: false, detail: String(e).slice(0, 2000) });
  }
}

/** Every account's balance moved by exactly its committed legs, nothing held; then the journal entries. */
async function balanceChecks(
  stack: Stack,
  txns: readonly PlannedTxn[],
  before: Awaited<ReturnType<typeof balances>>,
  checks: Check[],
): Promise<void> {
  const expected = new Map<string, bigint>();
  for (const t of txns) {
    expected.set(t.fromAccountId, (expected.get(t.fromAccountId) ?? 0n) - t.amountMinor);
    expected.set(t.toAccountId, (expected.get(t.toAccountId) ?? 0n) + t.amountMinor);
  }
  const after = await balances(stack);
  const wrong = [...after].filter(
    ([id, a]) => a.balance - before.get(id)!.balance !== (expected.get(id) ?? 0n) || a.held !== before.get(id)!.held,
  );
  const moved = txns.reduce((a, t) => a + t.amountMinor, 0n);
  checks.push({
    name: "balances moved by exactly the committed legs",
    ok: wrong.length === 0,
    detail: `${fmt(after.size)} accounts, ${moved} minor units moved by ${fmt(txns.length)} txns; accounts off by anything (balance or held): ${wrong.length}${
      wrong.length
        ? ` (${wrong
            .slice(0, 3)
            .map(([id]) => id)
            .join(", ")})`
        : ""
    }`,
  });
  checks.push(await checkEntries(stack, txns));
}

/** The recovery figures, from spawn to resolved. */
function recoveryOf(resolvedAtMs: number | undefined, listeningMs: number) {
  const resolved = resolvedAtMs !== undefined;
  const spawnToResolvedMs = resolvedAtMs ?? Number.NaN;
  const listeningToResolvedMs = resolved ? round(Math.max(0, spawnToResolvedMs - listeningMs), 1) : Number.NaN;
  const perSecond = resolved ? Math.round(decisionsN / (spawnToResolvedMs / 1000)) : 0;
  return {
    resolved,
    spawnToListeningMs: listeningMs,
    spawnToResolvedMs,
    listeningToResolvedMs,
    decisionsPerSecond: perSecond,
    targetMs: TARGET_MS,
    targetMet: resolved && spawnToResolvedMs <= TARGET_MS,
  };
}

/** The options this run was made with, as the JSON records them. */
const runOptions = () => ({
  decisions: decisionsN,
  prepareConcurrency,
  accountsPerBank: perBank,
  bankResolver,
  pollMs,
  timeoutMs,
  prepareTimeoutMs: PREPARE_TIMEOUT_MS,
  gatewayEnv: GATEWAY_ENV,
  bankEnv: BANK_ENV,
});

/** The two closing log lines: where the time went, and the result. */
function logSummary(
  w: ReturnType<typeof whereTimeWent>,
  bankCpu: Record<string, number>,
  recovery: ReturnType<typeof recoveryOf>,
  moneyOk: boolean,
  last: PollSample | undefined,
): void {
  const { where, lines, busyMs, fsyncs, resolverResolved } = w;
  const { resolved, spawnToResolvedMs, listeningToResolvedMs, spawnToListeningMs: listeningMs } = recovery;
  const perSecond = recovery.decisionsPerSecond;
  log(
    `where the time went: first Commit ${where.firstCommitAfterSpawnMs} ms after spawn; ${fmt(lines.length)} Commit RPCs at the banks (${where.commitRpcsRedelivered} already committed) in ${where.bursts} bursts of ~${where.burstCommitsMean} ` +
      `(~${where.burstDurationMeanMs} ms each, ${round(busyMs / 1000, 1)} s in all; the banks waited ${round(where.idleBetweenBurstsMs / 1000, 1)} s between them, ${round(where.firstGapMs / 1000, 2)} s after the first); bank fsyncs ${BANKS.map((b) => `${b} ${fmt(fsyncs[b]!.count)} × ${fsyncs[b]!.meanMs} ms`).join(", ")}; ` +
      `resolved by bank resolvers ${BANKS.map((b) => `${b} ${resolverResolved[b]}`).join(", ")}; CPU s gateway ${where.cpuSeconds.gateway}, ${BANKS.map((b) => `${b} ${bankCpu[b]}`).join(", ")}`,
  );
  log(
    resolved
      ? `RESULT ${fmt(decisionsN)} unacknowledged decisions resolved ${round(spawnToResolvedMs / 1000, 2)} s after spawn (${round(listeningToResolvedMs / 1000, 2)} s after "listening" at ${round(listeningMs / 1000, 2)} s): ${fmt(perSecond)} decisions/s; target ${TARGET_MS / 1000} s ${recovery.targetMet ? "met" : "MISSED"}; money ${moneyOk ? "ok" : "CHECK FAILED"}`
      : `RESULT not resolved within ${timeoutMs / 1000} s (${fmt(last?.unresolvedDecisions ?? decisionsN)} of ${fmt(decisionsN)} left)`,
  );
}

/** After the watch: CPU and /metrics, then the decision log is closed. */
async function readAfterWatch(
  stack: Stack,
  g: Gauges,
  live: Live,
  bankCpuBefore: Map<BankName, number>,
  bankMetricsBefore: Map<BankName, Scraped>,
): Promise<AfterWatch> {
  const gatewayCpu = cpuSeconds(stack.gateway.pid!) ?? Number.NaN;
  const bankCpu = Object.fromEntries(
    BANKS.map((b) => [b, round((cpuSeconds(stack.bank(b).pid!) ?? 0) - (bankCpuBefore.get(b) ?? 0), 2)]),
  );
  const gatewayMetrics = await scrape(stack.gateway.metricsPort);
  const bankMetricsAfter = new Map(await Promise.all(BANKS.map(async (b) => [b, await g.bankScrape(b)] as const)));
  live.db!.close();
  live.db = undefined;
  return { gatewayCpu, bankCpu, gatewayMetrics, bankMetricsBefore, bankMetricsAfter };
}

/** Prepare, restart, watch, check: the whole run on a started stack; returns the exit code. */
async function runRecovery(
  stack: Stack,
  live: Live,
  machine: ReturnType<typeof machineInfo>,
  fsyncBefore: unknown,
): Promise<number> {
  const checks: Check[] = [];
  const replica = stack.gateway.env.GATEWAY_REPLICA ?? "gateway-0";
  const before = await balances(stack);
  const txns = planTxns(replica);
  const { db, prep } = await prepareDecisions(stack, txns, live);
  const g = gaugesOf(stack, db);
  const startState = await readStartState(g);

  const bankMetricsBefore = new Map(await Promise.all(BANKS.map(async (b) => [b, await g.bankScrape(b)] as const)));
  for (const b of BANKS) stack.bank(b).lines.splice(0);
  const bankCpuBefore = new Map(BANKS.map((b) => [b, cpuSeconds(stack.bank(b).pid!) ?? 0]));

  // ---- restart and watch ----
  const w = await restartAndWatch(stack, g, live);
  const a = await readAfterWatch(stack, g, live, bankCpuBefore, bankMetricsBefore);
  const profile = await readProfile(stack, w.profileDir, w.profileFile);

  const resolved = w.resolvedAtMs !== undefined;
  const last = w.samples.at(-1);
  if (!resolved)
    log(
      `NOT RESOLVED within ${timeoutMs / 1000} s: ${fmt(last?.unresolvedDecisions ?? decisionsN)} decisions still unacknowledged`,
    );

  // ---- where the time went ----
  const time = whereTimeWent(stack, w.spawnEpochMs, a);

  // ---- the money ----
  if (resolved) {
    await totalsChecks(stack, checks);
    await balanceChecks(stack, txns, before, checks);
  }
  for (const c of checks) log(`${c.ok ? "PASS" : "FAIL"} ${c.name}: ${c.detail}`);

  const recovery = recoveryOf(w.resolvedAtMs, w.listeningMs);
  const moneyOk = checks.every((c) => c.ok);
  const result = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    command,
    machine,
    loadAvgEnd: machineInfo().loadAvg,
    fsyncBefore,
    options: runOptions(),
    prepare: { elapsedMs: round(prep.elapsedMs), txnsPerSecond: Math.round(decisionsN / (prep.elapsedMs / 1000)) },
    startState,
    recovery,
    where: time.where,
    ...(profile ? { gatewayProfile: profile } : {}),
    timeline: w.samples,
    checks,
    ok: resolved && moneyOk,
  };
  mkdirSync(args.out!, { recursive: true });
  const file = join(args.out!, `recovery-${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  log(`wrote ${file}`);
  logSummary(time, a.bankCpu, recovery, moneyOk, last);
  return result.ok ? 0 : 1;
}

async function main(): Promise<number> {
  const machine = machineInfo();
  log(
    `${machine.nproc} × ${machine.cpuModel}, load average ${machine.loadAvg}; ${fmt(decisionsN)} decisions, bank resolvers ${bankResolver ? "on" : "off"}`,
  );
  const fsyncProbe = createFsyncProbe();
  const fsyncBefore = fsyncProbe.sample();
  fsyncProbe.close();
  log("starting the stack (2 banks, gateway) ...");
  const stack = await Stack.start({
    banks: BANKS,
    seed: recoverySeed(),
    prepareTimeoutMs: PREPARE_TIMEOUT_MS,
    gatewayEnv: GATEWAY_ENV,
    bankEnv: BANK_ENV,
  });
  liveStackPids = stackPids(stack);
  const live: Live = { stopPolling: false };
  try {
    return await runRecovery(stack, live, machine, fsyncBefore);
  } finally {
    live.stopPolling = true;
    live.db?.close();
    await stack.close();
    liveStackPids = [];
  }
}

// Last resort if this process dies with the stack still up: kill exactly the processes it started.
let liveStackPids: (number | undefined)[] = [];
process.on("exit", () => {
  for (const pid of liveStackPids) {
    if (pid === undefined) continue;
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
});

process.exitCode = await main();
