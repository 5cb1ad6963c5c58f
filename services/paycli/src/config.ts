// paycli's one typed, frozen configuration. Each setting comes from, in order:
// a command-line flag, the environment, $PAYCLI_HOME/config.json, a default.
// main.ts hands process.env in; nothing else reads it. Every problem is
// reported at once (exit code 2).
import { readFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { ConfigError, createEnvReader, type Env } from "@paygate/config";
import type { TlsFiles } from "@paygate/rpc";
import type { QueuePolicy } from "./domain/queue.js";

/** Test-only crash points (PAYCLI_FAULTPOINT): paycli SIGKILLs itself there. */
export const FAULT_POINTS = ["after_enqueue", "after_send_before_record"] as const;
export type FaultPoint = (typeof FAULT_POINTS)[number];

export type Source = "flag" | "env" | "file" | "default";

export interface PaycliConfig {
  readonly gatewayUrl: string;
  readonly tls: TlsFiles;
  readonly home: string;
  readonly configFile: string;
  readonly sessionFile: string;
  readonly queueFile: string;
  /** Deadline of each unary call (a `history --follow` stream has none). */
  readonly timeoutMs: number;
  readonly queue: QueuePolicy;
  /** Committed/declined entries kept for `paycli queue`. */
  readonly keepResultsMax: number;
  /** Pending entries allowed before `pay` refuses to queue more. */
  readonly queueDepthMax: number;
  /** `sync --watch` wakes at least this often to notice new entries. */
  readonly watchSleepMaxMs: number;
  readonly faultPoint: FaultPoint | undefined;
  /** Where each flag-able setting came from, for `paycli status`. */
  readonly sources: Readonly<Record<"gateway" | "ca" | "cert" | "keyFile", Source>>;
}

export interface ConfigFlags {
  readonly gateway?: string | undefined;
  readonly ca?: string | undefined;
  readonly cert?: string | undefined;
  readonly keyFile?: string | undefined;
}

export interface ConfigInput {
  readonly flags: ConfigFlags;
  readonly env: Env;
  readonly cwd: string;
  /** The user's home directory (os.homedir()). */
  readonly homeDir: string;
  /** Reads a file, undefined if it does not exist. */
  readonly readFile?: (path: string) => string | undefined;
}

export const DEFAULTS = {
  gateway: "https://127.0.0.1:50050",
  ca: ".certs/ca.crt",
  cert: ".certs/paycli.crt",
  keyFile: ".certs/paycli.key",
  backoffBaseMs: 5000,
  backoffCapMs: 300_000,
  attemptsMax: 1000,
  timeoutMs: 10_000,
  keepResults: 50,
  queueMax: 10_000,
} as const;

/** config.json key -> environment variable; the file may set exactly these. */
const FILE_KEYS = {
  gateway: "PAYGATE_URL",
  ca: "PAYGATE_CA",
  cert: "PAYGATE_CERT",
  keyFile: "PAYGATE_KEY",
  timeoutMs: "PAYCLI_TIMEOUT_MS",
  backoffBaseMs: "PAYCLI_BACKOFF_BASE_MS",
  backoffCapMs: "PAYCLI_BACKOFF_CAP_MS",
  attemptsMax: "PAYCLI_ATTEMPTS_MAX",
  keepResults: "PAYCLI_KEEP_RESULTS",
  queueMax: "PAYCLI_QUEUE_MAX",
} as const;
type FileKey = keyof typeof FILE_KEYS;
const PATH_KEYS = new Set<FileKey>(["ca", "cert", "keyFile"]);
const FLAG_KEYS = ["gateway", "ca", "cert", "keyFile"] as const;

const HOUR_MS = 3_600_000;

function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

export function loadConfig(input: ConfigInput): PaycliConfig {
  const problems: string[] = [];
  const envHome = input.env.PAYCLI_HOME?.trim();
  const home = resolve(input.cwd, envHome ? envHome : join(input.homeDir, ".paycli"));
  const configFile = join(home, "config.json");
  const fromFile = readConfigFile(input, configFile, home, problems);
  // Flatten the layers into one env-shaped record, then read it with the shared typed reader.
  const { merged, sources } = mergeLayers(input, fromFile);
  const r = createEnvReader("paycli", merged);
  for (const p of problems) r.problem(p);

  const gatewayUrl = readGatewayUrl(r);
  const tls: TlsFiles = {
    caFile: resolve(input.cwd, r.string("PAYGATE_CA", DEFAULTS.ca)),
    certFile: resolve(input.cwd, r.string("PAYGATE_CERT", DEFAULTS.cert)),
    keyFile: resolve(input.cwd, r.string("PAYGATE_KEY", DEFAULTS.keyFile)),
  };

  const timeoutMs = r.int("PAYCLI_TIMEOUT_MS", DEFAULTS.timeoutMs, { min: 1, max: 10 * 60_000 });
  const baseMs = r.int("PAYCLI_BACKOFF_BASE_MS", DEFAULTS.backoffBaseMs, { min: 1, max: HOUR_MS });
  const capMs = r.int("PAYCLI_BACKOFF_CAP_MS", DEFAULTS.backoffCapMs, { min: 1, max: 24 * HOUR_MS });
  if (capMs < baseMs) r.problem(`PAYCLI_BACKOFF_CAP_MS (${capMs}) must be at least PAYCLI_BACKOFF_BASE_MS (${baseMs})`);
  const attemptsMax = r.int("PAYCLI_ATTEMPTS_MAX", DEFAULTS.attemptsMax, { min: 1, max: 1_000_000 });
  const keepResultsMax = r.int("PAYCLI_KEEP_RESULTS", DEFAULTS.keepResults, { min: 0, max: 100_000 });
  const queueDepthMax = r.int("PAYCLI_QUEUE_MAX", DEFAULTS.queueMax, { min: 1, max: 1_000_000 });
  const faultPoint = readFaultPoint(r);

  return r.finish({
    gatewayUrl,
    tls,
    home,
    configFile,
    sessionFile: join(home, "session.json"),
    queueFile: join(home, "queue.db"),
    timeoutMs,
    queue: {
      backoff: { baseMs, capMs },
      attemptsMax,
      // A claim must outlive the send it protects (one call deadline) with room
      // for the SQLite write after it; a dead sender's claim is freed sooner
      // by the liveness check.
      claimLeaseMs: timeoutMs * 2 + 5000,
    },
    keepResultsMax,
    queueDepthMax,
    watchSleepMaxMs: Math.min(capMs, 60_000),
    faultPoint,
    sources,
  });
}

/** config.json's settings (paths in it are relative to the file, so it works from any directory); problems are collected, not thrown. */
function readConfigFile(
  input: ConfigInput,
  configFile: string,
  home: string,
  problems: string[],
): Partial<Record<FileKey, string>> {
  const fromFile: Partial<Record<FileKey, string>> = {};
  let text: string | undefined;
  try {
    text = (input.readFile ?? readIfExists)(configFile);
  } catch (e) {
    problems.push(`cannot read ${configFile}: ${(e as Error).message}`);
  }
  if (text !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      problems.push(`${configFile} is not valid JSON: ${(e as Error).message}`);
    }
    if (parsed !== undefined && (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))) {
      problems.push(`${configFile} must hold one JSON object`);
    } else if (parsed !== undefined) {
      for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
        if (!Object.hasOwn(FILE_KEYS, k)) {
          problems.push(
            `${configFile}: unknown key ${JSON.stringify(k)} (known: ${Object.keys(FILE_KEYS).join(", ")})`,
          );
          continue;
        }
        if (typeof v !== "string" && typeof v !== "number") {
          problems.push(`${configFile}: ${k} must be a string or a number`);
          continue;
        }
        const s = String(v);
        fromFile[k as FileKey] = PATH_KEYS.has(k as FileKey) && !isAbsolute(s) ? resolve(home, s) : s;
      }
    }
  }
  return fromFile;
}

/** Flag over env over config.json, per setting, and where each of the flag-able ones came from. */
function mergeLayers(
  input: ConfigInput,
  fromFile: Partial<Record<FileKey, string>>,
): { merged: Record<string, string | undefined>; sources: Record<(typeof FLAG_KEYS)[number], Source> } {
  const merged: Record<string, string | undefined> = { ...input.env };
  const sources = {} as Record<(typeof FLAG_KEYS)[number], Source>;
  for (const k of Object.keys(FILE_KEYS) as FileKey[]) {
    const name = FILE_KEYS[k];
    const flag = (FLAG_KEYS as readonly string[]).includes(k)
      ? input.flags[k as (typeof FLAG_KEYS)[number]]
      : undefined;
    const env = input.env[name]?.trim() ? input.env[name] : undefined;
    const value = flag ?? env ?? fromFile[k];
    merged[name] = value;
    if ((FLAG_KEYS as readonly string[]).includes(k)) {
      sources[k as (typeof FLAG_KEYS)[number]] =
        flag !== undefined ? "flag" : env !== undefined ? "env" : fromFile[k] !== undefined ? "file" : "default";
    }
  }
  return { merged, sources };
}

/** The gateway's URL without trailing slashes; only https:// (the hop is mTLS). */
function readGatewayUrl(r: ReturnType<typeof createEnvReader>): string {
  const gatewayUrl = r.string("PAYGATE_URL", DEFAULTS.gateway).replace(/\/+$/, "");
  let https = false;
  try {
    https = new URL(gatewayUrl).protocol === "https:";
  } catch {
    https = false;
  }
  if (!https)
    r.problem(`the gateway URL (--gateway / PAYGATE_URL) must be https:// (mTLS), got ${JSON.stringify(gatewayUrl)}`);
  return gatewayUrl;
}

function readFaultPoint(r: ReturnType<typeof createEnvReader>): FaultPoint | undefined {
  const faultName = r.optional("PAYCLI_FAULTPOINT");
  let faultPoint: FaultPoint | undefined;
  if (faultName !== undefined) {
    if ((FAULT_POINTS as readonly string[]).includes(faultName)) faultPoint = faultName as FaultPoint;
    else r.problem(`PAYCLI_FAULTPOINT must be one of ${FAULT_POINTS.join(", ")}, got ${JSON.stringify(faultName)}`);
  }
  return faultPoint;
}

export { ConfigError };
