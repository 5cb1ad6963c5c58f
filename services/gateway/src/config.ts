// The gateway's one typed, frozen configuration. main.ts passes process.env
// in; everything else receives this object. Every problem is reported at once.
import { resolve } from "node:path";
import { createEnvReader, type Env } from "@paygate/config";
import { parseFaultPoints, type FaultPoint } from "@paygate/faults";
import type { TlsFiles } from "@paygate/rpc";

export interface GatewayConfig {
  /** Prefix of every txn id this process coordinates; banks route GetDecision by it. */
  readonly replica: string;
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  readonly dbFile: string;
  readonly seedFile: string;
  /** bank name -> base URL of its Connect server. */
  readonly banks: ReadonlyMap<string, string>;
  readonly tls: TlsFiles;
  readonly prepareTimeoutMs: number;
  /** Per Commit/Abort RPC attempt. */
  readonly commitTimeoutMs: number;
  readonly redriveIntervalMs: number;
  readonly redriveBackoffMaxMs: number;
  readonly sessionTtlMs: number;
  readonly loginFailuresMax: number;
  readonly loginLockoutMs: number;
  readonly logLevel: string;
  /** Reserved for the Redis idempotency fast path; unused today. */
  readonly redisUrl: string | undefined;
  /** Test-only crash points (PAYGATE_FAULTPOINTS). */
  readonly faultPoints: ReadonlySet<FaultPoint>;
}

export const DEFAULT_BANKS = "bank-a=https://127.0.0.1:50051,bank-b=https://127.0.0.1:50052";
const REPLICA_PATTERN = /^[a-z][a-z0-9-]{0,62}$/;
const BANK_NAME_PATTERN = /^[a-z][a-z0-9-]{0,30}$/;
const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
const HOUR_MS = 3_600_000;

export function loadConfig(env: Env, cwd = process.cwd()): GatewayConfig {
  const r = createEnvReader("gateway", env);
  const replica = r.string("GATEWAY_REPLICA", "gateway-0");
  if (!REPLICA_PATTERN.test(replica)) r.problem(`GATEWAY_REPLICA must match ${REPLICA_PATTERN}, got ${JSON.stringify(replica)}`);
  const host = r.string("GATEWAY_HOST", "127.0.0.1");
  const port = r.int("GATEWAY_PORT", 50050, { min: 0, max: 65535 });
  const dataDir = resolve(cwd, r.string("GATEWAY_DATA_DIR", "data/gateway"));
  const seedFile = resolve(cwd, r.string("SEED_FILE", "config/seed.yaml"));

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

  const tls: TlsFiles = {
    caFile: resolve(cwd, r.string("TLS_CA_FILE", ".certs/ca.crt")),
    certFile: resolve(cwd, r.string("TLS_CERT_FILE", ".certs/gateway.crt")),
    keyFile: resolve(cwd, r.string("TLS_KEY_FILE", ".certs/gateway.key")),
  };

  const prepareTimeoutMs = r.int("PREPARE_TIMEOUT_MS", 10_000, { min: 1, max: HOUR_MS });
  const commitTimeoutMs = r.int("COMMIT_TIMEOUT_MS", 5_000, { min: 1, max: HOUR_MS });
  const redriveIntervalMs = r.int("REDRIVE_INTERVAL_MS", 1_000, { min: 1, max: HOUR_MS });
  const redriveBackoffMaxMs = r.int("REDRIVE_BACKOFF_MAX_MS", 30_000, { min: 1, max: 24 * HOUR_MS });
  if (redriveBackoffMaxMs < redriveIntervalMs) r.problem("REDRIVE_BACKOFF_MAX_MS must be >= REDRIVE_INTERVAL_MS");
  const sessionTtlMs = r.int("SESSION_TTL_MS", HOUR_MS, { min: 1, max: 30 * 24 * HOUR_MS });
  const loginFailuresMax = r.int("LOGIN_FAILURES_MAX", 5, { min: 1, max: 1000 });
  const loginLockoutMs = r.int("LOGIN_LOCKOUT_MS", 300_000, { min: 1, max: 30 * 24 * HOUR_MS });

  const logLevel = r.string("LOG_LEVEL", "info").toLowerCase();
  if (!LOG_LEVELS.includes(logLevel)) r.problem(`LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(logLevel)}`);

  const { armed, unknown } = parseFaultPoints(r.list("PAYGATE_FAULTPOINTS"));
  for (const u of unknown) r.problem(`PAYGATE_FAULTPOINTS: unknown fault point ${JSON.stringify(u)}`);

  return r.finish({
    replica,
    host,
    port,
    dataDir,
    dbFile: resolve(dataDir, "gateway.db"),
    seedFile,
    banks,
    tls,
    prepareTimeoutMs,
    commitTimeoutMs,
    redriveIntervalMs,
    redriveBackoffMaxMs,
    sessionTtlMs,
    loginFailuresMax,
    loginLockoutMs,
    logLevel,
    redisUrl: r.optional("REDIS_URL"),
    faultPoints: armed,
  });
}
