// The gateway process: config -> storage -> seed -> recovery -> server.
// "listening" is logged only once recovery has run, so a supervisor (or a
// test) that waits for it knows every in-doubt decision is being redriven.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { loadConfigOrExit } from "@paygate/config";
import { createFaults } from "@paygate/faults";
import { createAccessInterceptor, createLoggingInterceptor, createLogger, startRpcServer, type Logger } from "@paygate/rpc";
import { loadSeedFile, SeedError } from "@paygate/seed";
import {
  createClientMetricsInterceptor,
  createGatewayMetrics,
  createMetrics,
  createMetricsInterceptor,
  createTraceClientInterceptor,
  createTraceServerInterceptor,
  startOpsServer,
  startTracing,
  traceLogFields,
} from "@paygate/telemetry";
import { gatewayAccessTable } from "./access.js";
import { createBankClients } from "./banks.js";
import { loadConfig, type GatewayConfig } from "./config.js";
import { createAdmin } from "./domain/admin.js";
import { createAuth } from "./domain/auth.js";
import { createCoordinator } from "./domain/coordinator.js";
import { createDecidedFeed } from "./domain/decided-feed.js";
import { createBureauClient } from "./bureau.js";
import { createCardHasher } from "./domain/cards-crypto.js";
import { createCards } from "./domain/cards.js";
import { createSqliteCardStore } from "./store/cards-store.js";
import { loadOrCreateCardSecret } from "./store/cards-secret.js";
import { hashPassword } from "./domain/password.js";
import { createPaymentQueries } from "./domain/payments.js";
import { setupIdempotency } from "./idempotency/setup.js";
import { systemClock } from "./domain/ports.js";
import { createRoutes } from "./routes.js";
import { createSqliteCoordinatorLog } from "./store/coordinator-log.js";
import { openDb } from "./store/db.js";
import { createSqliteDirectory } from "./store/directory.js";
import { loadSeedOnce } from "./store/seed.js";
import { createSqliteSessions, createSqliteUsers } from "./store/users.js";

const SHUTDOWN_GRACE_MS = 5_000;
const SESSION_PURGE_INTERVAL_MS = 60_000;
const SESSION_PURGE_BATCH_MAX = 1_000;

async function main(): Promise<void> {
  const config: GatewayConfig = loadConfigOrExit(loadConfig, process.env);
  const log = createLogger("gateway", config.logLevel, { mixin: traceLogFields });
  const tracing = startTracing({ service: "gateway", endpoint: config.otlpEndpoint });
  const metrics = createMetrics("gateway");
  process.on("unhandledRejection", (e) => crash(log, e, "unhandled rejection"));
  process.on("uncaughtException", (e) => crash(log, e, "uncaught exception"));

  const db = openDb(config.dbFile);
  const clock = systemClock;

  if (existsSync(config.seedFile)) {
    try {
      const seed = loadSeedFile(config.seedFile);
      for (const b of seed.banks) if (!config.banks.has(b)) log.warn({ bank: b }, "seed names a bank that BANKS does not configure");
      const report = await loadSeedOnce(db, seed, (pw) => hashPassword(pw), clock.nowMs());
      if (report.loaded) log.info({ users: report.users, accounts: report.accounts, file: config.seedFile }, "seed loaded");
    } catch (e) {
      if (!(e instanceof SeedError)) throw e;
      process.stderr.write(`gateway: ${e.message}\n`);
      db.close();
      process.exit(2);
    }
  } else {
    log.warn({ file: config.seedFile }, "seed file not found; starting without seed data");
  }

  const coordinatorLog = createSqliteCoordinatorLog(db);
  const gatewayMetrics = createGatewayMetrics(metrics.registry, {
    prepareTimeoutMs: config.prepareTimeoutMs,
    banks: [...config.banks.keys()],
    inDoubt: () => coordinatorLog.inDoubtSummary(clock.nowMs()),
  });
  // Before recovery, so a slow recovery is visible: /metrics answers, /readyz says 503.
  let ready = false;
  const ops = await startOpsServer({ host: config.host, port: config.metricsPort, registry: metrics.registry, isReady: () => ready, logger: log });
  const directory = createSqliteDirectory(db);
  const users = createSqliteUsers(db);
  const sessions = createSqliteSessions(db);
  const feed = createDecidedFeed();
  const { participants, ledgers } = createBankClients({
    banks: config.banks,
    tls: config.tls,
    logger: log,
    ledgerTimeoutMs: config.prepareTimeoutMs,
    batching: config.participantBatchMax === 0 ? undefined : { itemsMax: config.participantBatchMax, inflightMax: config.participantBatchInflight, prepareTimeoutMs: config.prepareTimeoutMs, decisionTimeoutMs: config.commitTimeoutMs },
    interceptors: (bank) => [createTraceClientInterceptor(tracing.tracer), createClientMetricsInterceptor(metrics, bank)],
  });

  const coordinator = createCoordinator({
    replica: config.replica,
    log: coordinatorLog,
    directory,
    participants,
    clock,
    faults: createFaults(config.faultPoints),
    feed,
    logger: log,
    metrics: gatewayMetrics,
    prepareTimeoutMs: config.prepareTimeoutMs,
    commitTimeoutMs: config.commitTimeoutMs,
    redriveIntervalMs: config.redriveIntervalMs,
    redriveBackoffMaxMs: config.redriveBackoffMaxMs,
  });
  const auth = createAuth({
    users,
    sessions,
    clock,
    sessionTtlMs: config.sessionTtlMs,
    loginFailuresMax: config.loginFailuresMax,
    loginLockoutMs: config.loginLockoutMs,
    dummyPasswordHash: await hashPassword(randomBytes(16).toString("hex")),
  });
  const payments = createPaymentQueries({ directory, history: coordinatorLog, ledgers, feed });
  const admin = createAdmin({
    users,
    directory,
    ledgers,
    log: coordinatorLog,
    banks: [...config.banks.keys()],
    clock,
    hashPassword: (pw) => hashPassword(pw),
    reconcileTimeoutMs: config.prepareTimeoutMs,
    metrics: gatewayMetrics,
  });

  // Repeats of a finished transfer are answered from Redis when REDIS_URL is set; the log stays the guard.
  const idempotency = setupIdempotency(config, { coordinator, directory, logger: log, metrics: gatewayMetrics });

  const cards = createCards({
    store: createSqliteCardStore(db),
    rounds: coordinator,
    directory,
    bureau: createBureauClient({
      url: config.cards.creditBureauUrl,
      tls: config.tls,
      timeoutMs: config.cards.creditBureauTimeoutMs,
      interceptors: [createTraceClientInterceptor(tracing.tracer), createClientMetricsInterceptor(metrics, "credit-bureau")],
    }),
    hasher: createCardHasher(loadOrCreateCardSecret(config.dataDir)),
    clock,
    logger: log,
    risk: {
      scoreMin: config.cards.riskScoreMin,
      reviewAmountMinor: config.cards.riskAmountReviewMinor,
      reviewScoreMin: config.cards.riskReviewScoreMin,
      dailySpendMaxMinor: config.cards.cardDailySpendMaxMinor,
    },
    authHoldTtlMs: config.cards.authHoldTtlMs,
  });

  const recovery = await coordinator.recover();
  log.info({ ...recovery, replica: config.replica }, "recovery done");
  // After the coordinator's: card rounds settle against the same decision log.
  const cardRecovery = cards.recover();
  log.info({ ...cardRecovery }, "card recovery done");

  const server = await startRpcServer({
    host: config.host,
    port: config.port,
    tls: config.tls,
    routes: createRoutes({ auth, coordinator: idempotency.coordinator, payments, admin, cards }),
    // Trace outermost so the log line carries the trace id; metrics outside access control so refusals count.
    interceptors: [
      createTraceServerInterceptor(tracing.tracer),
      createLoggingInterceptor(log),
      createMetricsInterceptor(metrics),
      createAccessInterceptor(gatewayAccessTable, async (token) => auth.authenticate(token)),
    ],
    logger: log,
  });
  const stopRedrive = coordinator.startRedrive({ backlog: recovery.backlog });
  const stopCardExpiry = cards.startExpiry(config.cards.authExpiryIntervalMs);
  const purge = setInterval(() => sessions.purgeExpired(clock.nowMs(), SESSION_PURGE_BATCH_MAX), SESSION_PURGE_INTERVAL_MS);
  purge.unref();
  ready = true;
  log.info({ port: server.port, metricsPort: ops.port, host: config.host, replica: config.replica, banks: [...config.banks.keys()], tracing: tracing.enabled }, "listening");

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    ready = false; // load balancers stop sending first
    log.info({ signal }, "shutting down");
    clearInterval(purge);
    await server.close(SHUTDOWN_GRACE_MS);
    await stopRedrive();
    await stopCardExpiry();
    await idempotency.close();
    // Before the database: the in-doubt probe reads it.
    await ops.close();
    coordinatorLog.flush(); // queued acknowledgements (group commit)
    db.close();
    await tracing.shutdown();
    log.info({}, "stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

function crash(log: Logger, e: unknown, what: string): never {
  // A broken invariant or an unexpected failure: stop here; recovery on restart takes over.
  log.fatal({ err: e instanceof Error ? { message: e.message, stack: e.stack } : String(e) }, what);
  process.exit(1);
}

await main();
