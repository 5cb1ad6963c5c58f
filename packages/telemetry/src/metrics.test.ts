import assert from "node:assert/strict";
import { test } from "node:test";
import type { Registry } from "prom-client";
import { createBankMetrics, createGatewayMetrics, createMetrics } from "./metrics.js";

/** The value of one series in the exposition text (what Prometheus sees), matched on exactly these labels. */
async function value(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const want = JSON.stringify(Object.entries(labels).sort());
  const hits: number[] = [];
  for (const line of (await registry.metrics()).split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = [...(m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]);
    if (JSON.stringify(got.sort()) === want) hits.push(Number(m[3]));
  }
  assert.ok(hits.length <= 1, `at most one series of ${name} matches ${want}`);
  return hits[0];
}

test("createMetrics: standard process metrics, the service as a default label, the four RPC metrics", async () => {
  const m = createMetrics("gateway");
  const text = await m.registry.metrics();
  assert.match(text, /^process_cpu_user_seconds_total\{service="gateway"\} /m);
  assert.match(text, /^nodejs_eventloop_lag_seconds\{service="gateway"\} /m);
  m.rpcServerRequests.inc({ method: "paygate.gateway.v1.PaymentService/Transfer", code: "ok" });
  m.rpcClientRequests.inc({
    target: "bank-a",
    method: "paygate.bank.v1.ParticipantService/Prepare",
    code: "unavailable",
  });
  assert.equal(
    await value(m.registry, "paygate_rpc_server_requests_total", {
      method: "paygate.gateway.v1.PaymentService/Transfer",
      code: "ok",
      service: "gateway",
    }),
    1,
  );
  assert.equal(
    await value(m.registry, "paygate_rpc_client_requests_total", {
      target: "bank-a",
      method: "paygate.bank.v1.ParticipantService/Prepare",
      code: "unavailable",
      service: "gateway",
    }),
    1,
  );
  for (const name of ["paygate_rpc_server_duration_seconds", "paygate_rpc_client_duration_seconds"])
    assert.ok(m.registry.getSingleMetric(name), name);
});

test("createMetrics: no default metrics when asked, and a bad service name is refused", async () => {
  const m = createMetrics("bank-a", { defaultMetrics: false });
  assert.doesNotMatch(await m.registry.metrics(), /process_cpu/);
  assert.throws(() => createMetrics("Bank A"), /lower-kebab-case/);
});

test("gateway metrics: counters record labelled values, known label sets start at zero", async () => {
  const { registry } = createMetrics("gateway", { defaultMetrics: false });
  const g = createGatewayMetrics(registry, { prepareTimeoutMs: 2500, banks: ["bank-a", "bank-b"] });
  const s = { service: "gateway" };
  // Zero series exist before any traffic, so rate() and the dashboards have data from the first scrape.
  assert.equal(await value(registry, "paygate_transfers_total", { ...s, outcome: "committed" }), 0);
  for (const result of ["hit", "miss", "conflict", "in_flight"])
    assert.equal(await value(registry, "paygate_idempotency_total", { ...s, result }), 0);
  assert.equal(await value(registry, "paygate_2pc_redrive_attempts_total", { ...s, decision: "abort" }), 0);
  assert.equal(await value(registry, "paygate_2pc_prepare_timeout_seconds", s), 2.5);
  assert.equal(await value(registry, "paygate_2pc_unknown_txn_total", { ...s, bank: "bank-a" }), 0);

  g.transfers.inc({ outcome: "committed" });
  g.transfers.inc({ outcome: "committed" });
  g.transfers.inc({ outcome: "aborted", reason: "insufficient_funds" });
  g.idempotency.inc({ result: "hit" });
  g.idempotencyRedisErrors.inc();
  g.cardAuthorizations.inc({ outcome: "declined", code: "risk_declined" });
  g.redriveAttempts.inc({ decision: "commit" }, 3);
  g.unknownTxn.inc({ bank: "bank-b" });
  assert.equal(await value(registry, "paygate_transfers_total", { ...s, outcome: "committed" }), 2);
  assert.equal(
    await value(registry, "paygate_transfers_total", { ...s, outcome: "aborted", reason: "insufficient_funds" }),
    1,
  );
  assert.equal(await value(registry, "paygate_idempotency_total", { ...s, result: "hit" }), 1);
  assert.equal(await value(registry, "paygate_idempotency_redis_errors_total", s), 1);
  assert.equal(
    await value(registry, "paygate_card_authorizations_total", { ...s, outcome: "declined", code: "risk_declined" }),
    1,
  );
  assert.equal(await value(registry, "paygate_2pc_redrive_attempts_total", { ...s, decision: "commit" }), 3);
  assert.equal(await value(registry, "paygate_2pc_unknown_txn_total", { ...s, bank: "bank-b" }), 1);
  assert.equal(await value(registry, "paygate_2pc_unknown_txn_total", { ...s, bank: "bank-a" }), 0);
});

test("gateway metrics: histograms observe into the right buckets", async () => {
  const { registry } = createMetrics("gateway", { defaultMetrics: false });
  const g = createGatewayMetrics(registry);
  g.phaseDuration.observe({ phase: "decision_log" }, 0.0007);
  g.settlementBatchItems.observe(40);
  g.settlementLagSeconds.observe(90_000);
  const s = { service: "gateway" };
  const bucket = (name: string, le: string, labels: Record<string, string> = {}) =>
    value(registry, `${name}_bucket`, { ...s, ...labels, le });
  assert.equal(await bucket("paygate_2pc_phase_duration_seconds", "0.0005", { phase: "decision_log" }), 0);
  assert.equal(await bucket("paygate_2pc_phase_duration_seconds", "0.001", { phase: "decision_log" }), 1);
  assert.equal(await value(registry, "paygate_2pc_phase_duration_seconds_count", { ...s, phase: "prepare" }), 0);
  assert.equal(await bucket("paygate_settlement_batch_items", "25"), 0);
  assert.equal(await bucket("paygate_settlement_batch_items", "50"), 1);
  assert.equal(await bucket("paygate_settlement_lag_seconds", "86400"), 0);
  assert.equal(await bucket("paygate_settlement_lag_seconds", "172800"), 1);
});

test("gateway metrics: the reconcile gauge is absent until the first reconcile, then 1 or 0", async () => {
  const { registry } = createMetrics("gateway", { defaultMetrics: false });
  const g = createGatewayMetrics(registry);
  assert.doesNotMatch(await registry.metrics(), /paygate_reconcile_conserved/);
  g.reconcileConserved.set(true);
  assert.equal(await value(registry, "paygate_reconcile_conserved", { service: "gateway" }), 1);
  g.reconcileConserved.set(false);
  assert.equal(await value(registry, "paygate_reconcile_conserved", { service: "gateway" }), 0);
});

test("gateway metrics: the in-doubt probe is read once per scrape and feeds both gauges", async () => {
  const { registry } = createMetrics("gateway", { defaultMetrics: false });
  let calls = 0;
  let sample = { count: 0, oldestAgeSeconds: 0 };
  createGatewayMetrics(registry, {
    inDoubt: () => {
      calls += 1;
      return sample;
    },
  });
  sample = { count: 3, oldestAgeSeconds: 42.5 };
  const text = await registry.metrics();
  assert.equal(calls, 1);
  assert.match(text, /^paygate_2pc_in_doubt_transactions\{service="gateway"\} 3$/m);
  assert.match(text, /^paygate_2pc_in_doubt_oldest_age_seconds\{service="gateway"\} 42.5$/m);
  sample = { count: 0, oldestAgeSeconds: 0 };
  assert.match(await registry.metrics(), /^paygate_2pc_in_doubt_oldest_age_seconds\{service="gateway"\} 0$/m);
  assert.equal(calls, 2);
});

test("bank metrics: every series carries the bank label; probes are read at scrape", async () => {
  const { registry } = createMetrics("bank-a", { defaultMetrics: false });
  let held: [string, bigint][] = [
    ["EUR", 500n],
    ["USD", 0n],
  ];
  const b = createBankMetrics(registry, "bank-a", {
    sqliteBytes: () => 8192,
    heldMinor: () => held,
    preparedTransactions: () => 2,
  });
  const s = { service: "bank-a", bank: "bank-a" };
  b.prepareVotes.inc({ vote: "yes" });
  b.prepareVotes.inc({ vote: "no", reason: "insufficient_funds" });
  b.decisions.inc({ decision: "commit" });
  assert.equal(await value(registry, "paygate_bank_prepare_votes_total", { ...s, vote: "yes" }), 1);
  assert.equal(
    await value(registry, "paygate_bank_prepare_votes_total", { ...s, vote: "no", reason: "insufficient_funds" }),
    1,
  );
  assert.equal(await value(registry, "paygate_bank_decisions_total", { ...s, decision: "commit" }), 1);
  assert.equal(await value(registry, "paygate_bank_decisions_total", { ...s, decision: "abort" }), 0);
  assert.equal(await value(registry, "paygate_bank_sqlite_bytes", s), 8192);
  assert.equal(await value(registry, "paygate_bank_prepared_transactions", s), 2);
  assert.equal(await value(registry, "paygate_bank_held_minor", { ...s, currency: "EUR" }), 500);
  assert.equal(await value(registry, "paygate_bank_held_minor", { ...s, currency: "USD" }), 0);
  // A currency the probe stops reporting disappears instead of keeping a stale value.
  held = [["USD", 7n]];
  assert.equal(await value(registry, "paygate_bank_held_minor", { ...s, currency: "EUR" }), undefined);
  assert.equal(await value(registry, "paygate_bank_held_minor", { ...s, currency: "USD" }), 7);
});

test("bank metrics: ledger.post counts entries and volume; fsync timer observes even when the write throws", async () => {
  const { registry } = createMetrics("bank-b", { defaultMetrics: false });
  const b = createBankMetrics(registry, "bank-b");
  const s = { service: "bank-b", bank: "bank-b" };
  b.ledger.post({ direction: "credit", currency: "USD" }, 1234n);
  b.ledger.post({ direction: "credit", currency: "USD" }, 66n);
  assert.equal(
    await value(registry, "paygate_bank_ledger_entries_total", { ...s, direction: "credit", currency: "USD" }),
    2,
  );
  assert.equal(
    await value(registry, "paygate_bank_ledger_volume_minor_total", { ...s, direction: "credit", currency: "USD" }),
    1300,
  );
  assert.equal(
    b.fsyncDuration.time(() => 7),
    7,
  );
  assert.throws(
    () =>
      b.fsyncDuration.time(() => {
        throw new Error("disk full");
      }),
    /disk full/,
  );
  b.heldMinor.set("EUR", 10n);
  b.sqliteBytes.set(4096);
  assert.equal(await value(registry, "paygate_bank_fsync_duration_seconds_count", s), 2);
  assert.equal(await value(registry, "paygate_bank_held_minor", { ...s, currency: "EUR" }), 10);
  assert.equal(await value(registry, "paygate_bank_sqlite_bytes", s), 4096);
});

test("gateway metrics: webhook gauges come from one store probe per scrape (the last figures if it fails); attempts start at zero per outcome", async () => {
  const { registry } = createMetrics("gateway", { defaultMetrics: false });
  let calls = 0;
  let sample: { backlog: number; oldestPendingAgeSeconds: number } | Error = {
    backlog: 4,
    oldestPendingAgeSeconds: 61.5,
  };
  const g = createGatewayMetrics(registry, {
    webhooks: async () => {
      calls += 1;
      if (sample instanceof Error) throw sample;
      return sample;
    },
  });
  const text = await registry.metrics();
  assert.equal(calls, 1);
  assert.match(text, /^paygate_webhook_backlog\{service="gateway"\} 4$/m);
  assert.match(text, /^paygate_webhook_oldest_pending_age_seconds\{service="gateway"\} 61.5$/m);
  for (const outcome of ["delivered", "retry", "failed"])
    assert.match(
      text,
      new RegExp(`^paygate_webhook_attempts_total\\{outcome="${outcome}",service="gateway"\\} 0$`, "m"),
    );
  assert.match(text, /^paygate_webhook_attempt_duration_seconds_count\{service="gateway"\} 0$/m);
  sample = new Error("store unreachable");
  assert.match(await registry.metrics(), /^paygate_webhook_backlog\{service="gateway"\} 4$/m);
  g.webhookAttempts.inc({ outcome: "retry" });
  g.webhookAttemptDuration.observe(0.02);
  assert.equal(await value(registry, "paygate_webhook_attempts_total", { service: "gateway", outcome: "retry" }), 1);
  assert.equal(
    await value(registry, "paygate_webhook_attempt_duration_seconds_bucket", { service: "gateway", le: "0.025" }),
    1,
  );
  assert.equal(calls, 4);
  const bare = createMetrics("gateway", { defaultMetrics: false });
  createGatewayMetrics(bare.registry);
  assert.match(
    await bare.registry.metrics(),
    /^paygate_webhook_backlog\{service="gateway"\} 0$/m,
    "exists without a probe",
  );
});
