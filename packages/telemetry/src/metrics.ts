// Every Prometheus metric paygate exports is defined in this file, so the
// dashboards and alert rules can be checked against one list (see
// test/observability). Names follow Prometheus conventions: `paygate_` prefix,
// base units (`_seconds`, `_bytes`; money in minor units, `_minor`), counters end
// in `_total`. Label values come from small closed sets (outcomes, error-table
// reasons, Connect codes, currencies, bank names) so cardinality stays bounded:
// never put a transaction id, account id or user id in a label.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

/** A process's registry plus the RPC metrics every service shares. */
export interface Metrics {
  /** Process identity (`gateway`, `bank-a`, ...); a default label on every series. */
  readonly service: string;
  readonly registry: Registry;
  /** paygate_rpc_server_requests_total{service,method,code} */
  readonly rpcServerRequests: Counter<"method" | "code">;
  /** paygate_rpc_server_duration_seconds{service,method,code} */
  readonly rpcServerDuration: Histogram<"method" | "code">;
  /** paygate_rpc_client_requests_total{service,target,method,code} */
  readonly rpcClientRequests: Counter<"target" | "method" | "code">;
  /** paygate_rpc_client_duration_seconds{service,target,method,code} */
  readonly rpcClientDuration: Histogram<"target" | "method" | "code">;
}

export interface CreateMetricsOptions {
  /**
   * Node's process_* and nodejs_* metrics under their standard names (no prefix),
   * so stock dashboards and `process_cpu_seconds_total` work. Default true.
   */
  readonly defaultMetrics?: boolean;
}

/** 0.5 ms .. 10 s: a local SQLite-backed call is ~1 ms, a prepare timeout is seconds. */
export const RPC_DURATION_BUCKETS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
/** 50 µs .. 1 s: a cached flush is sub-millisecond, a real disk 1-20 ms, a sick one more. */
export const FSYNC_DURATION_BUCKETS: readonly number[] = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
];
export const SETTLEMENT_BATCH_BUCKETS: readonly number[] = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];
/** 1 s .. 7 days: the authorization hold lives 7 days, settlement normally runs daily. */
export const SETTLEMENT_LAG_BUCKETS: readonly number[] = [
  1,
  10,
  60,
  300,
  900,
  3600,
  4 * 3600,
  12 * 3600,
  86400,
  2 * 86400,
  4 * 86400,
  7 * 86400,
];

/** The registry for one process and the shared RPC metrics. */
export function createMetrics(service: string, options: CreateMetricsOptions = {}): Metrics {
  if (!/^[a-z][a-z0-9-]*$/.test(service))
    throw new Error(`service name must be lower-kebab-case, got ${JSON.stringify(service)}`);
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    service,
    registry,
    rpcServerRequests: new Counter({
      name: "paygate_rpc_server_requests_total",
      help: "RPCs handled, by method (package.Service/Method) and Connect code (ok, invalid_argument, ...). Streams count on completion.",
      labelNames: ["method", "code"],
      registers,
    }),
    rpcServerDuration: new Histogram({
      name: "paygate_rpc_server_duration_seconds",
      help: "Time from the request reaching the interceptors to the response (or stream) completing.",
      labelNames: ["method", "code"],
      buckets: [...RPC_DURATION_BUCKETS],
      registers,
    }),
    rpcClientRequests: new Counter({
      name: "paygate_rpc_client_requests_total",
      help: "RPCs made to another service (target), by method and Connect code.",
      labelNames: ["target", "method", "code"],
      registers,
    }),
    rpcClientDuration: new Histogram({
      name: "paygate_rpc_client_duration_seconds",
      help: "Client-observed RPC latency, including the network and the peer's queueing.",
      labelNames: ["target", "method", "code"],
      buckets: [...RPC_DURATION_BUCKETS],
      registers,
    }),
  };
}

// ---- small typed facades: label values are checked by the compiler, so a typo
// ---- cannot silently break a dashboard query.

type LabelSet = Record<string, string>;

export interface LabeledCounter<L extends LabelSet> {
  inc(labels: L, value?: number): void;
}
export interface PlainCounter {
  inc(value?: number): void;
}
export interface LabeledHistogram<L extends LabelSet> {
  observe(labels: L, value: number): void;
  /** Starts a timer; calling the result observes the elapsed seconds and returns them. */
  startTimer(labels: L): () => number;
}
export interface PlainHistogram {
  observe(value: number): void;
  startTimer(): () => number;
  /** Runs fn (synchronously, e.g. a better-sqlite3 transaction) and observes its duration, also when it throws. */
  time<T>(fn: () => T): T;
}
export interface PlainGauge {
  set(value: number): void;
}

function labeledCounter<L extends LabelSet>(c: Counter<string>, bound: LabelSet = {}): LabeledCounter<L> {
  return { inc: (labels, value = 1) => c.inc({ ...bound, ...labels }, value) };
}

function plainHistogram(h: Histogram<string>, bound: LabelSet = {}): PlainHistogram {
  return {
    observe: (value) => h.observe(bound, value),
    startTimer: () => h.startTimer(bound),
    time<T>(fn: () => T): T {
      const end = h.startTimer(bound);
      try {
        return fn();
      } finally {
        end();
      }
    },
  };
}

// ------------------------------------------------------------------ gateway

/**
 * Two gauges read from one probe per scrape: the first gauge's collect starts
 * it (registration order), the second reuses it and ends the scrape's share.
 * A probe that fails keeps the last figures: the store's own alerts say why.
 */
function scrapeProbe<T>(probe: () => T | Promise<T>, initial: T): { read(): Promise<T>; readLast(): Promise<T> } {
  let sample: Promise<T> | undefined;
  let last = initial;
  const read = (): Promise<T> =>
    (sample ??= Promise.resolve()
      .then(() => probe())
      .then(
        (s) => (last = s),
        () => last,
      ));
  return {
    read,
    async readLast() {
      const s = await read();
      sample = undefined;
      return s;
    },
  };
}

export type TransferLabels = { outcome: "committed" } | { outcome: "aborted"; reason: string };
export type TwoPcPhase = "claim" | "prepare" | "decision_log" | "commit";
export type IdempotencyResult = "hit" | "miss" | "conflict" | "in_flight";
export type CardAuthorizationLabels = { outcome: "approved" } | { outcome: "declined"; code: string };

export interface InDoubtSample {
  /** Transactions the coordinator has started preparing but not yet resolved at every participant. */
  readonly count: number;
  /** Age of the oldest of them (0 when count is 0). */
  readonly oldestAgeSeconds: number;
}

export interface WebhookBacklogSample {
  /** Deliveries waiting (PENDING). */
  readonly backlog: number;
  /** Age of the oldest undelivered event (0 when none). */
  readonly oldestPendingAgeSeconds: number;
}

export type WebhookAttemptOutcome = "delivered" | "retry" | "failed";
/** 10 ms .. 30 s: a local receiver answers in milliseconds, a stuck one runs into the timeout (5 s by default). */
export const WEBHOOK_ATTEMPT_BUCKETS: readonly number[] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface GatewayMetricsOptions {
  /** Read at every scrape (the webhook store's stats); without it both webhook gauges read 0. */
  readonly webhooks?: () => WebhookBacklogSample | Promise<WebhookBacklogSample>;
  /** Exported as paygate_2pc_prepare_timeout_seconds so alert rules can scale with it. */
  readonly prepareTimeoutMs?: number;
  /** Read at every scrape; without it, set inDoubtTransactions/inDoubtOldestAgeSeconds yourself. */
  readonly inDoubt?: () => InDoubtSample | Promise<InDoubtSample>;
  /** The configured participants: their per-bank series start at 0 instead of appearing on the first event. */
  readonly banks?: readonly string[];
}

export interface GatewayMetrics {
  /** paygate_transfers_total{outcome,reason}: one per finished transfer; reason from the error table (participant_timeout = timed out). */
  readonly transfers: LabeledCounter<TransferLabels>;
  /** paygate_2pc_phase_duration_seconds{phase}: claim = the durable idempotency claim; prepare = all votes in; decision_log = the durable decision write; commit = all acks (behind the reply). */
  readonly phaseDuration: LabeledHistogram<{ phase: TwoPcPhase }>;
  /** paygate_2pc_in_doubt_transactions */
  readonly inDoubtTransactions: PlainGauge;
  /** paygate_2pc_in_doubt_oldest_age_seconds: what the stuck-transaction alert watches. */
  readonly inDoubtOldestAgeSeconds: PlainGauge;
  /** paygate_2pc_redrive_attempts_total{decision}: each background re-send of a decision. */
  readonly redriveAttempts: LabeledCounter<{ decision: "commit" | "abort" }>;
  /** paygate_2pc_unknown_txn_total{bank}: a participant said it never saw a txn we decided to commit. Must stay 0. */
  readonly unknownTxn: LabeledCounter<{ bank: string }>;
  /** paygate_idempotency_total{result} */
  readonly idempotency: LabeledCounter<{ result: IdempotencyResult }>;
  /** paygate_idempotency_redis_errors_total: Redis failed and the durable store answered instead. */
  readonly idempotencyRedisErrors: PlainCounter;
  /** paygate_card_authorizations_total{outcome,code}: code is the decline code (insufficient_funds, risk_declined, ...). */
  readonly cardAuthorizations: LabeledCounter<CardAuthorizationLabels>;
  /** paygate_settlement_batch_items: items per SettleBatch call. */
  readonly settlementBatchItems: PlainHistogram;
  /** paygate_settlement_lag_seconds: per captured item, capture time minus authorization time. */
  readonly settlementLagSeconds: PlainHistogram;
  /** paygate_reconcile_conserved: 1 after a reconcile that proved conservation, 0 after one that did not; absent before the first. */
  readonly reconcileConserved: { set(conserved: boolean): void };
  /** paygate_webhook_attempts_total{outcome}: each recorded delivery attempt (retry = failed, tried again later; failed = given up). */
  readonly webhookAttempts: LabeledCounter<{ outcome: WebhookAttemptOutcome }>;
  /** paygate_webhook_attempt_duration_seconds: each attempt, from sending to the answer (or the timeout). */
  readonly webhookAttemptDuration: PlainHistogram;
}

export function createGatewayMetrics(registry: Registry, options: GatewayMetricsOptions = {}): GatewayMetrics {
  // Registered in this order (the /metrics order, and the order scrapeProbe's pairs of gauges rely on).
  const registers = [registry];
  return {
    ...transferMetrics(registers),
    ...inDoubtMetrics(registers, options),
    ...participantMetrics(registers, options),
    ...idempotencyMetrics(registers),
    ...cardMetrics(registers),
    ...webhookMetrics(registers, options),
  };
}

/** Finished transfers and the duration of each two-phase-commit phase. */
function transferMetrics(registers: Registry[]): Pick<GatewayMetrics, "transfers" | "phaseDuration"> {
  const transfers = new Counter({
    name: "paygate_transfers_total",
    help: "Finished transfers by outcome; aborted ones by reason from the error table.",
    labelNames: ["outcome", "reason"],
    registers,
  });
  transfers.inc({ outcome: "committed" }, 0);
  const phase = new Histogram({
    name: "paygate_2pc_phase_duration_seconds",
    help: "Two-phase commit phases: prepare (send to all votes in), decision_log (durable decision write), commit (send to all acks).",
    labelNames: ["phase"],
    buckets: [...RPC_DURATION_BUCKETS],
    registers,
  });
  for (const p of ["claim", "prepare", "decision_log", "commit"] as const) phase.zero({ phase: p });
  return {
    transfers: labeledCounter(transfers),
    phaseDuration: {
      observe: (labels, value) => phase.observe(labels, value),
      startTimer: (labels) => phase.startTimer(labels),
    },
  };
}

/** What the stuck-transaction alert watches, and the timeout it scales with. */
function inDoubtMetrics(
  registers: Registry[],
  options: GatewayMetricsOptions,
): Pick<GatewayMetrics, "inDoubtTransactions" | "inDoubtOldestAgeSeconds"> {
  const inDoubt = options.inDoubt && scrapeProbe(options.inDoubt, { count: 0, oldestAgeSeconds: 0 });
  const inDoubtCount = new Gauge({
    name: "paygate_2pc_in_doubt_transactions",
    help: "Transactions started but not yet resolved (committed or aborted) at every participant.",
    registers,
    ...(inDoubt && {
      async collect(this: Gauge) {
        this.set((await inDoubt.read()).count);
      },
    }),
  });
  const inDoubtAge = new Gauge({
    name: "paygate_2pc_in_doubt_oldest_age_seconds",
    help: "Age of the oldest in-doubt transaction; 0 when there is none.",
    registers,
    ...(inDoubt && {
      async collect(this: Gauge) {
        this.set((await inDoubt.readLast()).oldestAgeSeconds);
      },
    }),
  });
  const timeout = new Gauge({
    name: "paygate_2pc_prepare_timeout_seconds",
    help: "Configured prepare timeout (PREPARE_TIMEOUT_MS).",
    registers,
  });
  if (options.prepareTimeoutMs !== undefined) timeout.set(options.prepareTimeoutMs / 1000);
  return {
    inDoubtTransactions: { set: (v) => inDoubtCount.set(v) },
    inDoubtOldestAgeSeconds: { set: (v) => inDoubtAge.set(v) },
  };
}

/** Decisions re-sent to participants, and commits a participant did not know (must stay 0). */
function participantMetrics(
  registers: Registry[],
  options: GatewayMetricsOptions,
): Pick<GatewayMetrics, "redriveAttempts" | "unknownTxn"> {
  const redrive = new Counter({
    name: "paygate_2pc_redrive_attempts_total",
    help: "Background re-sends of a logged decision to a participant that has not acknowledged it.",
    labelNames: ["decision"],
    registers,
  });
  redrive.inc({ decision: "commit" }, 0);
  redrive.inc({ decision: "abort" }, 0);
  const unknownTxn = new Counter({
    name: "paygate_2pc_unknown_txn_total",
    help: "Commits a participant rejected as an unknown transaction. Never expected: page.",
    labelNames: ["bank"],
    registers,
  });
  for (const bank of options.banks ?? []) unknownTxn.inc({ bank }, 0);
  return { redriveAttempts: labeledCounter(redrive), unknownTxn: labeledCounter(unknownTxn) };
}

function idempotencyMetrics(registers: Registry[]): Pick<GatewayMetrics, "idempotency" | "idempotencyRedisErrors"> {
  const idem = new Counter({
    name: "paygate_idempotency_total",
    help: "Idempotency key lookups: hit (stored response replayed), miss (new), conflict (same key, different request), in_flight.",
    labelNames: ["result"],
    registers,
  });
  for (const r of ["hit", "miss", "conflict", "in_flight"] as const) idem.inc({ result: r }, 0);
  const redisErrors = new Counter({
    name: "paygate_idempotency_redis_errors_total",
    help: "Redis errors on the idempotency fast path (the durable store still guards).",
    registers,
  });
  return { idempotency: labeledCounter(idem), idempotencyRedisErrors: { inc: (v = 1) => redisErrors.inc(v) } };
}

/** Card authorizations and settlement, and the reconcile result (registered on first use). */
function cardMetrics(
  registers: Registry[],
): Pick<GatewayMetrics, "cardAuthorizations" | "settlementBatchItems" | "settlementLagSeconds" | "reconcileConserved"> {
  const cards = new Counter({
    name: "paygate_card_authorizations_total",
    help: "Card authorizations by outcome; declines by decline code.",
    labelNames: ["outcome", "code"],
    registers,
  });
  cards.inc({ outcome: "approved" }, 0);
  const batch = new Histogram({
    name: "paygate_settlement_batch_items",
    help: "Items per settlement batch.",
    buckets: [...SETTLEMENT_BATCH_BUCKETS],
    registers,
  });
  const lag = new Histogram({
    name: "paygate_settlement_lag_seconds",
    help: "Per captured item: capture time minus authorization time.",
    buckets: [...SETTLEMENT_LAG_BUCKETS],
    registers,
  });
  // Registered on the first reconcile: an unlabeled gauge would read 0 before it,
  // and "never reconciled" must not fire the reconcile-failure alert.
  let conserved: Gauge | undefined;
  const conservedGauge = () =>
    (conserved ??= new Gauge({
      name: "paygate_reconcile_conserved",
      help: "1 if the last reconcile proved sum(balances) = sum(deposits), 0 if not; absent before the first.",
      registers,
    }));
  return {
    cardAuthorizations: labeledCounter(cards),
    settlementBatchItems: plainHistogram(batch),
    settlementLagSeconds: plainHistogram(lag),
    reconcileConserved: { set: (ok) => conservedGauge().set(ok ? 1 : 0) },
  };
}

/** The webhook backlog (one store probe per scrape) and each delivery attempt. */
function webhookMetrics(
  registers: Registry[],
  options: GatewayMetricsOptions,
): Pick<GatewayMetrics, "webhookAttempts" | "webhookAttemptDuration"> {
  const webhooks = scrapeProbe(options.webhooks ?? (() => ({ backlog: 0, oldestPendingAgeSeconds: 0 })), {
    backlog: 0,
    oldestPendingAgeSeconds: 0,
  });
  new Gauge({
    name: "paygate_webhook_backlog",
    help: "Webhook deliveries waiting to be delivered (pending, in the shared store).",
    registers,
    async collect(this: Gauge) {
      this.set((await webhooks.read()).backlog);
    },
  });
  new Gauge({
    name: "paygate_webhook_oldest_pending_age_seconds",
    help: "Age of the oldest event with an undelivered webhook; 0 when none. What the stuck-webhook alert watches.",
    registers,
    async collect(this: Gauge) {
      this.set((await webhooks.readLast()).oldestPendingAgeSeconds);
    },
  });
  const webhookAttempts = new Counter({
    name: "paygate_webhook_attempts_total",
    help: "Webhook delivery attempts by outcome: delivered (2xx), retry (failed, tried again later), failed (given up).",
    labelNames: ["outcome"],
    registers,
  });
  for (const outcome of ["delivered", "retry", "failed"] as const) webhookAttempts.inc({ outcome }, 0);
  const webhookDuration = new Histogram({
    name: "paygate_webhook_attempt_duration_seconds",
    help: "Webhook delivery attempts, from sending to the answer or the timeout.",
    buckets: [...WEBHOOK_ATTEMPT_BUCKETS],
    registers,
  });
  return { webhookAttempts: labeledCounter(webhookAttempts), webhookAttemptDuration: plainHistogram(webhookDuration) };
}

// --------------------------------------------------------------------- bank

export interface BankMetricsProbes {
  /** Size of the SQLite files (db + -wal), read at every scrape. */
  readonly sqliteBytes?: () => number;
  /** Held minor units per currency; return every currency the bank has (0 included). */
  readonly heldMinor?: () => Iterable<readonly [currency: string, amountMinor: bigint]>;
  /** Number of txns in PREPARED state. */
  readonly preparedTransactions?: () => number;
}

export interface BankMetrics {
  /** paygate_bank_prepare_votes_total{bank,vote,reason} */
  readonly prepareVotes: LabeledCounter<{ vote: "yes" } | { vote: "no"; reason: string }>;
  /** paygate_bank_decisions_total{bank,decision}: commits and aborts applied (first time only, not idempotent repeats). */
  readonly decisions: LabeledCounter<{ decision: "commit" | "abort" }>;
  /** paygate_bank_ledger_entries_total{bank,direction,currency} and paygate_bank_ledger_volume_minor_total{...}: one call per posted journal entry. */
  readonly ledger: { post(labels: { direction: "debit" | "credit"; currency: string }, amountMinor: bigint): void };
  /** paygate_bank_fsync_duration_seconds{bank}: each durable write transaction (commit includes the fsync). */
  readonly fsyncDuration: PlainHistogram;
  /** paygate_bank_sqlite_bytes{bank} */
  readonly sqliteBytes: PlainGauge;
  /** paygate_bank_held_minor{bank,currency} */
  readonly heldMinor: { set(currency: string, amountMinor: bigint): void };
  /** paygate_bank_prepared_transactions{bank} */
  readonly preparedTransactions: PlainGauge;
}

export function createBankMetrics(registry: Registry, bank: string, probes: BankMetricsProbes = {}): BankMetrics {
  // Registered in this order (the /metrics order): what flows first, then the gauges read at each scrape.
  const registers = [registry];
  const b = { bank };
  return { ...bankFlowMetrics(registers, b), ...bankStateGauges(registers, b, probes) };
}

/** Votes, decisions, posted entries and each durable write. */
function bankFlowMetrics(
  registers: Registry[],
  b: { bank: string },
): Pick<BankMetrics, "prepareVotes" | "decisions" | "ledger" | "fsyncDuration"> {
  const votes = new Counter({
    name: "paygate_bank_prepare_votes_total",
    help: "Prepare votes cast; NO votes by reason.",
    labelNames: ["bank", "vote", "reason"],
    registers,
  });
  votes.inc({ ...b, vote: "yes" }, 0);
  const decisions = new Counter({
    name: "paygate_bank_decisions_total",
    help: "Decisions applied to prepared transactions.",
    labelNames: ["bank", "decision"],
    registers,
  });
  decisions.inc({ ...b, decision: "commit" }, 0);
  decisions.inc({ ...b, decision: "abort" }, 0);
  const entries = new Counter({
    name: "paygate_bank_ledger_entries_total",
    help: "Journal entries posted.",
    labelNames: ["bank", "direction", "currency"],
    registers,
  });
  const volume = new Counter({
    name: "paygate_bank_ledger_volume_minor_total",
    help: "Minor units posted (float: exact below 2^53).",
    labelNames: ["bank", "direction", "currency"],
    registers,
  });
  const fsync = new Histogram({
    name: "paygate_bank_fsync_duration_seconds",
    help: "Duration of each durable (synchronous=FULL) write transaction.",
    labelNames: ["bank"],
    buckets: [...FSYNC_DURATION_BUCKETS],
    registers,
  });
  fsync.zero(b);
  return {
    prepareVotes: labeledCounter(votes, b),
    decisions: labeledCounter(decisions, b),
    ledger: {
      post(labels, amountMinor) {
        entries.inc({ ...b, ...labels });
        volume.inc({ ...b, ...labels }, Number(amountMinor));
      },
    },
    fsyncDuration: plainHistogram(fsync, b),
  };
}

/** The ledger's size, holds and PREPARED count, from the probes when given. */
function bankStateGauges(
  registers: Registry[],
  b: { bank: string },
  probes: BankMetricsProbes,
): Pick<BankMetrics, "sqliteBytes" | "heldMinor" | "preparedTransactions"> {
  const { sqliteBytes, heldMinor, preparedTransactions } = probes;
  const size = new Gauge({
    name: "paygate_bank_sqlite_bytes",
    help: "Bytes of the SQLite database including its WAL.",
    labelNames: ["bank"],
    registers,
    ...(sqliteBytes && {
      collect(this: Gauge<"bank">) {
        this.set(b, sqliteBytes());
      },
    }),
  });
  size.set(b, 0);
  const held = new Gauge({
    name: "paygate_bank_held_minor",
    help: "Minor units held (prepared debits and card authorization holds), per currency.",
    labelNames: ["bank", "currency"],
    registers,
    ...(heldMinor && {
      collect(this: Gauge<"bank" | "currency">) {
        this.reset();
        for (const [currency, amount] of heldMinor()) this.set({ ...b, currency }, Number(amount));
      },
    }),
  });
  const prepared = new Gauge({
    name: "paygate_bank_prepared_transactions",
    help: "Transactions in PREPARED state (holding funds, waiting for a decision).",
    labelNames: ["bank"],
    registers,
    ...(preparedTransactions && {
      collect(this: Gauge<"bank">) {
        this.set(b, preparedTransactions());
      },
    }),
  });
  prepared.set(b, 0);
  return {
    sqliteBytes: { set: (v) => size.set(b, v) },
    heldMinor: { set: (currency, amountMinor) => held.set({ ...b, currency }, Number(amountMinor)) },
    preparedTransactions: { set: (v) => prepared.set(b, v) },
  };
}
