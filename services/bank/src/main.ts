// One bank process: config -> ledger (seed at first start) -> in-doubt
// resolver -> mTLS server -> "listening". The only place that reads process.env.
import { Code } from "@connectrpc/connect";
import { loadConfigOrExit } from "@paygate/config";
import { createFaults } from "@paygate/faults";
import {
  createAccessInterceptor,
  createLogger,
  createLoggingInterceptor,
  startRpcServer,
  type Logger,
} from "@paygate/rpc";
import { loadSeedFile } from "@paygate/seed";
import {
  createBankMetrics,
  createClientMetricsInterceptor,
  createMetrics,
  createMetricsInterceptor,
  createTraceClientInterceptor,
  createTraceServerInterceptor,
  onServiceShutdown,
  runMain,
  startProbes,
  startTracing,
  traceLogFields,
  type BankMetrics,
  type Metrics,
  type Tracing,
} from "@paygate/telemetry";
import { createBank, type Bank } from "./bank.js";
import { loadConfig, type BankConfig } from "./config.js";
import { createDecisionAsker } from "./coordinator-client.js";
import { createHoldExpiry } from "./expiry.js";
import { createResolver, type Resolver } from "./resolver.js";
import { bankAccessTable } from "./access.js";
import { bankRoutes } from "./routes.js";
import { openLedgerStore, type LedgerStore } from "./store/ledger-store.js";

const SHUTDOWN_GRACE_MS = 5_000;
/** Exit code after a broken invariant: the supervisor restarts, recovery takes over. */
const EXIT_INVARIANT = 70;

async function main(): Promise<void> {
  const config = loadConfigOrExit(loadConfig, process.env);
  const log = createLogger("bank", config.logLevel, { mixin: traceLogFields }).child({ bank: config.bankName });
  const tracing = startTracing({ service: config.bankName, endpoint: config.otlpEndpoint });
  const metrics = createMetrics(config.bankName);
  if (config.faultPoints.size > 0)
    log.warn({ faultPoints: [...config.faultPoints] }, "TEST-ONLY fault points are armed");

  const store = openLedgerStore({ dataDir: config.dataDir, bank: config.bankName });
  const bankMetrics = createBankMetrics(metrics.registry, config.bankName, {
    sqliteBytes: () => store.sizeBytes(),
    heldMinor: () => store.heldByCurrency(),
    preparedTransactions: () => store.preparedCount(),
  });
  // Before recovery, so a slow start is visible: /metrics answers, /readyz says 503.
  const ops = await startProbes(config, metrics.registry, log);
  const bank = createLedgerBank(config, store, bankMetrics, log);

  const seeded = bank.loadSeedOnce(() =>
    loadSeedFile(config.seedFile).accounts.filter((a) => a.bank === config.bankName),
  );
  if (seeded !== undefined) log.info({ seedFile: config.seedFile, accounts: seeded }, "first start: seed loaded");
  // Recovery is implicit: PREPARED txns and their holds are rows in the ledger;
  // the resolver's first tick asks about those already past the timeout.
  const inDoubt = store.prepared(1000).length;
  if (inDoubt > 0) log.info({ prepared: inDoubt }, "prepared txns found at start; the resolver will settle them");

  const resolver = createBankResolver(config, bank, store, { log, tracing, metrics });

  const server = await startBankServer(config, bank, { log, tracing, metrics });
  const holdExpiry = createHoldExpiry({
    expireHolds: () => bank.expireHolds(),
    intervalMs: config.holdExpiryIntervalMs,
    logger: log,
  });
  resolver.start();
  holdExpiry.start();
  ops.markReady();
  log.info(
    {
      host: config.host,
      port: server.port,
      metricsPort: ops.port,
      dataDir: config.dataDir,
      coordinatorUrls: config.coordinatorUrls,
      tracing: tracing.enabled,
    },
    "listening",
  );

  // SIGTERM/SIGINT: stop taking work, then stop the loops, the probes and last the ledger.
  onServiceShutdown(log, ops, {
    async drain() {
      await server.close(SHUTDOWN_GRACE_MS);
      await resolver.stop();
      await holdExpiry.stop();
    },
    // After the ops port: its probes read the store.
    release: () => store.close(),
    tracing,
  });
}

interface Telemetry {
  readonly log: Logger;
  readonly tracing: Tracing;
  readonly metrics: Metrics;
}

/** Settles PREPARED transactions past the timeout by asking the coordinators, in URL order. */
function createBankResolver(config: BankConfig, bank: Bank, store: LedgerStore, t: Telemetry): Resolver {
  const { log, tracing, metrics } = t;
  return createResolver({
    preparedBefore: (cutoffMs, limit) => store.preparedBefore(cutoffMs, limit),
    ask: createDecisionAsker({
      urls: config.coordinatorUrls,
      tls: config.tls,
      interceptors: () => [
        createTraceClientInterceptor(tracing.tracer),
        createClientMetricsInterceptor(metrics, "gateway"),
      ],
      onFailover: ({ txnId, coordinator, url, nextUrl, err }) =>
        log.warn(
          { txnId, coordinator, url, nextUrl, code: Code[err.code], err: err.message },
          "GetDecision failed at this coordinator URL; trying the next",
        ),
    }),
    apply(txnId, decision) {
      const r = decision === "commit" ? bank.commit(txnId) : bank.abort(txnId);
      return r.ok ? undefined : r.reason;
    },
    logger: log,
    prepareTimeoutMs: config.prepareTimeoutMs,
    intervalMs: config.resolveIntervalMs,
    backoffMaxMs: config.resolveBackoffMaxMs,
  });
}

/** The bank's rules over its ledger; a broken invariant ends the process (the supervisor restarts it). */
function createLedgerBank(config: BankConfig, store: LedgerStore, bankMetrics: BankMetrics, log: Logger): Bank {
  return createBank({
    name: config.bankName,
    store,
    metrics: bankMetrics,
    faults: createFaults(config.faultPoints),
    linkAttemptsMax: config.linkAttemptsMax,
    onInvariantBroken(err) {
      log.fatal(
        { err: { message: err.message, stack: err.stack } },
        "invariant broken; the write was rolled back; exiting",
      );
      setImmediate(() => process.exit(EXIT_INVARIANT));
    },
  });
}

function startBankServer(config: BankConfig, bank: Bank, t: Telemetry) {
  const { log, tracing, metrics } = t;
  return startRpcServer({
    host: config.host,
    port: config.port,
    tls: config.tls,
    routes: bankRoutes(bank),
    // Trace outermost so the log line carries the trace id; metrics outside access control so refusals count.
    interceptors: [
      createTraceServerInterceptor(tracing.tracer),
      createLoggingInterceptor(log),
      createMetricsInterceptor(metrics),
      createAccessInterceptor(bankAccessTable),
    ],
    logger: log,
  });
}

runMain("bank", main);
