// The gateway process: config -> storage -> seed -> recovery -> server.
// "listening" is logged only once recovery has run, so a supervisor (or a
// test) that waits for it knows every in-doubt decision is being redriven.
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { hostname } from "node:os";
import { loadConfigOrExit } from "@paygate/config";
import { createFaults, type Faults } from "@paygate/faults";
import {
  createAccessInterceptor,
  createLoggingInterceptor,
  createLogger,
  startRpcServer,
  type Logger,
} from "@paygate/rpc";
import { loadSeedFile, SeedError, type Seed } from "@paygate/seed";
import {
  createClientMetricsInterceptor,
  createGatewayMetrics,
  createMetrics,
  createMetricsInterceptor,
  createTraceClientInterceptor,
  createTraceServerInterceptor,
  startProbes,
  startTracing,
  traceLogFields,
  type GatewayMetrics,
  type Metrics,
  type Probes,
  type Tracing,
} from "@paygate/telemetry";
import { gatewayAccessTable } from "./access.js";
import { createBankClients } from "./banks.js";
import { createBankLinkClients } from "./bank-links.js";
import { loadConfig, type GatewayConfig } from "./config.js";
import { createAdmin } from "./domain/admin.js";
import { createAuth } from "./domain/auth.js";
import { createCoordinator, type Coordinator } from "./domain/coordinator.js";
import type { RecoveryReport } from "./domain/rounds/engine.js";
import { createDecidedFeed } from "./domain/decided-feed.js";
import { createBureauClient } from "./bureau.js";
import { createCardHasher } from "./domain/cards-crypto.js";
import { createCards, type Cards } from "./domain/cards.js";
import { createLinks } from "./domain/links.js";
import { createSignUp } from "./domain/sign-up.js";
import { createWebhookDispatcher } from "./domain/webhook-dispatcher.js";
import { transferEvent } from "./domain/webhook-events.js";
import type { HostPort, WebhookUrlPolicy } from "./domain/webhook-urls.js";
import { createWebhooks, newDeliveryId } from "./domain/webhooks.js";
import { createHttpsWebhookSender } from "./webhook-sender.js";
import { loadCardSecretFile, loadOrCreateCardSecret } from "./store/cards-secret.js";
import { hashPassword, isPasswordHash } from "./domain/password.js";
import { createPaymentQueries } from "./domain/payments.js";
import { setupIdempotency, type IdempotencyWiring } from "./idempotency/setup.js";
import {
  StoreUnavailableError,
  systemClock,
  type Clock,
  type GatewayStore,
  type SeedData,
  type UserRecord,
} from "./domain/ports.js";
import { createReplicaDuties, type ReplicaDuties } from "./domain/replicas.js";
import { createPostgresStore } from "./store/postgres/store.js";
import { createSqliteStore } from "./store/sqlite-store.js";
import { createRoutes } from "./routes.js";
import { createStoreErrorInterceptor } from "./store-errors.js";

const SHUTDOWN_GRACE_MS = 5_000;
const SESSION_PURGE_INTERVAL_MS = 60_000;
const SESSION_PURGE_BATCH_MAX = 1_000;

/** What every start-up stage shares: settings, telemetry, the clock and the open store. */
interface Base {
  readonly config: GatewayConfig;
  readonly log: Logger;
  readonly tracing: Tracing;
  readonly metrics: Metrics;
  readonly clock: Clock;
  readonly store: GatewayStore;
  readonly gatewayMetrics: GatewayMetrics;
  readonly faults: Faults;
}

/** The use cases the routes serve, and what start-up and shutdown drive besides them. */
interface Services {
  readonly coordinator: Coordinator;
  readonly auth: ReturnType<typeof createAuth>;
  readonly payments: ReturnType<typeof createPaymentQueries>;
  readonly admin: ReturnType<typeof createAdmin>;
  readonly signUp: ReturnType<typeof createSignUp>;
  readonly links: ReturnType<typeof createLinks>;
  readonly webhooks: ReturnType<typeof createWebhooks>;
  readonly urlPolicy: WebhookUrlPolicy;
  readonly idempotency: IdempotencyWiring;
  readonly cards: Cards;
  readonly duties: ReplicaDuties;
}

/** The gateway's own addresses (never a webhook target); the RPC port is known once it listens. */
interface OwnPorts {
  rpc: number;
  ops: number;
}

/** The loops started after recovery, each with what stops it. */
interface Background {
  readonly purge: NodeJS.Timeout;
  readonly stopRedrive: () => Promise<void>;
  readonly stopCardExpiry: () => Promise<void>;
  readonly stopDuties: () => Promise<void>;
  readonly stopWebhooks: () => Promise<void>;
  readonly webhookSender: ReturnType<typeof createHttpsWebhookSender>;
}

async function main(): Promise<void> {
  const config: GatewayConfig = loadConfigOrExit(loadConfig, process.env);
  const log = createLogger("gateway", config.logLevel, { mixin: traceLogFields });
  const tracing = startTracing({ service: "gateway", endpoint: config.otlpEndpoint });
  const metrics = createMetrics("gateway");
  process.on("unhandledRejection", (e) => crash(log, e, "unhandled rejection"));
  process.on("uncaughtException", (e) => crash(log, e, "uncaught exception"));

  const clock = systemClock;
  const bootId = randomUUID();
  const store = await openStoreOrExit(config, log);
  await loadSeedIfPresent(config, store, clock, log);

  const gatewayMetrics = createStoreMetrics(config, metrics, store, clock);
  // Before recovery, so a slow recovery is visible: /metrics answers, /readyz says 503 (also while the store is unreachable).
  const ops = await startProbes(config, metrics.registry, log, () => store.healthy());
  const ownPorts: OwnPorts = { rpc: config.port, ops: ops.port };
  const { base, all: services } = await createServices(
    config,
    { log, tracing, metrics, clock, store, gatewayMetrics },
    bootId,
    ownPorts,
  );
  const recovery = await recoverOrExit(base, services);
  const server = await startServer(base, services);
  ownPorts.rpc = server.port;
  const background = startBackground(base, services, recovery.backlog);
  ops.markReady();
  log.info(
    {
      port: server.port,
      metricsPort: ops.port,
      host: config.host,
      replica: config.replica,
      store: store.kind,
      banks: [...config.banks.keys()],
      tracing: tracing.enabled,
    },
    "listening",
  );
  installShutdown(base, {
    server,
    background,
    idempotency: services.idempotency,
    ops,
  });
}

async function openStoreOrExit(config: GatewayConfig, log: Logger): Promise<GatewayStore> {
  try {
    return await openStore(config, log);
  } catch (e) {
    // Unreachable PostgreSQL at start-up: exit, and let the supervisor retry (nothing is served without a store).
    log.fatal({ err: e instanceof Error ? e.message : String(e), store: config.store.kind }, "cannot open the store");
    process.exit(1);
  }
}

async function openStore(config: GatewayConfig, log: Logger): Promise<GatewayStore> {
  if (config.store.kind === "sqlite") return createSqliteStore(config.store.file);
  return createPostgresStore({ ...config.store, replica: config.replica, logger: log });
}

/** Loads the seed file once per store; a malformed seed file ends the process with status 2. */
async function loadSeedIfPresent(config: GatewayConfig, store: GatewayStore, clock: Clock, log: Logger): Promise<void> {
  if (!existsSync(config.seedFile)) {
    log.warn({ file: config.seedFile }, "seed file not found; starting without seed data");
    return;
  }
  try {
    const seed = loadSeedFile(config.seedFile);
    for (const b of seed.banks)
      if (!config.banks.has(b)) log.warn({ bank: b }, "seed names a bank that BANKS does not configure");
    if (!(await store.seeded())) {
      const report = await store.seedOnce(await seedData(seed), clock.nowMs());
      if (report.loaded)
        log.info({ users: report.users, accounts: report.accounts, file: config.seedFile }, "seed loaded");
    }
  } catch (e) {
    if (!(e instanceof SeedError)) throw e;
    process.stderr.write(`gateway: ${e.message}\n`);
    await store.close();
    process.exit(2);
  }
}

function createStoreMetrics(
  config: GatewayConfig,
  metrics: Metrics,
  store: GatewayStore,
  clock: Clock,
): GatewayMetrics {
  return createGatewayMetrics(metrics.registry, {
    prepareTimeoutMs: config.prepareTimeoutMs,
    banks: [...config.banks.keys()],
    inDoubt: () => store.log.inDoubtSummary(clock.nowMs()),
    webhooks: async () => {
      const s = await store.webhooks.stats(clock.nowMs());
      return { backlog: s.backlog, oldestPendingAgeSeconds: s.oldestPendingAgeMs / 1000 };
    },
  });
}

/** Builds every use case in dependency order; nothing here talks to a bank yet. */
async function createServices(
  config: GatewayConfig,
  parts: Omit<Base, "config" | "faults">,
  bootId: string,
  ownPorts: OwnPorts,
): Promise<{ base: Base; all: Services }> {
  const { store, clock, log } = parts;
  const feed = createDecidedFeed();
  // Decisions logged by any replica wake this replica's ListTransactions followers.
  store.onDecided(() => feed.notify());
  const { participants, ledgers } = createParticipantClients(config, parts);
  const base: Base = { ...parts, config, faults: createFaults(config.faultPoints) };
  const coordinator = createCoordinator({
    replica: config.replica,
    log: store.log,
    directory: store.directory,
    participants,
    clock,
    faults: base.faults,
    feed,
    logger: log,
    metrics: base.gatewayMetrics,
    prepareTimeoutMs: config.prepareTimeoutMs,
    commitTimeoutMs: config.commitTimeoutMs,
    redriveIntervalMs: config.redriveIntervalMs,
    redriveBackoffMaxMs: config.redriveBackoffMaxMs,
    sharedLog: store.shared,
  });
  const customer = await createCustomerServices(base, ledgers, feed);
  const urlPolicy = webhookUrlPolicy(config, ownPorts);
  const webhooks = createWebhooks({ store: store.webhooks, clock, randomBytes, urlPolicy });
  // Repeats of a finished transfer are answered from Redis when REDIS_URL is set; the log stays the guard.
  const idempotency = setupIdempotency(config, {
    coordinator,
    directory: store.directory,
    logger: log,
    metrics: base.gatewayMetrics,
    sharedLog: store.shared,
  });
  const cards = createCardServices(base, coordinator);
  const duties = createDuties(base, coordinator, cards, bootId);
  return { base, all: { coordinator, ...customer, webhooks, urlPolicy, idempotency, cards, duties } };
}

function createParticipantClients(config: GatewayConfig, parts: Omit<Base, "config" | "faults">) {
  const { log, tracing, metrics } = parts;
  return createBankClients({
    banks: config.banks,
    tls: config.tls,
    logger: log,
    ledgerTimeoutMs: config.prepareTimeoutMs,
    batching:
      config.participantBatchMax === 0
        ? undefined
        : {
            itemsMax: config.participantBatchMax,
            inflightMax: config.participantBatchInflight,
            prepareTimeoutMs: config.prepareTimeoutMs,
            decisionTimeoutMs: config.commitTimeoutMs,
            commitRideMs: config.commitRideMs,
          },
    interceptors: (bank) => [
      createTraceClientInterceptor(tracing.tracer),
      createClientMetricsInterceptor(metrics, bank),
    ],
    tracer: tracing.tracer,
  });
}

/** Sessions, queries, administration, sign-up and account links. */
async function createCustomerServices(
  base: Base,
  ledgers: ReturnType<typeof createBankClients>["ledgers"],
  feed: ReturnType<typeof createDecidedFeed>,
) {
  const { config, store, clock, log, tracing, metrics } = base;
  const auth = createAuth({
    users: store.users,
    sessions: store.sessions,
    clock,
    sessionTtlMs: config.sessionTtlMs,
    loginFailuresMax: config.loginFailuresMax,
    loginLockoutMs: config.loginLockoutMs,
    dummyPasswordHash: await hashPassword(randomBytes(16).toString("hex")),
  });
  const payments = createPaymentQueries({ directory: store.directory, history: store.log, ledgers, feed });
  const admin = createAdmin({
    users: store.users,
    directory: store.directory,
    ledgers,
    log: store.log,
    banks: [...config.banks.keys()],
    clock,
    hashPassword: (pw) => hashPassword(pw),
    reconcileTimeoutMs: config.prepareTimeoutMs,
    metrics: base.gatewayMetrics,
  });
  const signUp = createSignUp({
    users: store.users,
    limits: store.limits,
    clock,
    hashPassword: (pw) => hashPassword(pw),
    attemptsMax: config.registerRateMax,
    windowMs: config.registerRateWindowMs,
  });
  const links = createLinks({
    directory: store.directory,
    banks: createBankLinkClients({
      banks: config.banks,
      tls: config.tls,
      timeoutMs: config.prepareTimeoutMs,
      interceptors: (bank) => [
        createTraceClientInterceptor(tracing.tracer),
        createClientMetricsInterceptor(metrics, bank),
      ],
    }),
    limits: store.limits,
    clock,
    bankNames: [...config.banks.keys()],
    faults: base.faults,
    logger: log,
    attemptsMax: config.linkRateMax,
    windowMs: config.linkRateWindowMs,
  });
  return { auth, payments, admin, signUp, links };
}

/** The gateway's own addresses are never a webhook target; the RPC port is read when a URL is checked. */
function webhookUrlPolicy(config: GatewayConfig, ownPorts: OwnPorts): WebhookUrlPolicy {
  const ownAddresses = (): HostPort[] => {
    const hosts = [config.host, ...(config.host === "0.0.0.0" || config.host === "::" ? [hostname()] : [])];
    return hosts.flatMap((host) => [
      { host, port: ownPorts.rpc },
      { host, port: ownPorts.ops },
    ]);
  };
  return {
    allowedHosts: config.webhooks.allowedHosts,
    allowLoopback: config.webhooks.allowLoopback,
    ownAddresses,
  };
}

function createCardServices(base: Base, coordinator: Coordinator): Cards {
  const { config, store, clock, log, tracing, metrics } = base;
  return createCards({
    store: store.cards,
    rounds: coordinator,
    directory: store.directory,
    bureau: createBureauClient({
      url: config.cards.creditBureauUrl,
      tls: config.tls,
      timeoutMs: config.cards.creditBureauTimeoutMs,
      interceptors: [
        createTraceClientInterceptor(tracing.tracer),
        createClientMetricsInterceptor(metrics, "credit-bureau"),
      ],
    }),
    hasher: createCardHasher(
      config.cards.cardSecretFile !== ""
        ? loadCardSecretFile(config.cards.cardSecretFile)
        : loadOrCreateCardSecret(config.dataDir),
    ),
    clock,
    logger: log,
    risk: {
      scoreMin: config.cards.riskScoreMin,
      reviewAmountMinor: config.cards.riskAmountReviewMinor,
      reviewScoreMin: config.cards.riskReviewScoreMin,
      dailySpendMaxMinor: config.cards.cardDailySpendMaxMinor,
    },
    authHoldTtlMs: config.cards.authHoldTtlMs,
    replica: config.replica,
    isReplicaAlive: (r) => store.leases.isAlive(r),
  });
}

function createDuties(base: Base, coordinator: Coordinator, cards: Cards, bootId: string): ReplicaDuties {
  const { config, store } = base;
  return createReplicaDuties({
    replica: config.replica,
    bootId,
    leases: store.leases,
    coordinator,
    cards,
    clock: base.clock,
    logger: base.log,
    shared: store.shared,
    leaseMs: config.store.kind === "postgres" ? config.store.leaseMs : config.prepareTimeoutMs,
    heartbeatIntervalMs: config.store.kind === "postgres" ? config.store.heartbeatIntervalMs : config.prepareTimeoutMs,
    prepareTimeoutMs: config.prepareTimeoutMs,
  });
}

/** Redrives every in-doubt decision before anything is served; an unreachable store ends the process. */
async function recoverOrExit(base: Base, services: Services): Promise<RecoveryReport> {
  const { config, store, log } = base;
  const { coordinator, cards, duties } = services;
  try {
    // Our lease first: a replica restarting under its old name is not taken over while it recovers.
    if (store.shared) await duties.heartbeat();
    const recovery = await coordinator.recover();
    log.info({ ...recovery, replica: config.replica }, "recovery done");
    // After the coordinator's: card rounds settle against the same decision log.
    const cardRecovery = await cards.recover();
    log.info({ ...cardRecovery }, "card recovery done");
    return recovery;
  } catch (e) {
    if (!(e instanceof StoreUnavailableError)) throw e;
    // Nothing is served before recovery: exit and let the supervisor start us again.
    log.fatal({ err: e.message }, "the store became unreachable during recovery; exiting so the supervisor retries");
    process.exit(1);
  }
}

function startServer(base: Base, services: Services) {
  const { config, log, tracing, metrics } = base;
  const { auth, payments, admin, cards, signUp, links, webhooks } = services;
  return startRpcServer({
    host: config.host,
    port: config.port,
    tls: config.tls,
    routes: createRoutes({
      auth,
      coordinator: services.idempotency.coordinator,
      payments,
      admin,
      cards,
      signUp,
      links,
      webhooks,
    }),
    // Trace outermost so the log line carries the trace id; metrics outside access control so refusals count.
    interceptors: [
      createTraceServerInterceptor(tracing.tracer),
      createLoggingInterceptor(log),
      createMetricsInterceptor(metrics),
      // Outside access control: a session lookup can meet an unreachable store too.
      createStoreErrorInterceptor(),
      createAccessInterceptor(gatewayAccessTable, async (token) => auth.authenticate(token)),
    ],
    logger: log,
  });
}

/** Redrive, card expiry, replica duties, purges and webhook delivery: started once recovery has run. */
function startBackground(base: Base, services: Services, backlog: RecoveryReport["backlog"]): Background {
  const { config, store, clock, log } = base;
  const stopRedrive = services.coordinator.startRedrive({ backlog });
  const stopCardExpiry = services.cards.startExpiry(config.cards.authExpiryIntervalMs);
  const stopDuties = services.duties.start();
  const purge = setInterval(() => {
    store.sessions
      .purgeExpired(clock.nowMs(), SESSION_PURGE_BATCH_MAX)
      .catch((e: unknown) => log.warn({ err: String(e) }, "session purge failed"));
    store.limits
      .purgeExpired(clock.nowMs(), SESSION_PURGE_BATCH_MAX)
      .catch((e: unknown) => log.warn({ err: String(e) }, "rate limit purge failed"));
  }, SESSION_PURGE_INTERVAL_MS);
  purge.unref();
  const webhookSender = createHttpsWebhookSender({
    timeoutMs: config.webhooks.timeoutMs,
    allowLoopback: config.webhooks.allowLoopback,
    caFile: config.webhooks.caFile,
  });
  const dispatcher = createWebhookDispatcher({
    store: store.webhooks,
    sender: webhookSender,
    clock,
    replica: config.replica,
    faults: base.faults,
    logger: log,
    metrics: base.gatewayMetrics,
    urlPolicy: services.urlPolicy,
    transferEvent,
    newDeliveryId: () => newDeliveryId(randomBytes),
    random: Math.random,
    pollMs: config.webhooks.pollMs,
    retryBaseMs: config.webhooks.retryBaseMs,
    retryMaxMs: config.webhooks.retryMaxMs,
    giveUpMs: config.webhooks.giveUpMs,
    concurrency: config.webhooks.concurrency,
    timeoutMs: config.webhooks.timeoutMs,
  });
  // After recovery (events of recovered card rounds are in the outbox by now); a tick while the store is unreachable is skipped.
  const stopWebhooks = dispatcher.start(() => store.healthy());
  return { purge, stopRedrive, stopCardExpiry, stopDuties, stopWebhooks, webhookSender };
}

interface Running {
  readonly server: Awaited<ReturnType<typeof startRpcServer>>;
  readonly background: Background;
  readonly idempotency: IdempotencyWiring;
  readonly ops: Probes;
}

/** SIGTERM/SIGINT: stop taking work, then close in dependency order (what writes before what it writes to). */
function installShutdown(base: Base, running: Running): void {
  const { log, store, tracing } = base;
  const { server, background, idempotency, ops } = running;
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    ops.markUnready(); // load balancers stop sending first
    log.info({ signal }, "shutting down");
    clearInterval(background.purge);
    await server.close(SHUTDOWN_GRACE_MS);
    await background.stopRedrive();
    await background.stopCardExpiry();
    await background.stopDuties();
    // Before the store closes: sends in flight finish and their attempts are recorded.
    await background.stopWebhooks();
    background.webhookSender.close();
    await idempotency.close();
    // Before the database: the in-doubt probe reads it.
    await ops.close();
    await store.close(); // after queued acknowledgements (group commit)
    await tracing.shutdown();
    log.info({}, "stopped");
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
}

/** The seed file's users (passwords hashed here, one at a time: each scrypt takes ~16 MiB) and accounts. */
async function seedData(seed: Seed): Promise<SeedData> {
  const users: UserRecord[] = [];
  for (const u of seed.users) {
    let passwordHash = u.passwordHash;
    if (passwordHash !== undefined) {
      if (!isPasswordHash(passwordHash))
        throw new SeedError(`seed: user ${u.id} has a password_hash that is not "scrypt$N$r$p$salt$hash"`);
    } else {
      passwordHash = await hashPassword(u.password ?? "");
    }
    users.push({ userId: u.id, username: u.username, passwordHash, roles: u.roles, displayName: u.displayName });
  }
  // An account without an owner belongs to no user until its holder links it (DESIGN.md §11).
  const owned = seed.accounts.filter((a) => a.owner !== "");
  return {
    users,
    accounts: owned.map((a) => ({ accountId: a.id, bank: a.bank, ownerUserId: a.owner, currency: a.currency })),
  };
}

function crash(log: Logger, e: unknown, what: string): never {
  // A broken invariant or an unexpected failure: stop here; recovery on restart takes over.
  log.fatal({ err: e instanceof Error ? { message: e.message, stack: e.stack } : String(e) }, what);
  process.exit(1);
}

await main();
