// The bank's one typed, frozen configuration. main.ts passes process.env in;
// everything else receives this object. Every problem is reported at once.
import { join, resolve } from "node:path";
import { createEnvReader, type Env } from "@paygate/config";
import { parseFaultPoints, type FaultPoint } from "@paygate/faults";
import type { TlsFiles } from "@paygate/rpc";
import { readObservabilitySettings } from "@paygate/telemetry";
import { LINK_ATTEMPTS_MAX_DEFAULT } from "./domain/links.js";

export interface BankConfig {
  readonly bankName: string;
  readonly host: string;
  /** 0 = any free port (the "listening" log line says which). */
  readonly port: number;
  readonly dataDir: string;
  /** Read at first start only (empty ledger). */
  readonly seedFile: string;
  readonly tls: TlsFiles;
  /**
   * Where GetDecision goes: gateway replicas, any of which answers for any txn
   * (the gateway Service in Kubernetes; each replica's address on a laptop).
   * Tried in order from the last one that answered, the next on a failure.
   */
  readonly coordinatorUrls: readonly string[];
  /** A txn PREPARED longer than this is in doubt: ask the coordinator. */
  readonly prepareTimeoutMs: number;
  readonly resolveIntervalMs: number;
  /** Ceiling of the doubling back-off after a failed GetDecision. */
  readonly resolveBackoffMaxMs: number;
  /** How often expired card authorization holds are released. */
  readonly holdExpiryIntervalMs: number;
  readonly logLevel: string;
  /** Plain-HTTP ops port (/metrics, /healthz, /readyz); 0 = any free port (the "listening" line says which). */
  readonly metricsPort: number;
  /** OTLP/HTTP collector base URL; "" = tracing off. */
  readonly otlpEndpoint: string;
  /** Failed link attempts on one account before its linking locks until a new code is issued (DESIGN.md §11). */
  readonly linkAttemptsMax: number;
  /** Test-only crash points (PAYGATE_FAULTPOINTS). */
  readonly faultPoints: ReadonlySet<FaultPoint>;
}

export const BANK_NAME_PATTERN = /^[a-z][a-z0-9-]{0,30}$/;
const COORDINATOR_URLS_MAX = 64;
const HOUR_MS = 3_600_000;

export function loadConfig(env: Env, cwd = process.cwd()): BankConfig {
  const r = createEnvReader("bank", env);
  const bankName = r.string("BANK_NAME");
  if (bankName !== "" && !BANK_NAME_PATTERN.test(bankName))
    r.problem(`BANK_NAME must match ${BANK_NAME_PATTERN}, got ${JSON.stringify(bankName)}`);
  const host = r.string("BANK_HOST", "127.0.0.1");
  const port = r.int("BANK_PORT", 50051, { min: 0, max: 65535 });
  const dataDir = resolve(cwd, r.string("BANK_DATA_DIR", join("data", bankName)));
  const seedFile = resolve(cwd, r.string("SEED_FILE", "config/seed.yaml"));
  const tls: TlsFiles = {
    caFile: resolve(cwd, r.string("TLS_CA_FILE", ".certs/ca.crt")),
    certFile: resolve(cwd, r.string("TLS_CERT_FILE", `.certs/${bankName}.crt`)),
    keyFile: resolve(cwd, r.string("TLS_KEY_FILE", `.certs/${bankName}.key`)),
  };

  // The old per-replica map would otherwise be ignored, leaving the default URL.
  if (r.optional("COORDINATOR_URLS") !== undefined)
    r.problem(
      "COORDINATOR_URLS (replica=URL pairs) is replaced by COORDINATOR_URL: the gateway Service, or comma-separated replica URLs",
    );
  const coordinatorUrls = [...new Set(r.list("COORDINATOR_URL", ["https://127.0.0.1:50050"]))];
  if (coordinatorUrls.length === 0) r.problem("COORDINATOR_URL must name at least one gateway URL");
  if (coordinatorUrls.length > COORDINATOR_URLS_MAX)
    r.problem(`COORDINATOR_URL: at most ${COORDINATOR_URLS_MAX} URLs, got ${coordinatorUrls.length}`);
  for (const url of coordinatorUrls) {
    let https = false;
    try {
      https = new URL(url).protocol === "https:";
    } catch {
      https = false;
    }
    if (!https) r.problem(`COORDINATOR_URL: needs https:// URLs, got ${JSON.stringify(url)}`);
  }

  const prepareTimeoutMs = r.int("PREPARE_TIMEOUT_MS", 10_000, { min: 1, max: HOUR_MS });
  const resolveIntervalMs = r.int("RESOLVE_INTERVAL_MS", 1_000, { min: 1, max: HOUR_MS });
  const resolveBackoffMaxMs = r.int("RESOLVE_BACKOFF_MAX_MS", 30_000, { min: 1, max: 24 * HOUR_MS });
  if (resolveBackoffMaxMs < resolveIntervalMs) r.problem("RESOLVE_BACKOFF_MAX_MS must be >= RESOLVE_INTERVAL_MS");
  const holdExpiryIntervalMs = r.int("HOLD_EXPIRY_INTERVAL_MS", 5_000, { min: 1, max: HOUR_MS });
  const linkAttemptsMax = r.int("LINK_ATTEMPTS_MAX", LINK_ATTEMPTS_MAX_DEFAULT, { min: 1, max: 100 });

  const { logLevel, metricsPort, otlpEndpoint } = readObservabilitySettings(r);

  const { armed, unknown } = parseFaultPoints(r.list("PAYGATE_FAULTPOINTS"));
  if (unknown.length > 0) r.problem(`PAYGATE_FAULTPOINTS: unknown fault points ${unknown.join(", ")}`);

  return r.finish({
    bankName,
    host,
    port,
    dataDir,
    seedFile,
    tls,
    coordinatorUrls,
    prepareTimeoutMs,
    resolveIntervalMs,
    resolveBackoffMaxMs,
    holdExpiryIntervalMs,
    logLevel,
    metricsPort,
    otlpEndpoint,
    linkAttemptsMax,
    faultPoints: armed,
  });
}
