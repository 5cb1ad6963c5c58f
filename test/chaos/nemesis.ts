// The fault injector: at random moments (from the seed) it kills a process
// with SIGKILL and restarts it (a gateway replica, a bank, the credit bureau,
// the checkout, Redis, the PostgreSQL postmaster with every backend),
// restarts one with a named fault point armed (PAYGATE_FAULTPOINTS: it dies
// exactly there under load), freezes one with SIGSTOP/SIGCONT (a replica long
// enough for its lease to run out and the others to take it over; PostgreSQL
// whole or only its postmaster), cuts, blackholes, delays or garbles the
// links between replicas and a bank (one replica's or all of them), cuts
// clients off one replica or all, and partitions one replica from
// PostgreSQL. Every fault ends by healing what it broke; processes come back
// as a supervisor brings them back (retried with back-off while what they
// need is down). A watcher notices processes that die on their own.
import { readdirSync, readFileSync } from "node:fs";
import { faultPoints, type FaultPoint } from "@paygate/faults";
import type { ServiceProcess } from "@paygate/testkit";
import type { Rng } from "../sim/rng.js";
import type { Cluster } from "./cluster.js";
import type { History } from "./history.js";
import type { LinkProxy } from "./proxy.js";
import { sleep } from "./workload.js";

export type FaultKind =
  | "kill_gateway"
  | "kill_bank"
  | "faultpoint_gateway"
  | "faultpoint_bank"
  | "freeze_gateway"
  | "freeze_bank"
  | "cut_link"
  | "blackhole_link"
  | "delay_link"
  | "garble_link"
  | "cut_client_link"
  | "kill_redis"
  | "freeze_redis"
  | "kill_postgres"
  | "freeze_postgres"
  | "cut_postgres_link"
  | "kill_bureau"
  | "freeze_bureau"
  | "kill_checkout"
  | "cut_checkout_link";

const WEIGHTS: Readonly<Record<FaultKind, number>> = {
  kill_gateway: 4,
  kill_bank: 6,
  faultpoint_gateway: 3,
  faultpoint_bank: 4,
  freeze_gateway: 2,
  freeze_bank: 2,
  cut_link: 2,
  blackhole_link: 1,
  delay_link: 2,
  garble_link: 1,
  cut_client_link: 1,
  kill_redis: 1,
  freeze_redis: 1,
  kill_postgres: 2,
  freeze_postgres: 1,
  cut_postgres_link: 1,
  kill_bureau: 1,
  freeze_bureau: 1,
  kill_checkout: 1,
  cut_checkout_link: 1,
};

export interface NemesisStats {
  faults: Record<string, number>;
  /** SIGKILLs sent plus processes that died at an armed fault point. */
  crashes: number;
  /** Crashes per target kind: gateway, bank, postgres, redis, bureau, checkout. */
  crashesBy: Record<string, number>;
  faultPointDeaths: Record<string, number>;
  /** Armed points that were not reached before the arming window closed. */
  faultPointMisses: number;
  /** Restarts that failed and were retried (a gateway while PostgreSQL is down exits, as documented). */
  failedStarts: number;
  unexpectedExits: string[];
}

export interface NemesisOptions {
  readonly concurrentMax: number;
  readonly intervalMs: readonly [number, number];
  /** How long a process with a fault point armed gets to reach it. */
  readonly armedWindowMs: number;
  /** Longest SIGSTOP of a gateway replica (past its lease plus the prepare timeout, the others take over). */
  readonly gatewayFreezeMaxMs: number;
}

/**
 * The pid of our own redis-server on `port`: a child of this process (RedisServer
 * keeps its ChildProcess to itself), found in /proc by parent and port.
 */
function redisPid(port: number): number | undefined {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid !== process.pid) continue;
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      if (cmdline.includes("redis-server") && cmdline.includes(String(port))) return Number(entry);
    } catch {
      // Gone while we looked.
    }
  }
  return undefined;
}

/** How long a supervisor keeps restarting a process before the run gives up on it. */
const RESTART_FOR_MS = 60_000;

export function createNemesis(cluster: Cluster, rng: Rng, history: History, o: NemesisOptions) {
  const stats: NemesisStats = {
    faults: {},
    crashes: 0,
    crashesBy: {},
    faultPointDeaths: {},
    faultPointMisses: 0,
    failedStarts: 0,
    unexpectedExits: [],
  };
  const busy = new Set<string>();
  const running = new Set<Promise<void>>();
  let stopping = false;

  const gatewayPoints = faultPoints.filter((p) => p.startsWith("gateway."));
  const bankPoints = faultPoints.filter((p) => p.startsWith("bank."));
  const note = (detail: string) => history.add({ kind: "fault", detail });
  const crashed = (what: string) => {
    stats.crashes++;
    stats.crashesBy[what] = (stats.crashesBy[what] ?? 0) + 1;
  };
  const kindOf = (p: ServiceProcess) =>
    cluster.gateways.includes(p)
      ? "gateway"
      : p === cluster.bureau
        ? "bureau"
        : p === cluster.checkout
          ? "checkout"
          : "bank";

  async function startProcess(p: ServiceProcess, env: Record<string, string> = {}): Promise<boolean> {
    try {
      await p.start(env);
      return true;
    } catch (e) {
      // An armed process can die at its point during recovery, before "listening"; a gateway exits while PostgreSQL is down.
      stats.failedStarts++;
      note(`${p.name} did not come up: ${(e instanceof Error ? e.message : String(e)).split("\n")[0]}`);
      return false;
    }
  }

  /** As a supervisor does: restart, with back-off, until it runs (bounded). */
  async function ensureUp(p: ServiceProcess): Promise<void> {
    const deadline = Date.now() + RESTART_FOR_MS;
    for (let i = 0; !p.running; i++) {
      if (await startProcess(p)) return;
      if (Date.now() > deadline) throw new Error(`${p.name} cannot be restarted within ${RESTART_FOR_MS} ms`);
      await sleep(Math.min(2000, 100 * 2 ** i));
    }
  }

  async function kill(p: ServiceProcess): Promise<void> {
    await p.crash();
    crashed(kindOf(p));
    // A replica that stays down past its lease and a prepare timeout: the others take over what it left PENDING.
    const downMs =
      kindOf(p) === "gateway" && cluster.gateways.length > 1 && rng.chance(0.3) ? rng.int(4000, 8000) : rng.int(0, 400);
    note(`kill -9 ${p.name}${downMs > 1000 ? `, down for ${downMs} ms` : ""}`);
    await sleep(downMs);
    await ensureUp(p);
    note(`${p.name} restarted`);
  }

  async function armed(p: ServiceProcess, point: FaultPoint): Promise<void> {
    await p.crash();
    crashed(kindOf(p));
    note(`kill -9 ${p.name}; restarting with ${point} armed`);
    const up = await startProcess(p, { PAYGATE_FAULTPOINTS: point });
    const deadline = Date.now() + o.armedWindowMs;
    while (up && p.running && Date.now() < deadline) await sleep(50);
    if (!p.running) {
      crashed(kindOf(p));
      stats.faultPointDeaths[point] = (stats.faultPointDeaths[point] ?? 0) + 1;
      note(`${p.name} died at ${point}`);
    } else {
      stats.faultPointMisses++;
      await p.crash();
      crashed(kindOf(p));
      note(`${point} not reached in ${o.armedWindowMs} ms; kill -9 ${p.name}`);
    }
    await ensureUp(p);
    note(`${p.name} restarted clean`);
  }

  async function freeze(p: ServiceProcess, maxMs: number): Promise<void> {
    const ms = rng.int(300, maxMs);
    p.freeze();
    note(`SIGSTOP ${p.name} for ${ms} ms`);
    await sleep(ms);
    p.thaw();
    note(`SIGCONT ${p.name}`);
  }

  /** Some replicas (one, or all of them) against one bank, both directions. */
  async function link(
    bank: string,
    replicas: readonly number[],
    how: "cut" | "blackhole" | "delay" | "garble",
  ): Promise<void> {
    const proxies = replicas.flatMap((i) => [
      cluster.toBank.get(`${i}/${bank}`)!,
      cluster.fromBank.get(`${bank}/${i}`)!,
    ]);
    const ms = rng.int(300, 5000);
    const delayMs = rng.int(100, 2500);
    for (const p of proxies) {
      if (how === "cut") p.cut();
      else if (how === "blackhole") p.blackhole();
      else if (how === "garble") p.garble();
      else p.delay(delayMs);
    }
    const who =
      replicas.length === cluster.gateways.length && replicas.length > 1
        ? "every replica"
        : replicas.map((i) => cluster.replicaName(i)).join(",");
    note(`${how} ${who}<->${bank} for ${ms} ms${how === "delay" ? ` (+${delayMs} ms each way)` : ""}`);
    await sleep(ms);
    for (const p of proxies) p.heal();
    note(`healed ${who}<->${bank}`);
  }

  async function cutFor(proxies: readonly LinkProxy[], what: string, blackhole = false): Promise<void> {
    const ms = rng.int(300, 3000);
    for (const p of proxies) blackhole ? p.blackhole() : p.cut();
    note(`${blackhole ? "blackhole" : "cut"} ${what} for ${ms} ms`);
    await sleep(ms);
    for (const p of proxies) p.heal();
    note(`healed ${what}`);
  }

  async function restartPostgres(): Promise<void> {
    const pg = cluster.pg!;
    for (let i = 0; !pg.running; i++) {
      try {
        await pg.start();
      } catch (e) {
        stats.failedStarts++;
        note(`postgres did not come up: ${(e instanceof Error ? e.message : String(e)).split("\n")[0]}`);
        if (i >= 10) throw e;
        await sleep(500);
      }
    }
  }

  function available(k: FaultKind): boolean {
    if (k.endsWith("_redis")) return cluster.redis !== undefined;
    if (k.includes("postgres")) return cluster.pg !== undefined;
    if (k.includes("bureau")) return cluster.bureau !== undefined;
    if (k.includes("checkout")) return cluster.checkout !== undefined;
    return true;
  }

  function pickKind(): FaultKind {
    const kinds = (Object.keys(WEIGHTS) as FaultKind[]).filter(available);
    const total = kinds.reduce((t, k) => t + WEIGHTS[k], 0);
    let r = rng.next() * total;
    for (const k of kinds) if ((r -= WEIGHTS[k]) < 0) return k;
    return kinds[0]!;
  }

  /** Starts one fault on a target nobody else is breaking; undefined if it is busy. */
  function launch(): Promise<void> | undefined {
    const kind = pickKind();
    const bank = rng.pick([...cluster.banks.keys()]);
    const replica = rng.int(0, cluster.gateways.length - 1);
    const replicas = rng.chance(0.5) ? [replica] : cluster.gateways.map((_, i) => i);
    const gateway = cluster.gateways[replica]!;
    const target = kind.endsWith("_gateway")
      ? gateway.name
      : kind === "cut_client_link"
        ? "client-link"
        : kind.endsWith("_redis")
          ? "redis"
          : kind === "kill_postgres" || kind === "freeze_postgres"
            ? "postgres"
            : kind === "cut_postgres_link"
              ? `pg-link:${replica}`
              : kind.endsWith("_bureau")
                ? "bureau"
                : kind.endsWith("checkout") || kind === "cut_checkout_link"
                  ? "checkout"
                  : kind.endsWith("_link")
                    ? `link:${bank}`
                    : bank;
    if (busy.has(target)) return undefined;
    busy.add(target);
    stats.faults[kind] = (stats.faults[kind] ?? 0) + 1;
    const bankProc = cluster.banks.get(bank)!;
    /** kill -9 redis, then its restart (empty). */
    async function killRedis(): Promise<void> {
      await cluster.redis!.crash();
      crashed("redis");
      note("kill -9 redis");
      await sleep(rng.int(100, 2000));
      await cluster.redis!.restart();
      return note("redis restarted (empty)");
    }
    /** SIGSTOP redis, then SIGCONT. */
    async function freezeRedis(): Promise<void> {
      const pid = redisPid(cluster.redis!.port);
      if (pid === undefined) return note("freeze redis: its process was not found");
      const ms = rng.int(300, 4000);
      process.kill(pid, "SIGSTOP");
      note(`SIGSTOP redis for ${ms} ms`);
      await sleep(ms);
      process.kill(pid, "SIGCONT");
      return note("SIGCONT redis");
    }
    /** kill -9 postgres, then its restart (crash recovery from the WAL). */
    async function killPostgres(): Promise<void> {
      await cluster.pg!.kill9();
      crashed("postgres");
      note("kill -9 postgres (postmaster and every backend)");
      await sleep(rng.int(100, 2000));
      await restartPostgres();
      return note("postgres restarted (crash recovery from the WAL)");
    }
    /** SIGSTOP postgres (the server, or the postmaster only), then SIGCONT. */
    async function freezePostgres(): Promise<void> {
      const scope = rng.chance(0.7) ? "server" : "postmaster";
      const ms = rng.int(300, 4000);
      cluster.pg!.pause(scope);
      note(
        `SIGSTOP postgres (${scope === "server" ? "postmaster and every backend" : "postmaster only: new connections hang"}) for ${ms} ms`,
      );
      await sleep(ms);
      cluster.pg!.resume();
      return note("SIGCONT postgres");
    }
    const run = async () => {
      switch (kind) {
        case "kill_gateway":
          return kill(gateway);
        case "kill_bank":
          return kill(bankProc);
        case "faultpoint_gateway":
          return armed(gateway, rng.pick(gatewayPoints));
        case "faultpoint_bank":
          return armed(bankProc, rng.pick(bankPoints));
        case "freeze_gateway":
          return freeze(gateway, o.gatewayFreezeMaxMs);
        case "freeze_bank":
          return freeze(bankProc, 4000);
        case "cut_link":
          return link(bank, replicas, "cut");
        case "blackhole_link":
          return link(bank, replicas, "blackhole");
        case "delay_link":
          return link(bank, replicas, "delay");
        case "garble_link":
          return link(bank, replicas, "garble");
        case "cut_client_link":
          return cutFor(
            replicas.map((i) => cluster.clientProxies[i]!),
            `clients->${replicas.length > 1 ? "every replica" : cluster.replicaName(replica)}`,
          );
        case "kill_redis":
          return killRedis();
        case "freeze_redis":
          return freezeRedis();
        case "kill_postgres":
          return killPostgres();
        case "freeze_postgres":
          return freezePostgres();
        case "cut_postgres_link":
          return cutFor([cluster.pgProxies[replica]!], `${cluster.replicaName(replica)}->postgres`, rng.chance(0.4));
        case "kill_bureau":
          return kill(cluster.bureau!);
        case "freeze_bureau":
          return freeze(cluster.bureau!, 4000);
        case "kill_checkout":
          return kill(cluster.checkout!);
        case "cut_checkout_link":
          return cutFor([cluster.checkoutLink!], "checkout->gateways");
      }
    };
    const p = run()
      .catch((e: unknown) => note(`fault ${kind} failed: ${e instanceof Error ? e.message : String(e)}`))
      .finally(() => {
        busy.delete(target);
        running.delete(p);
      });
    running.add(p);
    return p;
  }

  async function loop(): Promise<void> {
    while (!stopping) {
      await sleep(rng.int(o.intervalMs[0], o.intervalMs[1]));
      if (stopping) break;
      if (running.size < o.concurrentMax) launch();
    }
  }

  /** Processes that died with nobody breaking them: a crash of the code itself. */
  async function watch(): Promise<void> {
    while (!stopping) {
      await sleep(300);
      for (const p of cluster.processes) {
        const target = p.name === "credit-bureau" ? "bureau" : p.name;
        if (p.running || busy.has(target)) continue;
        busy.add(target);
        const exit = JSON.stringify(p.lastExit);
        const stderr = p.rawStderr
          .join("")
          .split("\n")
          .filter((l) => l && !l.startsWith("FAULT "))
          .slice(-10)
          .join("\n");
        const errors = p.lines
          .slice(-6)
          .map((l) => JSON.stringify(l).slice(0, 600))
          .join("\n");
        stats.unexpectedExits.push(`${p.name} exited on its own ${exit}:\n${errors}\n${stderr}`);
        note(`UNEXPECTED EXIT ${p.name} ${exit}`);
        try {
          await ensureUp(p);
        } catch (e) {
          note(`${p.name}: ${e instanceof Error ? e.message : String(e)}`);
        } finally {
          busy.delete(target);
        }
      }
      if (cluster.pg && !cluster.pg.running && !busy.has("postgres")) {
        busy.add("postgres");
        stats.unexpectedExits.push(`postgres exited on its own:\n${cluster.pg.log.slice(-2000)}`);
        note("UNEXPECTED EXIT postgres");
        try {
          await restartPostgres();
        } finally {
          busy.delete("postgres");
        }
      }
    }
  }

  let loops: Promise<unknown> = Promise.resolve();
  return {
    stats,
    start(): void {
      loops = Promise.all([loop(), watch()]);
    },
    /** Stops injecting, lets running faults heal, then makes sure everything is up and every link clean. */
    async stop(): Promise<void> {
      stopping = true;
      await loops;
      await Promise.all([...running]);
      for (const p of cluster.proxies) p.heal();
      cluster.pg?.resume();
      if (cluster.pg && !cluster.pg.running) await restartPostgres();
      if (cluster.redis && !cluster.redis.running) await cluster.redis.restart();
      for (const p of cluster.processes) {
        p.thaw();
        await ensureUp(p);
      }
      note("nemesis stopped; everything healed");
    },
  };
}
