// `make bench`: the whole paygate on this machine (real processes, mTLS,
// durable SQLite, Redis when the gateway supports it), every scenario at
// every concurrency, the echo ceiling measured in the same run by the same
// load generator, then the money checks. Writes bench/results/<time>.json and
// .md and, for a full run, bench/README.md's "Latest figures".
//   node --import tsx bench/run.ts [--duration-s 8] [--warmup-s 1] [--concurrency 1,16,64,256]
//        [--scenarios cross-bank,hot-credit] [--connections 1] [--cpu-prof gateway,bank-a] [--no-readme]
// Exit code 0 only if every scenario ran and every money check passed.
import { fork, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { appendFileSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { AdminService, PaymentService } from "@paygate/proto/gateway";
import { freePort, repoRoot, ServiceProcess, Stack, tlsFilesFor } from "@paygate/testkit";
import { createFsyncProbe } from "./lib/fsync-probe.js";
import { cpuSeconds, machineBusySeconds, machineInfo, memoryMiB } from "./lib/proc.js";
import type { CardFixture, CellResult, Command, DrainResult, SettleResult } from "./load-generator.js";
import { profileMarkdown, summarizeProfile } from "./profile-summary.js";
import { peakOf, renderMarkdown, updateReadme, type BenchReport, type CellRecord, type Check, type ProcessTotal } from "./report.js";
import { accounts, BENCH_BANKS, benchSeed, bureauReports, SCENARIOS, SLOW_BANK, USERS, type Scenario } from "./scenarios.js";

const DEFAULT_CONCURRENCY = "1,16,64,256";
const { values: args } = parseArgs({
  options: {
    "duration-s": { type: "string", default: "6" },
    "warmup-s": { type: "string", default: "1" },
    concurrency: { type: "string", default: DEFAULT_CONCURRENCY },
    scenarios: { type: "string", default: SCENARIOS.join(",") },
    connections: { type: "string", default: "1" },
    "accounts-per-bank": { type: "string", default: "200" },
    "delay-ms": { type: "string", default: "5" },
    "duplicates-per-key": { type: "string", default: "16" },
    "drain-count": { type: "string", default: "300" },
    "card-authorizations": { type: "string", default: "10000" },
    // The gateway's SETTLE_ITEMS_MAX: the merchant's job sends the day in calls of this size.
    "settle-batch-max": { type: "string", default: "500" },
    // Bounds the default run while settlement is slow; raise it to settle all.
    "settle-budget-s": { type: "string", default: "60" },
    redis: { type: "string", default: "auto" },
    "cpu-prof": { type: "string", default: "" },
    // Keep every service log line (JSON) in <dir>/<service>.jsonl, e.g. to split latency by method.
    "keep-logs": { type: "string", default: "" },
    readme: { type: "boolean" },
    "no-readme": { type: "boolean" },
    out: { type: "string", default: join(repoRoot, "bench", "results") },
  },
});

const durationMs = Number(args["duration-s"]) * 1000;
const warmupMs = Number(args["warmup-s"]) * 1000;
const concurrencies = args.concurrency!.split(",").map(Number);
const scenarios = args.scenarios!.split(",").map((s) => s.trim()) as Scenario[];
for (const s of scenarios) if (!SCENARIOS.includes(s)) throw new Error(`unknown scenario ${s}; one of ${SCENARIOS.join(", ")}`);
if (concurrencies.some((c) => !Number.isInteger(c) || c < 1 || c > 4096)) throw new Error("--concurrency: integers in 1..4096");
const plan = { perBank: Number(args["accounts-per-bank"]), openingMinor: 1_000_000_000_000n, drainCount: Number(args["drain-count"]) };
const acc = accounts(plan);
const fullRun = scenarios.length === SCENARIOS.length && args.concurrency === DEFAULT_CONCURRENCY;
const writeReadme = args["no-readme"] ? false : (args.readme ?? fullRun);
const profiled = args["cpu-prof"]!.split(",").filter(Boolean);
const startedAt = new Date();
const stamp = startedAt.toISOString().replace(/[:.]/g, "-").replace(/-\d{3}Z$/, "Z");
const argv = process.argv.slice(2).join(" ");
const command = process.env.MAKELEVEL ? `make bench${argv ? ` BENCH_ARGS="${argv}"` : ""}` : `node --import tsx bench/run.ts${argv ? ` ${argv}` : ""}`;

const log = (msg: string) => process.stdout.write(`bench: ${msg}\n`);
/** Every cell measured in this run, in order. */
const cells: CellRecord[] = [];
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
/** Service processes of the running stack, for the exit-time safety net. */
let liveStackPids: number[] = [];

// ---- helper processes we start (and only these are stopped by us) ----

interface Helper {
  readonly name: string;
  readonly child: ChildProcess;
  readonly port: number;
}
const helpers: Helper[] = [];
/** Services the Stack does not start itself (the credit bureau), stopped by us. */
const extraServices: ServiceProcess[] = [];
/** Service name -> its bundle under dist/ (for profiles). */
const stackBundles = new Map<string, string>();

async function startHelper(name: string, command: string, argv: string[], ready: (line: string) => number | undefined): Promise<Helper> {
  const child = spawn(command, argv, { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (c: string) => (stderr += c).length > 8000 && (stderr = stderr.slice(-4000)));
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

function startLoadGenerator(): ChildProcess {
  const child = fork(join(repoRoot, "bench", "load-generator.ts"), [], { cwd: repoRoot, execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  child.on("message", (m: { id: number; result?: unknown; error?: string }) => {
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

// ---- measuring processes ----

function pids(stack: Stack): Map<string, number> {
  const m = new Map<string, number>();
  if (stack.gateway.pid) m.set("gateway", stack.gateway.pid);
  for (const [n, p] of stack.banks) if (p.pid) m.set(n, p.pid);
  for (const p of extraServices) if (p.pid) m.set(p.name, p.pid);
  for (const h of helpers) if (h.child.pid) m.set(h.name, h.child.pid);
  if (loadGen?.pid) m.set("load-generator", loadGen.pid);
  return m;
}

function cpuSnapshot(stack: Stack): Map<string, number> {
  const out = new Map<string, number>();
  for (const [n, pid] of pids(stack)) {
    const s = cpuSeconds(pid);
    if (s !== undefined) out.set(n, s);
  }
  const me = process.cpuUsage();
  out.set("bench-orchestrator", (me.user + me.system) / 1e6);
  return out;
}

function services(stack: Stack): ServiceProcess[] {
  return [stack.gateway, ...stack.banks.values(), ...extraServices];
}

/** Log lines are kept in memory by ServiceProcess; count the bad ones, then drop them. */
function drainLogs(stack: Stack): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const p of services(stack)) {
    const bad = p.lines.filter((l) => l.level === "error" || l.level === "fatal").length;
    if (bad) counts[p.name] = bad;
    if (args["keep-logs"]) {
      mkdirSync(args["keep-logs"], { recursive: true });
      appendFileSync(join(args["keep-logs"], `${p.name}.jsonl`), p.lines.map((l) => `${JSON.stringify(l)}\n`).join(""));
    }
    p.lines.splice(0);
  }
  return counts;
}

async function runCell(stack: Stack, scenario: Scenario, concurrency: number, runId: string, extra: { cards?: readonly CardFixture[]; requestsMax?: number; warmupMs?: number; durationMs?: number } = {}): Promise<CellRecord> {
  const fsync = fsyncProbe.sample();
  stallGapMaxMs = 0;
  const before = cpuSnapshot(stack);
  const busyBefore = machineBusySeconds();
  const wallBefore = performance.now();
  const r = await ask<CellResult>({
    type: "cell",
    scenario,
    concurrency,
    warmupMs: extra.warmupMs ?? warmupMs,
    durationMs: extra.durationMs ?? durationMs,
    runId,
    duplicatesPerKey: Number(args["duplicates-per-key"]),
    ...(extra.cards ? { cards: extra.cards } : {}),
    ...(extra.requestsMax !== undefined ? { requestsMax: extra.requestsMax } : {}),
  });
  const after = cpuSnapshot(stack);
  const busy = machineBusySeconds() - busyBefore;
  const wallS = (performance.now() - wallBefore) / 1000;
  const cpu: Record<string, number> = {};
  const perOp: Record<string, number> = {};
  // The whole cell (warm-up, drain) used this CPU for this many successful operations.
  const ops = Math.max(1, r.totals.committed);
  for (const [n, v] of after) {
    const d = v - (before.get(n) ?? v);
    cpu[n] = Math.round(d * 100) / 100;
    if (n !== "bench-orchestrator") perOp[n] = Math.round(((d * 1000) / ops) * 100) / 100;
  }
  const down = services(stack).filter((p) => !p.running);
  if (down.length) throw new Error(`service(s) died during ${scenario} c=${concurrency}: ${down.map((p) => `${p.name} ${JSON.stringify(p.lastExit)}\n${p.rawStderr.join("").slice(-2000)}`).join("\n")}`);
  const ours = Object.values(cpu).reduce((a, b) => a + b, 0);
  // Cores kept busy by processes that are not part of this benchmark: the noise.
  const otherCores = Math.round((Math.max(0, busy - ours) / wallS) * 100) / 100;
  return { ...r, cpuSeconds: cpu, cpuMsPerOp: perOp, errorLogLines: drainLogs(stack), otherCores, fsyncBefore: fsync, ...(stallGapMaxMs > STALL_GAP_MS ? { stalledMs: Math.round(stallGapMaxMs) } : {}) };
}

function describe(c: CellRecord): string {
  const errs = Object.entries(c.errors).map(([k, v]) => `${k}=${v}`).join(" ");
  const cpu = ["gateway", ...BENCH_BANKS, "echo", "load-generator"].filter((n) => c.cpuMsPerOp[n] !== undefined && c.cpuSeconds[n]! > 0.05).map((n) => `${n} ${c.cpuMsPerOp[n]}`).join(", ");
  return `${c.scenario.padEnd(16)} c=${String(c.concurrency).padEnd(4)} ${String(c.okPerSecond).padStart(8)}/s  p50 ${c.latency.p50Ms} p90 ${c.latency.p90Ms} p99 ${c.latency.p99Ms} ms${errs ? `  failures: ${errs}` : ""}  [cpu ms/op: ${cpu}; other processes: ${c.otherCores} cores; fsync p50 ${c.fsyncBefore.p50Ms} ms]${c.stalledMs ? `  MACHINE STALLED ${Math.round(c.stalledMs / 1000)} s: this cell is invalid` : ""}`;
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
  return startHelper("redis", "redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no"], (line) =>
    /Ready to accept connections/.test(line) ? port : undefined,
  );
}

// ---- balances, read as the owner ----

async function balanceOf(stack: Stack, user: string, accountId: string): Promise<{ balance: bigint; available: bigint }> {
  const client = stack.client(PaymentService, await stack.login(user));
  const a = (await client.getBalance({ accountId })).accounts[0];
  if (!a) throw new Error(`no balance for ${accountId}`);
  return { balance: a.balanceMinor, available: a.availableMinor };
}

// ---- the run ----

async function main(): Promise<number> {
  const machine = machineInfo();
  log(`${machine.nproc} × ${machine.cpuModel}, load average ${machine.loadAvg}; ${scenarios.length} scenarios × concurrency ${concurrencies.join("/")} × (${warmupMs / 1000}+${durationMs / 1000}) s`);
  const work = mkdtempSync(join(tmpdir(), "paygate-bench-"));
  const profileDir = join(args.out!, `${stamp}-profiles`);
  const checks: Check[] = [];
  const notRunnable: { scenario: Scenario; why: string }[] = [];
  const profiles: string[] = [];
  let drain: BenchReport["drain"];
  let settle: SettleResult | undefined;
  let conservation: unknown;
  let processes: ProcessTotal[] = [];

  // Redis: used whenever the gateway bundle can talk to it.
  let redis = { used: false, why: "the gateway does not read REDIS_URL yet" };
  const gatewayEnv: Record<string, string> = {
    // Production-like timing, not the test suite's hurried values.
    COMMIT_TIMEOUT_MS: "5000",
    REDRIVE_INTERVAL_MS: "1000",
    REDRIVE_BACKOFF_MAX_MS: "30000",
    // Experiments (e.g. V8 flags in NODE_OPTIONS, PARTICIPANT_BATCH_MAX=0): a JSON object of extra gateway env.
    ...(JSON.parse(process.env.BENCH_GATEWAY_ENV ?? "{}") as Record<string, string>),
  };
  const wantRedis = args.redis === "on" || (args.redis === "auto" && gatewayUsesRedis());
  if (args.redis === "off") redis = { used: false, why: "--redis off" };
  if (wantRedis) {
    if (!hasCommand("redis-server")) throw new Error("redis-server is not installed: `make system-deps` (or apt-get install redis-server), or pass --redis off");
    const r = await startRedis(work);
    gatewayEnv.REDIS_URL = `redis://127.0.0.1:${r.port}`;
    redis = { used: true, why: `redis-server on port ${r.port}` };
    log(`redis-server on port ${r.port}`);
  }

  log("starting the stack (3 banks, gateway) ...");
  const stack = await Stack.start({
    banks: BENCH_BANKS,
    seed: benchSeed(plan),
    prepareTimeoutMs: 10_000,
    gatewayEnv,
    bankEnv: { RESOLVE_INTERVAL_MS: "1000" },
  });
  try {
    // bank-c behind a latency proxy: the gateway must be restarted to dial it there.
    const slow = await startHelper(
      "delay-proxy",
      process.execPath,
      ["--import", "tsx", join(repoRoot, "bench", "delay-proxy.ts"), "--target", new URL(stack.bankUrls.get(SLOW_BANK)!).host, "--delay-ms", args["delay-ms"]!],
      jsonPort,
    );
    const banksEnv = BENCH_BANKS.map((b) => `${b}=${b === SLOW_BANK ? `https://127.0.0.1:${slow.port}` : stack.bankUrls.get(b)}`).join(",");
    // Card authorizations ask the credit bureau; start one unless the Stack already did.
    const cardServed = readFileSync(join(repoRoot, "services", "gateway", "src", "access.ts"), "utf8").includes("CardService");
    if (scenarios.includes("card") && cardServed && stack.gateway.env.CREDIT_BUREAU_URL === undefined) {
      const data = join(work, "credit-bureau.yaml");
      writeFileSync(data, bureauReports());
      const port = await freePort();
      const tls = tlsFilesFor(stack.certs, "credit-bureau");
      const bureau = new ServiceProcess({
        name: "credit-bureau",
        bundle: "credit-bureau",
        env: { CREDIT_BUREAU_PORT: String(port), CREDIT_BUREAU_DATA_FILE: data, TLS_CA_FILE: tls.caFile, TLS_CERT_FILE: tls.certFile, TLS_KEY_FILE: tls.keyFile, LOG_LEVEL: "info", METRICS_PORT: "0" },
      });
      extraServices.push(bureau);
      await bureau.start();
      stack.gateway.env.CREDIT_BUREAU_URL = `https://127.0.0.1:${port}`;
    }
    for (const p of services(stack)) {
      stackBundles.set(p.name, p.options.bundle);
      const restart = p === stack.gateway || profiled.includes(p.name);
      if (!restart) continue;
      await p.stop();
      if (p === stack.gateway) p.env.BANKS = banksEnv;
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
    log(`${SLOW_BANK} is reached through a +${args["delay-ms"]} ms proxy on port ${slow.port}${profiled.length ? `; profiling ${profiled.join(", ")} (figures include profiler overhead)` : ""}`);

    const echo = await startHelper("echo", process.execPath, ["--import", "tsx", join(repoRoot, "bench", "echo-server.ts"), "--certs", stack.certs], jsonPort);
    liveStackPids = [...pids(stack).values()];
    loadGen = startLoadGenerator();
    await ask({ type: "init", gatewayUrl: stack.gatewayUrl, echoUrl: `https://127.0.0.1:${echo.port}`, certsDir: stack.certs, accounts: acc, connections: Number(args.connections) });
    drainLogs(stack);

    const runId = stamp;
    let cards: CardFixture[] | undefined;
    const committed = new Map<Scenario, number>();
    let stormKeysCommitted = 0;
    let stormSeveral = 0;
    const stormBefore = scenarios.includes("duplicate-storm") ? await balanceOf(stack, USERS.storm, acc.storm) : undefined;
    const whaleBefore = scenarios.includes("hot-debit") ? await balanceOf(stack, USERS.whale, acc.whale) : undefined;
    const merchantBefore = scenarios.includes("hot-credit") ? await balanceOf(stack, USERS.shop, acc.merchant) : undefined;
    const cardMerchantBefore = await balanceOf(stack, USERS.shop, acc.cardMerchant);

    for (const scenario of scenarios) {
      if (scenario === "card") {
        if (!cardServed) {
          notRunnable.push({ scenario, why: "the gateway does not serve CardService yet (services/gateway/src/access.ts has no rule for it)" });
          log("card: not yet runnable (no CardService in the gateway)");
          continue;
        }
        try {
          cards = await issueCards(stack);
        } catch (e) {
          notRunnable.push({ scenario, why: `issuing test cards failed: ${e instanceof Error ? e.message : String(e)}` });
          log(`card: not runnable: ${String(e)}`);
          continue;
        }
      }
      for (const c of concurrencies) {
        const cell = await runCell(stack, scenario, c, runId, cards && scenario === "card" ? { cards } : {});
        cells.push(cell);
        committed.set(scenario, (committed.get(scenario) ?? 0) + cell.totals.committed);
        if (cell.storm) {
          stormKeysCommitted += cell.storm.keysCommitted;
          stormSeveral += cell.storm.keysWithSeveralTxns;
        }
        log(describe(cell));
      }
      if (scenario === "card" && cards) settle = await settleCards(stack, cards, runId);
    }

    // Ratios to the echo ceiling at the same concurrency.
    const echoAt = new Map(cells.filter((c) => c.scenario === "echo").map((c) => [c.concurrency, c.okPerSecond]));
    for (const [i, c] of cells.entries()) {
      const e = echoAt.get(c.concurrency);
      if (c.scenario !== "echo" && e) cells[i] = { ...c, ratioToEcho: Math.round((c.okPerSecond / e) * 100) / 100 };
    }

    // ---- correctness: a benchmark that breaks money is a failed benchmark ----
    if (scenarios.includes("hot-debit")) {
      const r = await ask<DrainResult>({ type: "drain", concurrency: 64, requests: plan.drainCount * 2, runId });
      drain = { ...r, requests: plan.drainCount * 2, affordable: plan.drainCount };
      const after = await balanceOf(stack, USERS.drain, acc.drain);
      checks.push({
        name: "hot debit never overdraws",
        ok: r.committed === plan.drainCount && after.balance === 0n && after.available === 0n,
        detail: `${r.committed} of ${plan.drainCount * 2} committed from an account holding ${plan.drainCount}; balance now ${after.balance}, available ${after.available}`,
      });
      const whale = await balanceOf(stack, USERS.whale, acc.whale);
      const moved = whaleBefore!.balance - whale.balance;
      const n = committed.get("hot-debit") ?? 0;
      const ambiguous = cells.filter((c) => c.scenario === "hot-debit").reduce((s, c) => s + c.totals.ambiguous, 0);
      checks.push({ name: "hot debit moved exactly what was committed", ok: moved === BigInt(n) || ambiguous > 0, detail: `payer balance fell by ${moved}, ${n} transfers of 1 committed${ambiguous ? ` (${ambiguous} ambiguous failures: inconclusive)` : ""}` });
    }
    if (scenarios.includes("hot-credit")) {
      const m = await balanceOf(stack, USERS.shop, acc.merchant);
      const got = m.balance - merchantBefore!.balance;
      const n = committed.get("hot-credit") ?? 0;
      const ambiguous = cells.filter((c) => c.scenario === "hot-credit").reduce((s, c) => s + c.totals.ambiguous, 0);
      checks.push({ name: "hot account received exactly what was committed", ok: got === BigInt(n) || ambiguous > 0, detail: `merchant balance rose by ${got}, ${n} transfers of 1 committed${ambiguous ? ` (${ambiguous} ambiguous failures: inconclusive)` : ""}` });
    }
    if (settle) {
      const m = await balanceOf(stack, USERS.shop, acc.cardMerchant);
      const got = m.balance - cardMerchantBefore.balance;
      const ambiguous = Object.entries(settle.failed).filter(([k]) => k.startsWith("batch:")).reduce((s, [, n]) => s + n, 0);
      checks.push({
        name: "card settlement credited exactly the captured items",
        ok: got === BigInt(settle.captured) * 100n || ambiguous > 0,
        detail: `merchant balance rose by ${got} for ${settle.captured} captured items of 100${ambiguous ? ` (${ambiguous} items in failed batch calls: inconclusive)` : ""}`,
      });
    }
    if (scenarios.includes("duplicate-storm")) {
      const s = await balanceOf(stack, USERS.storm, acc.storm);
      const moved = stormBefore!.balance - s.balance;
      checks.push({
        name: "duplicate-key storm moved money once per key",
        ok: moved === BigInt(stormKeysCommitted) && stormSeveral === 0,
        detail: `payer balance fell by ${moved} for ${stormKeysCommitted} committed keys; keys answered with more than one txn id: ${stormSeveral}`,
      });
    }
    log("reconciling (stack.assertConserved) ...");
    try {
      const r = await stack.assertConserved();
      conservation = JSON.parse(JSON.stringify(r, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v)));
      const usd = r.currencies.map((c) => `${c.currency} balance ${c.balanceMinor} = deposited ${c.depositedMinor}`).join("; ");
      checks.push({ name: "money conserved (stack.assertConserved)", ok: r.conserved && r.inDoubt.length === 0, detail: `${usd}; in doubt: ${r.inDoubt.length}; banks consistent: ${r.banks.every((b) => b.ledgerConsistent)}` });
    } catch (e) {
      checks.push({ name: "money conserved (stack.assertConserved)", ok: false, detail: String(e).slice(0, 2000) });
    }
    for (const c of checks) log(`${c.ok ? "PASS" : "FAIL"} ${c.name}: ${c.detail}`);

    // Whole-run CPU and peak RSS, read before anything stops.
    const end = cpuSnapshot(stack);
    processes = [...pids(stack)].map(([name, pid]) => ({ name, pid, cpuSeconds: Math.round((end.get(name) ?? 0) * 10) / 10, peakRssMiB: memoryMiB(pid)?.peakRssMiB ?? Number.NaN }));
    const me = process.memoryUsage();
    processes.push({ name: "bench-orchestrator", pid: process.pid, cpuSeconds: Math.round((end.get("bench-orchestrator") ?? 0) * 10) / 10, peakRssMiB: memoryMiB(process.pid)?.peakRssMiB ?? Math.round(me.rss / 1048576) });
  } finally {
    // Each step on its own: whatever failed above, the stack must still stop.
    const step = async (what: string, f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (e) {
        log(`cleanup: ${what} failed: ${String(e)}`);
      }
    };
    await step("credit bureau", () => Promise.all(extraServices.map((p) => p.stop())));
    await step("load generator", async () => {
      if (!loadGen || loadGen.exitCode !== null || loadGen.signalCode !== null) return;
      const exited = once(loadGen, "exit");
      await ask({ type: "exit" }).catch(() => loadGen?.kill("SIGTERM"));
      await exited;
      loadGen = undefined;
    });
    await step("helpers", stopHelpers);
    await step("stack", () => stack.close());
    liveStackPids = [];
    fsyncProbe.close();
    rmSync(work, { recursive: true, force: true });
  }

  // Profiles are written when the profiled process exits (stack.close above).
  for (const name of profiled) {
    const dir = join(profileDir, name);
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir).filter((x) => x.endsWith(".cpuprofile"))) {
      const bundleUrl = pathToFileURL(join(repoRoot, "dist", `${stackBundles.get(name) ?? name}.js`)).href;
      const s = summarizeProfile(JSON.parse(readFileSync(join(dir, f), "utf8")) as Parameters<typeof summarizeProfile>[0], 25, { [bundleUrl]: join(dir, "bundle.js") });
      profiles.push(profileMarkdown(`${name} (${f})`, s));
    }
  }

  const echoPeak = peakOf(cells, "echo");
  const crossPeak = peakOf(cells, "cross-bank");
  const hotPeak = peakOf(cells, "hot-credit");
  const report: BenchReport = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    command,
    machine,
    loadAvgEnd: machineInfo().loadAvg,
    options: { ...args, durationMs, warmupMs, concurrencies, scenarios },
    redis,
    cells,
    notRunnable,
    headline: {
      ...(echoPeak ? { echoPeak: { perSecond: echoPeak.okPerSecond, concurrency: echoPeak.concurrency } } : {}),
      ...(crossPeak ? { crossBankPeak: { perSecond: crossPeak.okPerSecond, concurrency: crossPeak.concurrency, p99Ms: crossPeak.latency.p99Ms } } : {}),
      ...(echoPeak && crossPeak ? { ratio: Math.round((crossPeak.okPerSecond / echoPeak.okPerSecond) * 100) / 100 } : {}),
      ...(hotPeak && crossPeak ? { hotCreditVsUniform: Math.round((hotPeak.okPerSecond / crossPeak.okPerSecond) * 100) / 100 } : {}),
    },
    ...(drain ? { drain } : {}),
    ...(settle ? { settle } : {}),
    checks,
    processes,
    conservation,
    profiles,
    ok: checks.every((c) => c.ok) && notRunnable.length === 0,
  };
  mkdirSync(args.out!, { recursive: true });
  const md = renderMarkdown(report);
  const base = join(args.out!, stamp);
  writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(`${base}.md`, `# paygate benchmark ${stamp}\n\n${md}\n`);
  log(`wrote ${base}.json and ${base}.md`);
  if (writeReadme) {
    updateReadme(join(repoRoot, "bench", "README.md"), md, README_SKELETON);
    log("updated bench/README.md (Latest figures)");
  }
  process.stdout.write(`\n${md}\n`);
  const moneyOk = checks.every((c) => c.ok);
  if (!moneyOk) log("FAILED: a money check failed (see above)");
  else if (notRunnable.length) log(`done; not yet runnable: ${notRunnable.map((n) => n.scenario).join(", ")}`);
  return moneyOk ? 0 : 1;
}

async function issueCards(stack: Stack): Promise<CardFixture[]> {
  const admin = stack.client(AdminService, await stack.login(USERS.admin));
  const year = new Date().getUTCFullYear() + 3;
  const out: CardFixture[] = [];
  for (const [i, accountId] of acc.cardholder.entries()) {
    const r = await admin.issueCard({ accountId, cardholderName: `Bench Holder ${i}`, expMonth: 12, expYear: year });
    out.push({ number: r.number, expMonth: r.expMonth, expYear: r.expYear, cvc: r.cvc, cardholderName: `Bench Holder ${i}` });
  }
  return out;
}

/** Tops the authorizations up to the target count, then settles them in batches. */
async function settleCards(stack: Stack, cards: CardFixture[], runId: string): Promise<SettleResult | undefined> {
  const target = Number(args["card-authorizations"]);
  const codes = cells.flatMap((c) => (c.scenario === "card" ? (c.authCodes ?? []) : []));
  if (codes.length < target) {
    log(`card: authorizing ${target - codes.length} more to reach ${target} ...`);
    const top = await runCell(stack, "card", 64, `${runId}-topup`, { cards, requestsMax: target - codes.length, warmupMs: 0, durationMs: 600_000 });
    codes.push(...(top.authCodes ?? []));
  }
  log(`card: settling ${Math.min(target, codes.length)} authorizations ...`);
  const r = await ask<SettleResult>({ type: "settle", authCodes: codes.slice(0, target), batchItemsMax: Number(args["settle-batch-max"]), runId, budgetMs: Number(args["settle-budget-s"]) * 1000 });
  log(`card: ${r.captured} of ${r.offered} captured in ${r.elapsedMs} ms (${r.itemsPerSecond}/s)${r.items < r.offered ? `; stopped at the ${args["settle-budget-s"]} s budget` : ""}`);
  return r;
}

const README_SKELETON = "# Benchmarks\n\n`make bench` runs every scenario against a real stack; see bench/run.ts.\n";

// Ctrl-C: stop our own children; the pending load-generator call then fails
// and main's finally block stops the stack.
const onSignal = () => {
  process.exitCode = 130;
  for (const h of helpers) h.child.kill("SIGTERM");
  loadGen?.kill("SIGTERM");
};
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);
// Last resort if this process dies with children still up: kill exactly the ones we started.
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
