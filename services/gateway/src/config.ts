// The gateway's one typed, frozen configuration. main.ts passes process.env
// in; everything else receives this object. Every problem is reported at once.
import { isIP } from "node:net";
import { resolve } from "node:path";
import { createEnvReader, type Env } from "@paygate/config";
import { parseFaultPoints, type FaultPoint } from "@paygate/faults";
import type { TlsFiles } from "@paygate/rpc";
import { readObservabilitySettings } from "@paygate/telemetry";

export interface GatewayConfig {
  /** Prefix of every txn id this process coordinates; banks route GetDecision by it. */
  readonly replica: string;
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  /** Where users, sessions, the directory, the coordinator log and card records live. */
  readonly store: StoreConfig;
  readonly seedFile: string;
  /** bank name -> base URL of its Connect server. */
  readonly banks: ReadonlyMap<string, string>;
  readonly tls: TlsFiles;
  readonly prepareTimeoutMs: number;
  /** Per Commit/Abort RPC attempt. */
  readonly commitTimeoutMs: number;
  readonly redriveIntervalMs: number;
  readonly redriveBackoffMaxMs: number;
  /** Most Prepares / Commits / Aborts per batched RPC to one bank; 0 = one RPC per txn (no batching). */
  readonly participantBatchMax: number;
  /** Batched RPCs on the wire per bank and kind; more items wait for the next batch. */
  readonly participantBatchInflight: number;
  /** How long a Commit waits to ride along with the next PrepareBatch to its bank; 0 = it leaves at once. */
  readonly commitRideMs: number;
  readonly sessionTtlMs: number;
  readonly loginFailuresMax: number;
  readonly loginLockoutMs: number;
  /** Sign-ups (Register) one client may try per window (DESIGN.md §11). */
  readonly registerRateMax: number;
  readonly registerRateWindowMs: number;
  /** LinkBankAccount attempts one user may make per window (on top of each bank's lock per account). */
  readonly linkRateMax: number;
  readonly linkRateWindowMs: number;
  readonly logLevel: string;
  /** Plain-HTTP ops port (/metrics, /healthz, /readyz); 0 = any free port (the "listening" line says which). */
  readonly metricsPort: number;
  /** OTLP/HTTP collector base URL; "" = tracing off. */
  readonly otlpEndpoint: string;
  /** Redis for the idempotency fast path (idempotency/); unset = the durable log alone answers repeats. */
  readonly redisUrl: string | undefined;
  /** How long Redis answers a finished key's repeats (IDEMPOTENCY_TTL); past it the log still does. */
  readonly idempotencyTtlMs: number;
  /** Per Redis command; past it the request falls through to the log. */
  readonly redisCommandTimeoutMs: number;
  /** Test-only crash points (PAYGATE_FAULTPOINTS). */
  readonly faultPoints: ReadonlySet<FaultPoint>;
  readonly cards: CardsConfig;
  readonly webhooks: WebhooksConfig;
}

/**
 * SQLite: one replica, a file on its own volume (the laptop default).
 * PostgreSQL (DATABASE_URL): shared by any number of replicas (DESIGN.md §3b).
 */
export type StoreConfig =
  | { readonly kind: "sqlite"; readonly file: string }
  | {
      readonly kind: "postgres";
      /** postgres://user[:password]@host:port/db; the password may come from passwordFile instead. */
      readonly url: string;
      /** A file holding the password (a Kubernetes Secret mounted as a file); "" = none. */
      readonly passwordFile: string;
      readonly poolMax: number;
      /** Which client library talks to PostgreSQL (bench/README.md compares them). */
      readonly driver: "pg" | "postgres";
      /** How long a replica's lease lasts without a heartbeat; past it (plus the prepare timeout) another replica takes over its transactions. */
      readonly leaseMs: number;
      readonly heartbeatIntervalMs: number;
      /** Per statement; a slower answer counts as PostgreSQL unavailable. */
      readonly statementTimeoutMs: number;
    };

/** Card payments: the credit bureau, the risk rule, authorization lifetimes. */
export interface CardsConfig {
  /**
   * The card-number key, shared by every replica (a Kubernetes Secret mounted
   * as a file); "" = made once in the data dir (one replica only).
   */
  readonly cardSecretFile: string;
  readonly creditBureauUrl: string;
  readonly creditBureauTimeoutMs: number;
  /** An authorization (and its hold at the issuing bank) expires this long after it was approved. */
  readonly authHoldTtlMs: number;
  /** How often the gateway records expired authorizations (the banks release the holds on their own). */
  readonly authExpiryIntervalMs: number;
  readonly riskScoreMin: number;
  /** Amounts at or above this need riskReviewScoreMin. */
  readonly riskAmountReviewMinor: bigint;
  readonly riskReviewScoreMin: number;
  /** Per card and UTC day. */
  readonly cardDailySpendMaxMinor: bigint;
}

/** Webhook delivery (DESIGN.md §12): which hosts may be called, and the retry schedule. */
export interface WebhooksConfig {
  /**
   * Hosts an endpoint URL may name (WEBHOOK_ALLOWED_HOSTS, lowercased):
   * exact names, "*.suffix" patterns (any name under the suffix, not the
   * suffix itself) and IP literals. Empty: no endpoint can be registered.
   */
  readonly allowedHosts: readonly string[];
  /** Loopback names and addresses (localhost, 127.0.0.0/8, ::1), also as DNS answers; for `make up` and tests only. */
  readonly allowLoopback: boolean;
  /** Per delivery attempt: connect, TLS, request and the answer's headers. */
  readonly timeoutMs: number;
  /** How often the dispatcher looks for new events and due deliveries. */
  readonly pollMs: number;
  /** The first retry waits about this long, each next one twice as long (with jitter), up to retryMaxMs. */
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  /** A delivery still failing this long after its event was made is FAILED. */
  readonly giveUpMs: number;
  /** Attempts in flight per replica. */
  readonly concurrency: number;
  /** Extra roots trusted for endpoints' certificates, next to the system's (default: the gateway's TLS CA). */
  readonly caFile: string;
}

export const DEFAULT_BANKS = "bank-a=https://127.0.0.1:50051,bank-b=https://127.0.0.1:50052";
const REPLICA_PATTERN = /^[a-z][a-z0-9-]{0,62}$/;
const BANK_NAME_PATTERN = /^[a-z][a-z0-9-]{0,30}$/;
const HOUR_MS = 3_600_000;

export function loadConfig(env: Env, cwd = process.cwd()): GatewayConfig {
  const r = createEnvReader("gateway", env);
  const replica = r.string("GATEWAY_REPLICA", "gateway-0");
  if (!REPLICA_PATTERN.test(replica))
    r.problem(`GATEWAY_REPLICA must match ${REPLICA_PATTERN}, got ${JSON.stringify(replica)}`);
  const host = r.string("GATEWAY_HOST", "127.0.0.1");
  const port = r.int("GATEWAY_PORT", 50050, { min: 0, max: 65535 });
  const dataDir = resolve(cwd, r.string("GATEWAY_DATA_DIR", "data/gateway"));
  const seedFile = resolve(cwd, r.string("SEED_FILE", "config/seed.yaml"));
  const store = readStoreConfig(r, resolve(dataDir, "gateway.db"), cwd);
  const banks = readBanks(r);
  const tls: TlsFiles = {
    caFile: resolve(cwd, r.string("TLS_CA_FILE", ".certs/ca.crt")),
    certFile: resolve(cwd, r.string("TLS_CERT_FILE", ".certs/gateway.crt")),
    keyFile: resolve(cwd, r.string("TLS_KEY_FILE", ".certs/gateway.key")),
  };
  // Read in this order, so every problem is reported in the order of the settings.
  const coordinator = readCoordinatorSettings(r);
  const limits = readAccessLimits(r);
  const { logLevel, metricsPort, otlpEndpoint } = readObservabilitySettings(r);
  const idempotency = readIdempotencySettings(r);
  const { armed, unknown } = parseFaultPoints(r.list("PAYGATE_FAULTPOINTS"));
  for (const u of unknown) r.problem(`PAYGATE_FAULTPOINTS: unknown fault point ${JSON.stringify(u)}`);
  const cards = readCardsConfig(r, store, cwd);
  const webhooks = readWebhooksConfig(r, tls.caFile, cwd);

  return r.finish({
    replica,
    host,
    port,
    dataDir,
    store,
    seedFile,
    banks,
    tls,
    ...coordinator,
    ...limits,
    logLevel,
    metricsPort,
    otlpEndpoint,
    ...idempotency,
    faultPoints: armed,
    cards,
    webhooks,
  });
}

/** BANKS: name=https://url pairs, at least one. */
function readBanks(r: ReturnType<typeof createEnvReader>): ReadonlyMap<string, string> {
  const banks = r.map("BANKS", DEFAULT_BANKS);
  if (banks.size === 0) r.problem("BANKS must name at least one bank");
  for (const [name, url] of banks) {
    if (!BANK_NAME_PATTERN.test(name)) r.problem(`BANKS: bad bank name ${JSON.stringify(name)}`);
    let ok = false;
    try {
      ok = new URL(url).protocol === "https:";
    } catch {
      ok = false;
    }
    if (!ok) r.problem(`BANKS: ${name} needs an https:// URL, got ${JSON.stringify(url)}`);
  }
  return banks;
}

type CoordinatorSettings = Pick<
  GatewayConfig,
  | "prepareTimeoutMs"
  | "commitTimeoutMs"
  | "redriveIntervalMs"
  | "redriveBackoffMaxMs"
  | "participantBatchMax"
  | "participantBatchInflight"
  | "commitRideMs"
>;

/** The two-phase commit's timeouts, redrive schedule and batching. */
function readCoordinatorSettings(r: ReturnType<typeof createEnvReader>): CoordinatorSettings {
  const prepareTimeoutMs = r.int("PREPARE_TIMEOUT_MS", 10_000, { min: 1, max: HOUR_MS });
  const commitTimeoutMs = r.int("COMMIT_TIMEOUT_MS", 5_000, { min: 1, max: HOUR_MS });
  const redriveIntervalMs = r.int("REDRIVE_INTERVAL_MS", 1_000, { min: 1, max: HOUR_MS });
  const redriveBackoffMaxMs = r.int("REDRIVE_BACKOFF_MAX_MS", 30_000, { min: 1, max: 24 * HOUR_MS });
  if (redriveBackoffMaxMs < redriveIntervalMs) r.problem("REDRIVE_BACKOFF_MAX_MS must be >= REDRIVE_INTERVAL_MS");
  const participantBatchMax = r.int("PARTICIPANT_BATCH_MAX", 256, { min: 0, max: 1024 });
  const participantBatchInflight = r.int("PARTICIPANT_BATCH_INFLIGHT", 2, { min: 1, max: 64 });
  const commitRideMs = r.int("COMMIT_RIDE_MS", 5, { min: 0, max: 1_000 });
  return {
    prepareTimeoutMs,
    commitTimeoutMs,
    redriveIntervalMs,
    redriveBackoffMaxMs,
    participantBatchMax,
    participantBatchInflight,
    commitRideMs,
  };
}

type AccessLimits = Pick<
  GatewayConfig,
  | "sessionTtlMs"
  | "loginFailuresMax"
  | "loginLockoutMs"
  | "registerRateMax"
  | "registerRateWindowMs"
  | "linkRateMax"
  | "linkRateWindowMs"
>;

/** Sessions, login lockout and the sign-up and link rate limits. */
function readAccessLimits(r: ReturnType<typeof createEnvReader>): AccessLimits {
  const sessionTtlMs = r.int("SESSION_TTL_MS", HOUR_MS, { min: 1, max: 30 * 24 * HOUR_MS });
  const loginFailuresMax = r.int("LOGIN_FAILURES_MAX", 5, { min: 1, max: 1000 });
  const loginLockoutMs = r.int("LOGIN_LOCKOUT_MS", 300_000, { min: 1, max: 30 * 24 * HOUR_MS });
  const registerRateMax = r.int("REGISTER_RATE_MAX", 10, { min: 1, max: 1_000_000 });
  const registerRateWindowMs = r.int("REGISTER_RATE_WINDOW_MS", 600_000, { min: 1, max: 30 * 24 * HOUR_MS });
  const linkRateMax = r.int("LINK_RATE_MAX", 10, { min: 1, max: 1_000_000 });
  const linkRateWindowMs = r.int("LINK_RATE_WINDOW_MS", 600_000, { min: 1, max: 30 * 24 * HOUR_MS });
  return {
    sessionTtlMs,
    loginFailuresMax,
    loginLockoutMs,
    registerRateMax,
    registerRateWindowMs,
    linkRateMax,
    linkRateWindowMs,
  };
}

/** Redis for the idempotency fast path; unset = the durable log alone answers repeats. */
function readIdempotencySettings(
  r: ReturnType<typeof createEnvReader>,
): Pick<GatewayConfig, "redisUrl" | "idempotencyTtlMs" | "redisCommandTimeoutMs"> {
  const redisUrl = r.optional("REDIS_URL");
  if (redisUrl !== undefined && !/^rediss?:\/\/[^\s]+$/.test(redisUrl))
    r.problem("REDIS_URL must look like redis://host:port[/db] (or rediss:// for TLS)");
  // Must outlive the longest time a client may replay a key (paycli's offline queue).
  const idempotencyTtlMs = parseDurationMs(r.string("IDEMPOTENCY_TTL", "24h"));
  if (idempotencyTtlMs === undefined || idempotencyTtlMs < 1_000 || idempotencyTtlMs > 365 * 24 * HOUR_MS) {
    r.problem('IDEMPOTENCY_TTL must be a duration from 1s to 365d such as "24h", "90m", "7d" or milliseconds');
  }

  const redisCommandTimeoutMs = r.int("REDIS_COMMAND_TIMEOUT_MS", 200, { min: 1, max: 60_000 });
  return { redisUrl, idempotencyTtlMs: idempotencyTtlMs ?? 0, redisCommandTimeoutMs };
}

function readCardsConfig(r: ReturnType<typeof createEnvReader>, store: StoreConfig, cwd: string): CardsConfig {
  const creditBureauUrl = r.string("CREDIT_BUREAU_URL", "https://127.0.0.1:8081");
  if (!/^https:\/\/[^\s/]+/.test(creditBureauUrl))
    r.problem(`CREDIT_BUREAU_URL needs an https:// URL, got ${JSON.stringify(creditBureauUrl)}`);
  const cardSecretFile = r.string("CARD_SECRET_FILE", "");
  // Replicas hashing card numbers with different keys could not find each other's cards.
  if (store.kind === "postgres" && cardSecretFile === "")
    r.problem(
      "CARD_SECRET_FILE is required with DATABASE_URL: every replica must hash card numbers with the same key (64 hex characters in a file)",
    );
  const cards: CardsConfig = {
    cardSecretFile: cardSecretFile === "" ? "" : resolve(cwd, cardSecretFile),
    creditBureauUrl,
    creditBureauTimeoutMs: r.int("CREDIT_BUREAU_TIMEOUT_MS", 3_000, { min: 1, max: HOUR_MS }),
    authHoldTtlMs: r.int("AUTH_HOLD_TTL_MS", 7 * 24 * HOUR_MS, { min: 1, max: 90 * 24 * HOUR_MS }),
    authExpiryIntervalMs: r.int("AUTH_EXPIRY_INTERVAL_MS", 5_000, { min: 1, max: HOUR_MS }),
    riskScoreMin: r.int("RISK_SCORE_MIN", 600, { min: 0, max: 1000 }),
    riskAmountReviewMinor: BigInt(r.int("RISK_AMOUNT_REVIEW_MINOR", 50_000, { min: 1, max: Number.MAX_SAFE_INTEGER })),
    riskReviewScoreMin: r.int("RISK_REVIEW_SCORE_MIN", 700, { min: 0, max: 1000 }),
    cardDailySpendMaxMinor: BigInt(
      r.int("CARD_DAILY_SPEND_MAX_MINOR", 500_000, { min: 1, max: Number.MAX_SAFE_INTEGER }),
    ),
  };
  return cards;
}

const DAY_MS = 24 * HOUR_MS;
const HOST_NAME_PATTERN = /^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

function readWebhooksConfig(r: ReturnType<typeof createEnvReader>, defaultCaFile: string, cwd: string): WebhooksConfig {
  const allowedHosts: string[] = [];
  for (const raw of r.list("WEBHOOK_ALLOWED_HOSTS")) {
    const host = raw.toLowerCase().replace(/^\[(.*)\]$/, "$1");
    if (isIP(host) !== 0 || (HOST_NAME_PATTERN.test(host) && host.length <= 253)) allowedHosts.push(host);
    else
      r.problem(
        `WEBHOOK_ALLOWED_HOSTS: ${JSON.stringify(raw)} is not a host name, a "*.suffix" pattern or an IP address`,
      );
  }
  const retryBaseMs = r.int("WEBHOOK_RETRY_BASE_MS", 10_000, { min: 1, max: DAY_MS });
  const retryMaxMs = r.int("WEBHOOK_RETRY_MAX_MS", HOUR_MS, { min: 1, max: 7 * DAY_MS });
  if (retryMaxMs < retryBaseMs) r.problem("WEBHOOK_RETRY_MAX_MS must be >= WEBHOOK_RETRY_BASE_MS");
  return {
    allowedHosts: Object.freeze([...new Set(allowedHosts)]),
    allowLoopback: r.bool("WEBHOOK_ALLOW_LOOPBACK", false),
    timeoutMs: r.int("WEBHOOK_TIMEOUT_MS", 5_000, { min: 100, max: 60_000 }),
    pollMs: r.int("WEBHOOK_POLL_MS", 250, { min: 10, max: 60_000 }),
    retryBaseMs,
    retryMaxMs,
    giveUpMs: r.int("WEBHOOK_GIVE_UP_MS", 3 * DAY_MS, { min: 1, max: 30 * DAY_MS }),
    concurrency: r.int("WEBHOOK_CONCURRENCY", 8, { min: 1, max: 256 }),
    caFile: resolve(cwd, r.string("WEBHOOK_CA_FILE", defaultCaFile)),
  };
}

function readStoreConfig(r: ReturnType<typeof createEnvReader>, sqliteFile: string, cwd: string): StoreConfig {
  const url = r.optional("DATABASE_URL");
  const passwordFile = r.string("DATABASE_PASSWORD_FILE", "");
  const poolMax = r.int("DATABASE_POOL_MAX", 8, { min: 2, max: 256 });
  const driver = r.string("DATABASE_DRIVER", "pg");
  const leaseMs = r.int("GATEWAY_LEASE_MS", 3_000, { min: 100, max: HOUR_MS });
  const heartbeatIntervalMs = r.int("GATEWAY_HEARTBEAT_INTERVAL_MS", 1_000, { min: 10, max: HOUR_MS });
  const statementTimeoutMs = r.int("DATABASE_STATEMENT_TIMEOUT_MS", 5_000, { min: 10, max: HOUR_MS });
  if (url === undefined) {
    if (passwordFile !== "") r.problem("DATABASE_PASSWORD_FILE needs DATABASE_URL");
    return { kind: "sqlite", file: sqliteFile };
  }
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (
    !parsed ||
    (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") ||
    parsed.hostname === "" ||
    parsed.pathname.length < 2
  ) {
    // Never echo the URL: it may carry a password.
    r.problem("DATABASE_URL must look like postgres://user[:password]@host:port/database");
  }
  if (driver !== "pg" && driver !== "postgres")
    r.problem(`DATABASE_DRIVER must be "pg" or "postgres", got ${JSON.stringify(driver)}`);
  if (heartbeatIntervalMs * 2 > leaseMs)
    r.problem("GATEWAY_HEARTBEAT_INTERVAL_MS must be at most half of GATEWAY_LEASE_MS");
  return {
    kind: "postgres",
    url,
    passwordFile: passwordFile === "" ? "" : resolve(cwd, passwordFile),
    poolMax,
    driver: driver === "postgres" ? "postgres" : "pg",
    leaseMs,
    heartbeatIntervalMs,
    statementTimeoutMs,
  };
}

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: HOUR_MS, d: 24 * HOUR_MS };

/** "24h", "90m", "30s", "7d", "500ms", or a bare number of milliseconds. */
export function parseDurationMs(text: string): number | undefined {
  const m = /^\s*(\d{1,12})\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (!m) return undefined;
  return Number(m[1]) * DURATION_UNITS_MS[m[2] ?? "ms"]!;
}
