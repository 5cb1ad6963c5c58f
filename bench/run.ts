// `make bench`: the whole paygate on this machine (real processes, mTLS,
// durable stores, Redis when the gateway supports it), every scenario at
// every concurrency, the echo ceiling measured in the same run by the same
// load generator, then the money checks. Writes bench/results/<time>.json and
// .md and, for a full run, bench/README.md's "Latest figures" (or, with
// --matrix, "Latest matrix").
//   node --import tsx bench/run.ts [--duration-s 6] [--warmup-s 1] [--concurrency 1,16,64,256]
//        [--scenarios cross-bank,hot-credit] [--connections 1] [--cpu-prof gateway,bank-a] [--no-readme]
//        [--store sqlite|postgres] [--gateways N] [--pg-driver pg|postgres] [--breakdown-at 1,16]
//        [--matrix [--matrix-configs sqlite:1,postgres:1,postgres:2,postgres:3,postgres:1:postgres]]
// Exit code 0 only if every scenario ran and every money check passed.
import { fork, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { AdminService, PaymentService } from "@paygate/proto/gateway";
import { freePort, PostgresServer, repoRoot, ServiceProcess, Stack } from "@paygate/testkit";
import { BREAKDOWN_METRICS, computeBreakdown, serverMethodOf, type MetricsSnapshot } from "./breakdown.js";
import { createFsyncProbe } from "./lib/fsync-probe.js";
import { reproduceCommand, runStamp } from "./lib/run-id.js";
import { cpuSeconds, machineBusySeconds, machineInfo, memoryMiB, treeCpuSeconds } from "./lib/proc.js";
import { scrape } from "./lib/prom-text.js";
import type { CardFixture, CellResult, Command, DrainResult, SettleResult, WindowEvent } from "./load-generator.js";
import { profileMarkdown, summarizeProfile } from "./profile-summary.js";
import {
  headlineOf,
  peakOf,
  renderMarkdown,
  updateReadme,
  type BenchReport,
  type CellRecord,
  type Check,
  type ProcessTotal,
  type RunRecord,
  type StoreConfig,
} from "./report.js";
import {
  accounts,
  BENCH_BANKS,
  benchSeed,
  bureauReports,
  SCENARIOS,
  SLOW_BANK,
  USERS,
  type Scenario,
} from "./scenarios.js";

const DEFAULT_CONCURRENCY = "1,16,64,256";
/** What --matrix runs on each configuration unless --scenarios says otherwise (echo only on the first). */
const MATRIX_SCENARIOS: readonly Scenario[] = ["echo", "cross-bank", "card"];
/** Testkit's Stack runs at most this many replicas. */
const GATEWAYS_MAX = 8;
const DRIVERS = ["pg", "postgres"] as const;
type Driver = (typeof DRIVERS)[number];
const { values: args } = parseArgs({
  options: {
    "duration-s": { type: "string", default: "6" },
    "warmup-s": { type: "string", default: "1" },
    concurrency: { type: "string", default: DEFAULT_CONCURRENCY },
    // Default: every scenario; with --matrix, MATRIX_SCENARIOS.
    scenarios: { type: "string" },
    connections: { type: "string", default: "1" },
    "accounts-per-bank": { type: "string", default: "200" },
    "delay-ms": { type: "string", default: "5" },
    "duplicates-per-key": { type: "string", default: "16" },
    "drain-count": { type: "string", default: "300" },
    // Authorizations to settle after the card scenario; default 10000, with --matrix 0 (no settlement).
    "card-authorizations": { type: "string" },
    // The gateway's SETTLE_ITEMS_MAX: the merchant's job sends the day in calls of this size.
    "settle-batch-max": { type: "string", default: "500" },
    // Bounds the default run while settlement is slow; raise it to settle all.
    "settle-budget-s": { type: "string", default: "60" },
    redis: { type: "string", default: "auto" },
    // Where the gateway keeps its state: its embedded SQLite, or a private PostgreSQL cluster this run starts.
    store: { type: "string", default: "sqlite" },
    // Gateway replicas on the one store (more than one needs --store postgres).
    gateways: { type: "string", default: "1" },
    "pg-driver": { type: "string", default: "pg" },
    // Several store configurations in one run (see matrixConfigs()).
    matrix: { type: "boolean" },
    "matrix-configs": { type: "string" },
    // Concurrencies whose latency breakdown the report prints (the JSON keeps every cell's).
    "breakdown-at": { type: "string", default: "1,16" },
    "cpu-prof": { type: "string", default: "" },
    // Keep every service log line (JSON) in <dir>/<service>.jsonl, e.g. to split latency by method.
    "keep-logs": { type: "string", default: "" },
    readme: { type: "boolean" },
    "no-readme": { type: "boolean" },
    out: { type: "string", default: join(repoRoot, "bench", "results") },
  },
});

/** A wrong flag: say which and stop, before anything is started. */
function usage(msg: string): never {
  process.stderr.write(`bench: ${msg}\n`);
  process.exit(2);
}

const durationMs = Number(args["duration-s"]) * 1000;
const warmupMs = Number(args["warmup-s"]) * 1000;
const concurrencies = args.concurrency!.split(",").map(Number);
const matrix = args.matrix === true;
const scenarios = (args.scenarios ?? (matrix ? MATRIX_SCENARIOS : SCENARIOS).join(","))
  .split(",")
  .map((s) => s.trim()) as Scenario[];
for (const s of scenarios) if (!SCENARIOS.includes(s)) usage(`unknown scenario ${s}; one of ${SCENARIOS.join(", ")}`);
if (concurrencies.some((c) => !Number.isInteger(c) || c < 1 || c > 4096)) usage("--concurrency: integers in 1..4096");
const breakdownAt = args["breakdown-at"]!.split(",").filter(Boolean).map(Number);
if (breakdownAt.some((c) => !Number.isInteger(c) || c < 1)) usage("--breakdown-at: positive integers, e.g. 1,16");
const cardAuthorizations = Number(args["card-authorizations"] ?? (matrix ? "0" : "10000"));
const mainDriver = parseDriver(args["pg-driver"]!, "--pg-driver");

function parseDriver(d: string, what: string): Driver {
  if (!(DRIVERS as readonly string[]).includes(d)) usage(`${what}: pg or postgres, got ${JSON.stringify(d)}`);
  return d as Driver;
}

function parseGateways(text: string, what: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > GATEWAYS_MAX)
    usage(`${what}: an integer from 1 to ${GATEWAYS_MAX}, got ${JSON.stringify(text)}`);
  return n;
}

function storeConfig(
  store: string,
  gateways: number,
  driver: Driver,
  what: string,
  runScenarios: readonly Scenario[],
): StoreConfig {
  if (store !== "sqlite" && store !== "postgres")
    usage(`${what}: store sqlite or postgres, got ${JSON.stringify(store)}`);
  // Each replica would keep its own SQLite file and know only what it was told itself (issue 12).
  if (store === "sqlite" && gateways > 1) usage(`${what}: ${gateways} gateways need a shared store: use postgres`);
  const label = store === "sqlite" ? `sqlite ×${gateways}` : `postgres ×${gateways} (${driver})`;
  return { label, store, gateways, ...(store === "postgres" ? { driver } : {}), scenarios: runScenarios };
}

/**
 * --matrix: 1 replica on SQLite, 1/2/3 on PostgreSQL with --pg-driver, and 1
 * on PostgreSQL with the other driver (cross-bank only: the driver comparison).
 * --matrix-configs "store:N[:driver],..." replaces the list. Echo runs on the
 * first configuration only; a configuration whose driver is not --pg-driver
 * runs cross-bank only.
 */
function matrixConfigs(): StoreConfig[] {
  const other: Driver = mainDriver === "pg" ? "postgres" : "pg";
  const text = args["matrix-configs"] ?? `sqlite:1,postgres:1,postgres:2,postgres:3,postgres:1:${other}`;
  const list = text
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);
  if (list.length === 0) usage("--matrix-configs: at least one store:N[:driver]");
  return list.map((item, i) => {
    const [store = "", n = "1", driver = mainDriver, ...rest] = item.split(":");
    if (rest.length) usage(`--matrix-configs: ${JSON.stringify(item)} is not store:N[:driver]`);
    const d = parseDriver(driver, `--matrix-configs ${item}`);
    const comparison = store === "postgres" && d !== mainDriver;
    const runScenarios = scenarios.filter((s) => (s !== "echo" || i === 0) && (!comparison || s === "cross-bank"));
    return storeConfig(
      store,
      parseGateways(n, `--matrix-configs ${item}`),
      d,
      `--matrix-configs ${item}`,
      runScenarios.length ? runScenarios : ["cross-bank"],
    );
  });
}

const configs: StoreConfig[] = matrix
  ? matrixConfigs()
  : [
      storeConfig(
        args.store!,
        parseGateways(args.gateways!, "--gateways"),
        mainDriver,
        "--store/--gateways",
        scenarios,
      ),
    ];
const plan = {
  perBank: Number(args["accounts-per-bank"]),
  openingMinor: 1_000_000_000_000n,
  drainCount: Number(args["drain-count"]),
};
const acc = accounts(plan);
const defaultShape = args.concurrency === DEFAULT_CONCURRENCY && args["duration-s"] === "6" && args["warmup-s"] === "1";
// A full plain run rewrites "Latest figures" (SQLite, every scenario); a full matrix run "Latest matrix".
const fullRun = matrix
  ? defaultShape && args["matrix-configs"] === undefined && args.scenarios === undefined
  : defaultShape &&
    scenarios.length === SCENARIOS.length &&
    configs[0]!.store === "sqlite" &&
    configs[0]!.gateways === 1;
const writeReadme = args["no-readme"] ? false : (args.readme ?? fullRun);
const profiled = args["cpu-prof"]!.split(",").filter(Boolean);
const startedAt = new Date();
const stamp = runStamp(startedAt);
const command = reproduceCommand({ makeTarget: "bench", makeVar: "BENCH_ARGS", script: "bench/run.ts" });

const log = (msg: string) => process.stdout.write(`bench: ${msg}\n`);
const fsyncProbe = createFsyncProbe();
// A paused machine (VM snapshot, suspended laptop) makes a cell meaningless:
// it shows up as a long gap between ticks of this timer.
const STALL_TICK_MS = 250;
const STALL_GAP_MS = 5_000;
let lastTick = performance.now();
let stallGapMaxMs = 0;
setInterval(() => {
  const now = performance.now();
  stallGapMaxMs = Math.max(stallGapMaxMs, now - lastTick - STALL_TICK_MS);
  lastTick = now;
}, STALL_TICK_MS).unref();
/** Service processes of the running stack (and the postmaster), for the exit-time safety net. */
let liveStackPids: number[] = [];

// ---- helper processes we start (and only these are stopped by us) ----

interface Helper {
  readonly name: string;
  readonly child: ChildProcess;
  readonly port: number;
}
/** The current configuration's helpers (Redis, echo, delay proxy); stopped when it ends. */
const helpers: Helper[] = [];

async function startHelper(
  name: string,
  command: string,
  argv: string[],
  ready: (line: string) => number | undefined,
): Promise<Helper> {
  const child = spawn(command, argv, { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child
    .stderr!.setEncoding("utf8")
    .on("data", (c: string) => (stderr += c).length > 8000 && (stderr = stderr.slice(-4000)));
  const port = await new Promise<number>((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error(`${name} did not start in 20 s:\n${stderr}`)), 20_000);
    child.stdout!.setEncoding("utf8").on("data", (c: string) => {
      buf += c;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const p = ready(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (p !== undefined) {
          clearTimeout(timer);
          resolve(p);
        }
      }
      if (buf.length > 100_000) buf = "";
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before it was ready:\n${stderr}`));
    });
  });
  const h = { name, child, port };
  helpers.push(h);
  return h;
}

const jsonPort = (line: string): number | undefined => {
  try {
    const j = JSON.parse(line) as { msg?: string; port?: number };
    return j.msg === "listening" ? j.port : undefined;
  } catch {
    return undefined;
  }
};

async function stopHelpers(): Promise<void> {
  await Promise.all(
    helpers.splice(0).map(async (h) => {
      if (h.child.exitCode !== null || h.child.signalCode !== null) return;
      const exited = once(h.child, "exit");
      h.child.kill("SIGTERM");
      const t = setTimeout(() => h.child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    }),
  );
}

// ---- the load generator: a forked process answering one reply per command ----

let loadGen: ChildProcess | undefined;
let nextId = 1;
const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
/** The running cell's listener for the load generator's window events. */
let onWindow: ((e: WindowEvent) => void) | undefined;

function startLoadGenerator(): ChildProcess {
  const child = fork(join(repoRoot, "bench", "load-generator.ts"), [], {
    cwd: repoRoot,
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  child.on("message", (m: { id: number; result?: unknown; error?: string } | WindowEvent) => {
    if ("event" in m) return onWindow?.(m);
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (m.error !== undefined) p?.reject(new Error(`load generator: ${m.error}`));
    else p?.resolve(m.result);
  });
  child.on("exit", (code) => {
    for (const p of pending.values()) p.reject(new Error(`load generator exited (${code})`));
    pending.clear();
  });
  // A send on a closed channel reports here; the pending call is rejected by "exit".
  child.on("error", () => {});
  return child;
}

function ask<T>(cmd: Command): Promise<T> {
  const id = nextId++;
  return new Promise<T>((resolve, reject) => {
    if (!loadGen?.connected) return reject(new Error("load generator is not running"));
    pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
    loadGen.send({ id, cmd }, (err) => {
      if (!err) return;
      pending.delete(id);
      reject(err);
    });
  });
}

async function stopLoadGenerator(): Promise<void> {
  if (!loadGen || loadGen.exitCode !== null || loadGen.signalCode !== null) return;
  const exited = once(loadGen, "exit");
  await ask({ type: "exit" }).catch(() => loadGen?.kill("SIGTERM"));
  await exited;
  loadGen = undefined;
}

// ---- one configuration's stack, and measuring its processes ----

/** What the cells of one configuration share. */
interface Bench {
  readonly config: StoreConfig;
  readonly stack: Stack;
  readonly pg: PostgresServer | undefined;
  /** The ops ports (/metrics) of every gateway replica and bank, read after their last (re)start. */
  readonly metricsPorts: { readonly gateways: readonly number[]; readonly banks: ReadonlyMap<string, number> };
  /** Cells of this configuration so far. */
  readonly cells: CellRecord[];
}

function services(stack: Stack): ServiceProcess[] {
  return [...stack.gateways, ...stack.banks.values(), ...(stack.bureau ? [stack.bureau] : [])];
}

const isGateway = (stack: Stack, p: ServiceProcess) => stack.gateways.includes(p);

/** Process name -> pid; "postgres" is the postmaster (its CPU is read with its whole cluster). */
function pids(b: Bench): Map<string, number> {
  const m = new Map<string, number>();
  for (const p of services(b.stack)) if (p.pid) m.set(p.name, p.pid);
  if (b.pg?.pid) m.set("postgres", b.pg.pid);
  for (const h of helpers) if (h.child.pid) m.set(h.name, h.child.pid);
  if (loadGen?.pid) m.set("load-generator", loadGen.pid);
  return m;
}

function cpuSnapshot(b: Bench): Map<string, number> {
  const out = new Map<string, number>();
  for (const [n, pid] of pids(b)) {
    const s = n === "postgres" ? treeCpuSeconds(pid) : cpuSeconds(pid);
    if (s !== undefined) out.set(n, s);
  }
  const me = process.cpuUsage();
  out.set("bench-orchestrator", (me.user + me.system) / 1e6);
  return out;
}

/** Log lines are kept in memory by ServiceProcess; count the bad ones, then drop them. */
function drainLogs(b: Bench): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const p of services(b.stack)) {
    const bad = p.lines.filter((l) => l.level === "error" || l.level === "fatal").length;
    if (bad) counts[p.name] = bad;
    if (args["keep-logs"]) {
      const dir = configs.length > 1 ? join(args["keep-logs"], slug(b.config.label)) : args["keep-logs"];
      mkdirSync(dir, { recursive: true });
      appendFileSync(join(dir, `${p.name}.jsonl`), p.lines.map((l) => `${JSON.stringify(l)}\n`).join(""));
    }
    p.lines.splice(0);
  }
  return counts;
}

const slug = (label: string) =>
  label
    .replace(/[^a-z0-9]+/gi, "-")
    .replace(/^-|-$/g, "")
    .toLowerCase();

/** /metrics of every gateway replica and bank at one moment, kept to what the breakdown reads. */
async function metricsSnapshot(b: Bench): Promise<MetricsSnapshot> {
  const [gateways, banks] = await Promise.all([
    Promise.all(b.metricsPorts.gateways.map((port) => scrape(port, BREAKDOWN_METRICS))),
    Promise.all(
      [...b.metricsPorts.banks].map(async ([bank, port]) => [bank, await scrape(port, BREAKDOWN_METRICS)] as const),
    ),
  ]);
  return { gateways, banks: new Map(banks) };
}

/** CPU seconds each process used in a cell, and CPU ms per committed operation. */
function cpuOfCell(
  before: Map<string, number>,
  after: Map<string, number>,
  committed: number,
): { cpu: Record<string, number>; perOp: Record<string, number> } {
  const cpu: Record<string, number> = {};
  const perOp: Record<string, number> = {};
  // The whole cell (warm-up, drain) used this CPU for this many successful operations.
  const ops = Math.max(1, committed);
  for (const [n, v] of after) {
    const d = v - (before.get(n) ?? v);
    cpu[n] = Math.round(d * 100) / 100;
    if (n !== "bench-orchestrator") perOp[n] = Math.round(((d * 1000) / ops) * 100) / 100;
  }
  return { cpu, perOp };
}

/** Throws if a service or PostgreSQL died during the cell. */
function assertStillUp(b: Bench, scenario: Scenario, concurrency: number): void {
  const down = services(b.stack).filter((p) => !p.running);
  if (down.length)
    throw new Error(
      `service(s) died during ${scenario} c=${concurrency}: ${down.map((p) => `${p.name} ${JSON.stringify(p.lastExit)}\n${p.rawStderr.join("").slice(-2000)}`).join("\n")}`,
    );
  if (b.pg && !b.pg.running)
    throw new Error(`postgres died during ${scenario} c=${concurrency}:\n${b.pg.log.slice(-2000)}`);
}

async function runCell(
  b: Bench,
  scenario: Scenario,
  concurrency: number,
  runId: string,
  extra: { cards?: readonly CardFixture[]; requestsMax?: number; warmupMs?: number; durationMs?: number } = {},
): Promise<CellRecord> {
  const fsync = fsyncProbe.sample();
  stallGapMaxMs = 0;
  const before = cpuSnapshot(b);
  const busyBefore = machineBusySeconds();
  const wallBefore = performance.now();
  // The services' own histograms, read when the measured window opens and closes.
  const withBreakdown = serverMethodOf(scenario) !== undefined;
  const snap = () =>
    metricsSnapshot(b).catch((e: unknown) => (log(`reading /metrics failed: ${String(e)}`), undefined));
  let windowOpen: Promise<MetricsSnapshot | undefined> | undefined;
  let windowClose: Promise<MetricsSnapshot | undefined> | undefined;
  onWindow = (e) => {
    if (e.scenario !== scenario || e.concurrency !== concurrency) return;
    if (e.phase === "open") windowOpen ??= snap();
    else windowClose ??= snap();
  };
  let r: CellResult;
  try {
    r = await ask<CellResult>({
      type: "cell",
      scenario,
      concurrency,
      warmupMs: extra.warmupMs ?? warmupMs,
      durationMs: extra.durationMs ?? durationMs,
      runId,
      duplicatesPerKey: Number(args["duplicates-per-key"]),
      windowEvents: withBreakdown,
      ...(extra.cards ? { cards: extra.cards } : {}),
      ...(extra.requestsMax !== undefined ? { requestsMax: extra.requestsMax } : {}),
    });
  } finally {
    onWindow = undefined;
  }
  const after = cpuSnapshot(b);
  const busy = machineBusySeconds() - busyBefore;
  const wallS = (performance.now() - wallBefore) / 1000;
  const [opened, closed] =
    withBreakdown && windowOpen ? await Promise.all([windowOpen, windowClose ?? snap()]) : [undefined, undefined];
  const breakdown =
    opened && closed
      ? computeBreakdown({ scenario, concurrency, client: r.latency, before: opened, after: closed })
      : undefined;
  const { cpu, perOp } = cpuOfCell(before, after, r.totals.committed);
  assertStillUp(b, scenario, concurrency);
  const ours = Object.values(cpu).reduce((a, c) => a + c, 0);
  // Cores kept busy by processes that are not part of this benchmark: the noise.
  const otherCores = Math.round((Math.max(0, busy - ours) / wallS) * 100) / 100;
  const cell: CellRecord = {
    ...r,
    cpuSeconds: cpu,
    cpuMsPerOp: perOp,
    errorLogLines: drainLogs(b),
    otherCores,
    fsyncBefore: fsync,
    ...(stallGapMaxMs > STALL_GAP_MS ? { stalledMs: Math.round(stallGapMaxMs) } : {}),
    ...(breakdown ? { breakdown } : {}),
  };
  return cell;
}

function describe(c: CellRecord): string {
  const errs = Object.entries(c.errors)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
  const cpu = Object.keys(c.cpuMsPerOp)
    .filter((n) => (c.cpuSeconds[n] ?? 0) > 0.05)
    .map((n) => `${n} ${c.cpuMsPerOp[n]}`)
    .join(", ");
  const ms = (v: number) => (Number.isFinite(v) ? String(v) : "–");
  const p = c.breakdown?.phases;
  const bd =
    c.breakdown && p
      ? `; mean ms: client ${ms(c.latency.meanMs)}, gateway ${ms(c.breakdown.serverMs)} (claim ${ms(p.claimMs)}, prepare ${ms(p.prepareMs)}, decision ${ms(p.decisionLogMs)})`
      : "";
  return `${c.scenario.padEnd(16)} c=${String(c.concurrency).padEnd(4)} ${String(c.okPerSecond).padStart(8)}/s  p50 ${c.latency.p50Ms} p90 ${c.latency.p90Ms} p99 ${c.latency.p99Ms} ms${errs ? `  failures: ${errs}` : ""}  [cpu ms/op: ${cpu}; other processes: ${c.otherCores} cores; fsync p50 ${c.fsyncBefore.p50Ms} ms${bd}]${c.stalledMs ? `  MACHINE STALLED ${Math.round(c.stalledMs / 1000)} s: this cell is invalid` : ""}`;
}

// ---- Redis, when the gateway can use it ----

function gatewayUsesRedis(): boolean {
  const bundle = join(repoRoot, "dist", "gateway.js");
  return existsSync(bundle) && /from\s*["']ioredis["']/.test(readFileSync(bundle, "utf8"));
}

function hasCommand(cmd: string): boolean {
  return (process.env.PATH ?? "").split(":").some((d) => d && existsSync(join(d, cmd)));
}

async function startRedis(dir: string): Promise<Helper> {
  const port = await freePort();
  return startHelper(
    "redis",
    "redis-server",
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
      "--daemonize",
      "no",
    ],
    (line) => (/Ready to accept connections/.test(line) ? port : undefined),
  );
}

// ---- balances, read as the owner ----

async function balanceOf(
  stack: Stack,
  user: string,
  accountId: string,
): Promise<{ balance: bigint; available: bigint }> {
  const client = stack.client(PaymentService, await stack.login(user));
  const a = (await client.getBalance({ accountId })).accounts[0];
  if (!a) throw new Error(`no balance for ${accountId}`);
  return { balance: a.balanceMinor, available: a.availableMinor };
}

// ---- one configuration, start to end ----

/** Everything of a RunRecord that is known once its stack has stopped (the headline comes when every run is in). */
type Measured = Omit<RunRecord, "headline">;

/** What one configuration has started so far: whatever is set here is stopped at the end, whatever failed. */
interface Live {
  stack?: Stack;
  pg?: PostgresServer;
}

/** The gateway's environment before Redis is known. */
function baseGatewayEnv(config: StoreConfig): Record<string, string> {
  return {
    // Production-like timing, not the test suite's hurried values.
    COMMIT_TIMEOUT_MS: "5000",
    REDRIVE_INTERVAL_MS: "1000",
    REDRIVE_BACKOFF_MAX_MS: "30000",
    ...(config.store === "postgres" ? { DATABASE_DRIVER: config.driver ?? "pg" } : {}),
    // Experiments (e.g. V8 flags in NODE_OPTIONS, PARTICIPANT_BATCH_MAX=0): a JSON object of extra gateway env.
    ...(JSON.parse(process.env.BENCH_GATEWAY_ENV ?? "{}") as Record<string, string>),
  };
}

/** Redis (when wanted) and the private PostgreSQL (when this configuration uses it), then the stack. */
async function startStores(
  config: StoreConfig,
  work: string,
  gatewayEnv: Record<string, string>,
  wantRedis: boolean,
  live: Live,
): Promise<{ used: boolean; why: string } | undefined> {
  let redis: { used: boolean; why: string } | undefined;
  if (wantRedis) {
    if (!hasCommand("redis-server"))
      throw new Error(
        "redis-server is not installed: `make system-deps` (or apt-get install redis-server), or pass --redis off",
      );
    const r = await startRedis(work);
    gatewayEnv.REDIS_URL = `redis://127.0.0.1:${r.port}`;
    redis = { used: true, why: `redis-server on port ${r.port}` };
    log(`redis-server on port ${r.port}`);
  }
  if (config.store === "postgres") {
    // Its own initdb on a free port, durable (fsync, synchronous_commit on); never the machine's server.
    live.pg = await PostgresServer.start();
    log(`postgres (private cluster) on port ${live.pg.port}, postmaster pid ${live.pg.pid}`);
  }
  return redis;
}

/** Starts the stack; says whether the gateway serves CardService. */
async function startStack(config: StoreConfig, gatewayEnv: Record<string, string>, live: Live): Promise<boolean> {
  const pg = live.pg;
  // Card authorizations ask the credit bureau: the Stack starts one before the gateways when asked.
  const cardServed = readFileSync(join(repoRoot, "services", "gateway", "src", "access.ts"), "utf8").includes(
    "CardService",
  );
  const withCards = config.scenarios.includes("card") && cardServed;
  log(
    `starting the stack (3 banks, ${config.gateways} gateway${config.gateways > 1 ? "s" : ""} on ${config.store}${pg ? ` with ${config.driver}` : ""}${withCards ? ", credit bureau" : ""}) ...`,
  );
  live.stack = await Stack.start({
    banks: BENCH_BANKS,
    seed: benchSeed(plan),
    prepareTimeoutMs: 10_000,
    gatewayEnv,
    bankEnv: { RESOLVE_INTERVAL_MS: "1000" },
    gateways: config.gateways,
    ...(pg ? { postgres: pg } : {}),
    ...(withCards ? { bureau: { data: bureauReports() } } : {}),
  });
  return cardServed;
}

/** bank-c behind a latency proxy (slow-bank only): the BANKS value the gateways must be restarted with. */
async function slowBankEnv(st: Stack, runScenarios: readonly Scenario[]): Promise<string | undefined> {
  if (!runScenarios.includes("slow-bank")) return undefined;
  const slow = await startHelper(
    "delay-proxy",
    process.execPath,
    [
      "--import",
      "tsx",
      join(repoRoot, "bench", "delay-proxy.ts"),
      "--target",
      new URL(st.bankUrls.get(SLOW_BANK)!).host,
      "--delay-ms",
      args["delay-ms"]!,
    ],
    jsonPort,
  );
  const banksEnv = BENCH_BANKS.map(
    (bank) => `${bank}=${bank === SLOW_BANK ? `https://127.0.0.1:${slow.port}` : st.bankUrls.get(bank)}`,
  ).join(",");
  log(`${SLOW_BANK} is reached through a +${args["delay-ms"]} ms proxy on port ${slow.port}`);
  return banksEnv;
}

/** Restarts the gateways to dial the slow bank, and every profiled service under the profiler. */
async function restartForBench(
  st: Stack,
  banksEnv: string | undefined,
  profileDir: string,
  stackBundles: Map<string, string>,
): Promise<void> {
  for (const p of services(st)) {
    stackBundles.set(p.name, p.options.bundle);
    const restart = (isGateway(st, p) && banksEnv !== undefined) || profiled.includes(p.name);
    if (!restart) continue;
    await p.stop();
    if (isGateway(st, p) && banksEnv !== undefined) p.env.BANKS = banksEnv;
    if (profiled.includes(p.name)) {
      // Node 20 refuses --cpu-prof in NODE_OPTIONS; a preload starts the profiler instead.
      mkdirSync(join(profileDir, p.name), { recursive: true });
      p.env.NODE_OPTIONS = `${p.env.NODE_OPTIONS ?? ""} --import ${join(repoRoot, "bench", "lib", "cpu-profile.mjs")}`;
      p.env.BENCH_CPU_PROFILE = join(profileDir, p.name, `${p.name}.cpuprofile`);
      // The profile names lines of this bundle; keep the exact file it ran.
      copyFileSync(join(repoRoot, "dist", `${p.options.bundle}.js`), join(profileDir, p.name, "bundle.js"));
    }
    await p.start();
  }
  if (profiled.length) log(`profiling ${profiled.join(", ")} (figures include profiler overhead)`);
}

/** The echo server (when measured) and the load generator, pointed at the running stack. */
async function startLoad(
  config: StoreConfig,
  st: Stack,
  pg: PostgresServer | undefined,
  cells: CellRecord[],
): Promise<Bench> {
  const echo = config.scenarios.includes("echo")
    ? await startHelper(
        "echo",
        process.execPath,
        ["--import", "tsx", join(repoRoot, "bench", "echo-server.ts"), "--certs", st.certs],
        jsonPort,
      )
    : undefined;
  // Read before drainLogs() drops the "listening" lines they come from.
  const metricsPorts = {
    gateways: st.gateways.map((g) => g.metricsPort),
    banks: new Map([...st.banks].map(([name, p]) => [name, p.metricsPort] as const)),
  };
  const b: Bench = { config, stack: st, pg, metricsPorts, cells };
  liveStackPids = [...pids(b).values()];
  loadGen = startLoadGenerator();
  await ask({
    type: "init",
    gatewayUrls: st.gatewayUrls,
    ...(echo ? { echoUrl: `https://127.0.0.1:${echo.port}` } : {}),
    certsDir: st.certs,
    accounts: acc,
    connections: Number(args.connections),
  });
  liveStackPids = [...pids(b).values()];
  drainLogs(b);
  return b;
}

type Balance = { balance: bigint; available: bigint };

/** Balances the money checks compare against, read before the first cell. */
async function balancesBefore(st: Stack, runScenarios: readonly Scenario[]) {
  const stormBefore = runScenarios.includes("duplicate-storm")
    ? await balanceOf(st, USERS.storm, acc.storm)
    : undefined;
  const whaleBefore = runScenarios.includes("hot-debit") ? await balanceOf(st, USERS.whale, acc.whale) : undefined;
  const merchantBefore = runScenarios.includes("hot-credit")
    ? await balanceOf(st, USERS.shop, acc.merchant)
    : undefined;
  const cardMerchantBefore: Balance = await balanceOf(st, USERS.shop, acc.cardMerchant);
  return { stormBefore, whaleBefore, merchantBefore, cardMerchantBefore };
}

/** What the cells committed, for the money checks. */
interface Tally {
  committed: Map<Scenario, number>;
  stormKeysCommitted: number;
  stormSeveral: number;
  settle: SettleResult | undefined;
}

/** Test cards for the card scenario, or why it cannot run (recorded in notRunnable). */
async function cardsFor(
  st: Stack,
  cardServed: boolean,
  notRunnable: { scenario: Scenario; why: string }[],
): Promise<CardFixture[] | undefined> {
  const scenario: Scenario = "card";
  if (!cardServed) {
    notRunnable.push({
      scenario,
      why: "the gateway does not serve CardService yet (services/gateway/src/access.ts has no rule for it)",
    });
    log("card: not yet runnable (no CardService in the gateway)");
    return undefined;
  }
  try {
    return await issueCards(st);
  } catch (e) {
    notRunnable.push({
      scenario,
      why: `issuing test cards failed: ${e instanceof Error ? e.message : String(e)}`,
    });
    log(`card: not runnable: ${String(e)}`);
    return undefined;
  }
}

/** Every scenario × concurrency cell of one configuration, in order; card settlement after the card cells. */
async function runAllCells(
  b: Bench,
  cardServed: boolean,
  runId: string,
  notRunnable: { scenario: Scenario; why: string }[],
): Promise<Tally> {
  const { config, stack: st, cells } = b;
  let cards: CardFixture[] | undefined;
  const t: Tally = { committed: new Map(), stormKeysCommitted: 0, stormSeveral: 0, settle: undefined };
  for (const scenario of config.scenarios) {
    if (scenario === "card") {
      cards = await cardsFor(st, cardServed, notRunnable);
      if (!cards) continue;
    }
    for (const c of concurrencies) {
      const cell = await runCell(b, scenario, c, runId, cards && scenario === "card" ? { cards } : {});
      cells.push(cell);
      t.committed.set(scenario, (t.committed.get(scenario) ?? 0) + cell.totals.committed);
      if (cell.storm) {
        t.stormKeysCommitted += cell.storm.keysCommitted;
        t.stormSeveral += cell.storm.keysWithSeveralTxns;
      }
      log(`${configs.length > 1 ? `[${config.label}] ` : ""}${describe(cell)}`);
    }
    if (scenario === "card" && cards && cardAuthorizations > 0) t.settle = await settleCards(b, cards, runId);
  }
  return t;
}

const ambiguousIn = (cells: readonly CellRecord[], scenario: Scenario) =>
  cells.filter((c) => c.scenario === scenario).reduce((a, c) => a + c.totals.ambiguous, 0);

/** hot-debit: the drain never overdraws, and the payer lost exactly what was committed. */
async function hotDebitChecks(
  b: Bench,
  runId: string,
  whaleBefore: Balance,
  t: Tally,
  checks: Check[],
): Promise<RunRecord["drain"]> {
  const st = b.stack;
  const r = await ask<DrainResult>({ type: "drain", concurrency: 64, requests: plan.drainCount * 2, runId });
  const drain = { ...r, requests: plan.drainCount * 2, affordable: plan.drainCount };
  const after = await balanceOf(st, USERS.drain, acc.drain);
  checks.push({
    name: "hot debit never overdraws",
    ok: r.committed === plan.drainCount && after.balance === 0n && after.available === 0n,
    detail: `${r.committed} of ${plan.drainCount * 2} committed from an account holding ${plan.drainCount}; balance now ${after.balance}, available ${after.available}`,
  });
  const whale = await balanceOf(st, USERS.whale, acc.whale);
  const moved = whaleBefore.balance - whale.balance;
  const n = t.committed.get("hot-debit") ?? 0;
  const ambiguous = ambiguousIn(b.cells, "hot-debit");
  checks.push({
    name: "hot debit moved exactly what was committed",
    ok: moved === BigInt(n) || ambiguous > 0,
    detail: `payer balance fell by ${moved}, ${n} transfers of 1 committed${ambiguous ? ` (${ambiguous} ambiguous failures: inconclusive)` : ""}`,
  });
  return drain;
}

/** hot-credit, card settlement and duplicate-storm: each moved exactly what was committed. */
async function creditChecks(
  b: Bench,
  before: Awaited<ReturnType<typeof balancesBefore>>,
  t: Tally,
  checks: Check[],
): Promise<void> {
  const { stack: st, config } = b;
  if (config.scenarios.includes("hot-credit")) {
    const m = await balanceOf(st, USERS.shop, acc.merchant);
    const got = m.balance - before.merchantBefore!.balance;
    const n = t.committed.get("hot-credit") ?? 0;
    const ambiguous = ambiguousIn(b.cells, "hot-credit");
    checks.push({
      name: "hot account received exactly what was committed",
      ok: got === BigInt(n) || ambiguous > 0,
      detail: `merchant balance rose by ${got}, ${n} transfers of 1 committed${ambiguous ? ` (${ambiguous} ambiguous failures: inconclusive)` : ""}`,
    });
  }
  const settle = t.settle;
  if (settle) {
    const m = await balanceOf(st, USERS.shop, acc.cardMerchant);
    const got = m.balance - before.cardMerchantBefore.balance;
    const ambiguous = Object.entries(settle.failed)
      .filter(([k]) => k.startsWith("batch:"))
      .reduce((a, [, n]) => a + n, 0);
    checks.push({
      name: "card settlement credited exactly the captured items",
      ok: got === BigInt(settle.captured) * 100n || ambiguous > 0,
      detail: `merchant balance rose by ${got} for ${settle.captured} captured items of 100${ambiguous ? ` (${ambiguous} items in failed batch calls: inconclusive)` : ""}`,
    });
  }
  if (config.scenarios.includes("duplicate-storm")) {
    const x = await balanceOf(st, USERS.storm, acc.storm);
    const moved = before.stormBefore!.balance - x.balance;
    checks.push({
      name: "duplicate-key storm moved money once per key",
      ok: moved === BigInt(t.stormKeysCommitted) && t.stormSeveral === 0,
      detail: `payer balance fell by ${moved} for ${t.stormKeysCommitted} committed keys; keys answered with more than one txn id: ${t.stormSeveral}`,
    });
  }
}

/** stack.assertConserved as a check; returns its result as JSON (bigints as strings). */
async function conservationCheck(st: Stack, checks: Check[]): Promise<unknown> {
  log("reconciling (stack.assertConserved) ...");
  try {
    const r = await st.assertConserved();
    const conservation = JSON.parse(
      JSON.stringify(r, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v)),
    ) as unknown;
    const usd = r.currencies
      .map((c) => `${c.currency} balance ${c.balanceMinor} = deposited ${c.depositedMinor}`)
      .join("; ");
    checks.push({
      name: "money conserved (stack.assertConserved)",
      ok: r.conserved && r.inDoubt.length === 0,
      detail: `${usd}; in doubt: ${r.inDoubt.length}; banks consistent: ${r.banks.every((x) => x.ledgerConsistent)}`,
    });
    return conservation;
  } catch (e) {
    checks.push({ name: "money conserved (stack.assertConserved)", ok: false, detail: String(e).slice(0, 2000) });
    return undefined;
  }
}

/** Whole-run CPU and peak RSS, read before anything stops. */
function processTotals(b: Bench): ProcessTotal[] {
  const end = cpuSnapshot(b);
  const processes: ProcessTotal[] = [...pids(b)].map(([name, pid]) => ({
    name,
    pid,
    cpuSeconds: Math.round((end.get(name) ?? 0) * 10) / 10,
    // One cluster of processes sharing memory: no single figure would be honest.
    peakRssMiB: name === "postgres" ? Number.NaN : (memoryMiB(pid)?.peakRssMiB ?? Number.NaN),
  }));
  processes.push({
    name: "bench-orchestrator",
    pid: process.pid,
    cpuSeconds: Math.round((end.get("bench-orchestrator") ?? 0) * 10) / 10,
    peakRssMiB: memoryMiB(process.pid)?.peakRssMiB ?? Math.round(process.memoryUsage().rss / 1048576),
  });
  return processes;
}

/** Each step on its own: whatever failed before, the stack must still stop. */
async function stopEverything(live: Live): Promise<void> {
  const step = async (what: string, f: () => Promise<unknown>) => {
    try {
      await f();
    } catch (e) {
      log(`cleanup: ${what} failed: ${String(e)}`);
    }
  };
  await step("load generator", stopLoadGenerator);
  await step("helpers", stopHelpers);
  if (live.stack) await step("stack", () => live.stack!.close());
  if (live.pg) await step("postgres", () => live.pg!.close());
  liveStackPids = [];
}

/** Profiles are written when the profiled process exits (stack.close): one summary per profile file. */
function collectProfiles(profileDir: string, stackBundles: ReadonlyMap<string, string>): string[] {
  const profiles: string[] = [];
  for (const name of profiled) {
    const dir = join(profileDir, name);
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir).filter((x) => x.endsWith(".cpuprofile"))) {
      const bundleUrl = pathToFileURL(join(repoRoot, "dist", `${stackBundles.get(name) ?? name}.js`)).href;
      const sum = summarizeProfile(
        JSON.parse(readFileSync(join(dir, f), "utf8")) as Parameters<typeof summarizeProfile>[0],
        25,
        { [bundleUrl]: join(dir, "bundle.js") },
      );
      profiles.push(profileMarkdown(`${name} (${f})`, sum));
    }
  }
  return profiles;
}

/** Everything one configuration measured, up to (not including) stopping its stack. */
interface Measuring {
  checks: Check[];
  notRunnable: { scenario: Scenario; why: string }[];
  cells: CellRecord[];
  drain?: RunRecord["drain"];
  settle?: SettleResult;
  conservation?: unknown;
  processes: ProcessTotal[];
}

/** Starts the stack, runs every cell, checks the money and reads the process totals. */
async function measure(
  config: StoreConfig,
  work: string,
  gatewayEnv: Record<string, string>,
  wantRedis: boolean,
  live: Live,
  m: Measuring,
  profileDir: string,
  stackBundles: Map<string, string>,
): Promise<{ used: boolean; why: string } | undefined> {
  const redis = await startStores(config, work, gatewayEnv, wantRedis, live);
  const cardServed = await startStack(config, gatewayEnv, live);
  const st = live.stack!;
  const banksEnv = await slowBankEnv(st, config.scenarios);
  await restartForBench(st, banksEnv, profileDir, stackBundles);
  const b = await startLoad(config, st, live.pg, m.cells);

  const runId = configs.length > 1 ? `${stamp}-${slug(config.label)}` : stamp;
  const before = await balancesBefore(st, config.scenarios);
  const t = await runAllCells(b, cardServed, runId, m.notRunnable);
  m.settle = t.settle;

  // ---- correctness: a benchmark that breaks money is a failed benchmark ----
  if (config.scenarios.includes("hot-debit"))
    m.drain = await hotDebitChecks(b, runId, before.whaleBefore!, t, m.checks);
  await creditChecks(b, before, t, m.checks);
  m.conservation = await conservationCheck(st, m.checks);
  for (const c of m.checks) log(`${c.ok ? "PASS" : "FAIL"} ${c.name}: ${c.detail}`);

  m.processes = processTotals(b);
  return redis;
}

async function runConfiguration(config: StoreConfig, work: string): Promise<Measured> {
  const runStartedAt = new Date().toISOString();
  const profileDir = join(args.out!, `${stamp}-profiles`, ...(configs.length > 1 ? [slug(config.label)] : []));
  const m: Measuring = { checks: [], notRunnable: [], cells: [], processes: [] };
  /** Service name -> its bundle under dist/ (for profiles). */
  const stackBundles = new Map<string, string>();
  mkdirSync(work, { recursive: true });

  // Redis: used whenever the gateway bundle can talk to it; one for all replicas.
  let redis = { used: false, why: "the gateway does not read REDIS_URL yet" };
  const gatewayEnv = baseGatewayEnv(config);
  const wantRedis = args.redis === "on" || (args.redis === "auto" && gatewayUsesRedis());
  if (args.redis === "off") redis = { used: false, why: "--redis off" };
  const live: Live = {};
  try {
    redis = (await measure(config, work, gatewayEnv, wantRedis, live, m, profileDir, stackBundles)) ?? redis;
  } finally {
    await stopEverything(live);
  }

  const profiles = collectProfiles(profileDir, stackBundles);
  return {
    config,
    startedAt: runStartedAt,
    redis,
    cells: m.cells,
    notRunnable: m.notRunnable,
    ...(m.drain ? { drain: m.drain } : {}),
    ...(m.settle ? { settle: m.settle } : {}),
    checks: m.checks,
    processes: m.processes,
    conservation: m.conservation,
    profiles,
  };
}

// ---- the run ----

/** Every configuration's record, with ratios to the echo ceiling and each run's headline. */
function reportOf(machine: ReturnType<typeof machineInfo>, measured: readonly Measured[]): BenchReport {
  // Ratios to the echo ceiling at the same concurrency (echo is measured once, in the first configuration).
  const echoAt = new Map(
    measured
      .flatMap((m) => m.cells)
      .filter((c) => c.scenario === "echo")
      .map((c) => [c.concurrency, c.okPerSecond]),
  );
  const withRatios = measured.map((m) => ({
    ...m,
    cells: m.cells.map((c) => {
      const e = echoAt.get(c.concurrency);
      return c.scenario !== "echo" && e ? { ...c, ratioToEcho: Math.round((c.okPerSecond / e) * 100) / 100 } : c;
    }),
  }));
  const echoPeak = peakOf(
    withRatios.flatMap((m) => m.cells),
    "echo",
  );
  const runs: RunRecord[] = withRatios.map((m) => ({ ...m, headline: headlineOf(m.cells, echoPeak) }));
  const report: BenchReport = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    command,
    machine,
    loadAvgEnd: machineInfo().loadAvg,
    options: { ...args, durationMs, warmupMs, concurrencies, scenarios, cardAuthorizations },
    matrix,
    breakdownAt,
    runs,
    ok: runs.every((r) => !r.failed && r.checks.every((c) => c.ok) && r.notRunnable.length === 0),
  };
  return report;
}

/** Writes the JSON and Markdown reports (and the README section when asked), then prints the Markdown. */
function writeReport(report: BenchReport): void {
  mkdirSync(args.out!, { recursive: true });
  const md = renderMarkdown(report);
  const base = join(args.out!, `${stamp}${matrix ? "-matrix" : ""}`);
  writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(`${base}.md`, `# paygate benchmark ${stamp}${matrix ? " (store × replicas matrix)" : ""}\n\n${md}\n`);
  log(`wrote ${base}.json and ${base}.md`);
  if (writeReadme) {
    updateReadme(join(repoRoot, "bench", "README.md"), md, README_SKELETON, matrix ? "matrix" : "figures");
    log(`updated bench/README.md (${matrix ? "Latest matrix" : "Latest figures"})`);
  }
  process.stdout.write(`\n${md}\n`);
}

async function main(): Promise<number> {
  const machine = machineInfo();
  log(
    `${machine.nproc} × ${machine.cpuModel}, load average ${machine.loadAvg}; ${configs.map((c) => `${c.label}: ${c.scenarios.join(",")}`).join("; ")} × concurrency ${concurrencies.join("/")} × (${warmupMs / 1000}+${durationMs / 1000}) s`,
  );
  const work = mkdtempSync(join(tmpdir(), "paygate-bench-"));
  const measured: Measured[] = [];
  try {
    for (const config of configs) {
      if (configs.length > 1) log(`==== ${config.label} (${measured.length + 1} of ${configs.length}) ====`);
      try {
        measured.push(await runConfiguration(config, join(work, slug(config.label))));
      } catch (e) {
        if (process.exitCode === 130) throw e;
        // One configuration that cannot run (no PostgreSQL here, a replica that will not start) does not cost the others.
        const why = e instanceof Error ? e.message : String(e);
        log(`${config.label}: FAILED: ${why}`);
        measured.push({
          config,
          startedAt: new Date().toISOString(),
          redis: { used: false, why: "not reached" },
          cells: [],
          notRunnable: [],
          checks: [{ name: `${config.label} ran`, ok: false, detail: why.slice(0, 2000) }],
          processes: [],
          profiles: [],
          failed: why.slice(0, 500),
        });
      }
    }
  } finally {
    fsyncProbe.close();
    rmSync(work, { recursive: true, force: true });
  }

  const report = reportOf(machine, measured);
  writeReport(report);
  const { runs } = report;
  const failedRuns = runs.filter((r) => r.failed);
  const moneyOk = runs.every((r) => r.checks.every((c) => c.ok));
  const notRunnable = runs.flatMap((r) => r.notRunnable);
  if (failedRuns.length)
    log(`FAILED: ${failedRuns.map((r) => r.config.label).join(", ")} did not run to the end (see above)`);
  else if (!moneyOk) log("FAILED: a money check failed (see above)");
  else if (notRunnable.length) log(`done; not yet runnable: ${notRunnable.map((n) => n.scenario).join(", ")}`);
  return moneyOk && failedRuns.length === 0 ? 0 : 1;
}

async function issueCards(stack: Stack): Promise<CardFixture[]> {
  const admin = stack.client(AdminService, await stack.login(USERS.admin));
  const year = new Date().getUTCFullYear() + 3;
  const out: CardFixture[] = [];
  for (const [i, accountId] of acc.cardholder.entries()) {
    const r = await admin.issueCard({ accountId, cardholderName: `Bench Holder ${i}`, expMonth: 12, expYear: year });
    out.push({
      number: r.number,
      expMonth: r.expMonth,
      expYear: r.expYear,
      cvc: r.cvc,
      cardholderName: `Bench Holder ${i}`,
    });
  }
  return out;
}

/** Tops the authorizations up to the target count, then settles them in batches. */
async function settleCards(b: Bench, cards: CardFixture[], runId: string): Promise<SettleResult | undefined> {
  const target = cardAuthorizations;
  const codes = b.cells.flatMap((c) => (c.scenario === "card" ? (c.authCodes ?? []) : []));
  if (codes.length < target) {
    log(`card: authorizing ${target - codes.length} more to reach ${target} ...`);
    const top = await runCell(b, "card", 64, `${runId}-topup`, {
      cards,
      requestsMax: target - codes.length,
      warmupMs: 0,
      durationMs: 600_000,
    });
    codes.push(...(top.authCodes ?? []));
  }
  log(`card: settling ${Math.min(target, codes.length)} authorizations ...`);
  const r = await ask<SettleResult>({
    type: "settle",
    authCodes: codes.slice(0, target),
    batchItemsMax: Number(args["settle-batch-max"]),
    runId,
    budgetMs: Number(args["settle-budget-s"]) * 1000,
  });
  log(
    `card: ${r.captured} of ${r.offered} captured in ${r.elapsedMs} ms (${r.itemsPerSecond}/s)${r.items < r.offered ? `; stopped at the ${args["settle-budget-s"]} s budget` : ""}`,
  );
  return r;
}

const README_SKELETON = "# Benchmarks\n\n`make bench` runs every scenario against a real stack; see bench/run.ts.\n";

// Ctrl-C: stop our own children; the pending load-generator call then fails
// and the configuration's finally block stops the stack (and PostgreSQL).
const onSignal = () => {
  process.exitCode = 130;
  for (const h of helpers) h.child.kill("SIGTERM");
  loadGen?.kill("SIGTERM");
};
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);
// Last resort if this process dies with children still up: kill exactly the ones we started.
// (The postmaster also dies with us: testkit starts it with a parent-death signal.)
process.on("exit", () => {
  for (const pid of [...helpers.map((h) => h.child.pid), loadGen?.pid, ...liveStackPids]) {
    if (pid === undefined) continue;
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
});

process.exitCode = await main().catch((e: unknown) => {
  if (process.exitCode !== 130) throw e;
  log("interrupted; everything we started is stopped");
  return 130;
});
