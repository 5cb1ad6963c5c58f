// The fault injector: at random moments (from the seed) it kills a process
// with SIGKILL and restarts it, restarts one with a named fault point armed
// (PAYGATE_FAULTPOINTS: it dies exactly there under load), freezes one with
// SIGSTOP/SIGCONT, cuts, blackholes or delays the links between the gateway
// and a bank, cuts the clients' link, and kills Redis. Every fault ends by
// healing what it broke. A watcher notices processes that die on their own.
import { faultPoints, type FaultPoint } from "@paygate/faults";
import type { ServiceProcess } from "@paygate/testkit";
import type { Rng } from "../sim/rng.js";
import type { Cluster } from "./cluster.js";
import type { History } from "./history.js";
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
  | "kill_redis";

const WEIGHTS: Readonly<Record<FaultKind, number>> = {
  kill_gateway: 4,
  kill_bank: 6,
  faultpoint_gateway: 3,
  faultpoint_bank: 4,
  freeze_gateway: 1,
  freeze_bank: 2,
  cut_link: 2,
  blackhole_link: 1,
  delay_link: 2,
  garble_link: 1,
  cut_client_link: 1,
  kill_redis: 1,
};

export interface NemesisStats {
  faults: Record<string, number>;
  /** SIGKILLs sent plus processes that died at an armed fault point. */
  crashes: number;
  faultPointDeaths: Record<string, number>;
  /** Armed points that were not reached before the arming window closed. */
  faultPointMisses: number;
  unexpectedExits: string[];
}

export interface NemesisOptions {
  readonly concurrentMax: number;
  readonly intervalMs: readonly [number, number];
  /** How long a process with a fault point armed gets to reach it. */
  readonly armedWindowMs: number;
}

export function createNemesis(cluster: Cluster, rng: Rng, history: History, o: NemesisOptions) {
  const stats: NemesisStats = { faults: {}, crashes: 0, faultPointDeaths: {}, faultPointMisses: 0, unexpectedExits: [] };
  const busy = new Set<string>();
  const running = new Set<Promise<void>>();
  let stopping = false;

  const gatewayPoints = faultPoints.filter((p) => p.startsWith("gateway."));
  const bankPoints = faultPoints.filter((p) => p.startsWith("bank."));
  const note = (detail: string) => history.add({ kind: "fault", detail });

  async function startProcess(p: ServiceProcess, env: Record<string, string> = {}): Promise<boolean> {
    try {
      await p.start(env);
      return true;
    } catch (e) {
      // An armed process can die at its point during recovery, before "listening".
      note(`${p.name} did not come up: ${(e instanceof Error ? e.message : String(e)).split("\n")[0]}`);
      return false;
    }
  }

  async function ensureUp(p: ServiceProcess): Promise<void> {
    for (let i = 0; i < 5 && !p.running; i++) if (await startProcess(p)) return;
    if (!p.running) throw new Error(`${p.name} cannot be restarted`);
  }

  async function kill(p: ServiceProcess): Promise<void> {
    await p.crash();
    stats.crashes++;
    note(`kill -9 ${p.name}`);
    await sleep(rng.int(0, 400));
    await ensureUp(p);
    note(`${p.name} restarted`);
  }

  async function armed(p: ServiceProcess, point: FaultPoint): Promise<void> {
    await p.crash();
    stats.crashes++;
    note(`kill -9 ${p.name}; restarting with ${point} armed`);
    const up = await startProcess(p, { PAYGATE_FAULTPOINTS: point });
    const deadline = Date.now() + o.armedWindowMs;
    while (up && p.running && Date.now() < deadline) await sleep(50);
    if (!p.running) {
      stats.crashes++;
      stats.faultPointDeaths[point] = (stats.faultPointDeaths[point] ?? 0) + 1;
      note(`${p.name} died at ${point}`);
    } else {
      stats.faultPointMisses++;
      await p.crash();
      stats.crashes++;
      note(`${point} not reached in ${o.armedWindowMs} ms; kill -9 ${p.name}`);
    }
    await ensureUp(p);
    note(`${p.name} restarted clean`);
  }

  async function freeze(p: ServiceProcess): Promise<void> {
    const ms = rng.int(300, 4000);
    p.freeze();
    note(`SIGSTOP ${p.name} for ${ms} ms`);
    await sleep(ms);
    p.thaw();
    note(`SIGCONT ${p.name}`);
  }

  async function link(bank: string, how: "cut" | "blackhole" | "delay" | "garble"): Promise<void> {
    const proxies = [cluster.toBank.get(bank)!, cluster.fromBank.get(bank)!];
    const ms = rng.int(300, 5000);
    const delayMs = rng.int(100, 2500);
    for (const p of proxies) {
      if (how === "cut") p.cut();
      else if (how === "blackhole") p.blackhole();
      else if (how === "garble") p.garble();
      else p.delay(delayMs);
    }
    note(`${how} gateway<->${bank} for ${ms} ms${how === "delay" ? ` (+${delayMs} ms each way)` : ""}`);
    await sleep(ms);
    for (const p of proxies) p.heal();
    note(`healed gateway<->${bank}`);
  }

  function pickKind(): FaultKind {
    const kinds = (Object.keys(WEIGHTS) as FaultKind[]).filter((k) => k !== "kill_redis" || cluster.redis);
    const total = kinds.reduce((t, k) => t + WEIGHTS[k], 0);
    let r = rng.next() * total;
    for (const k of kinds) if ((r -= WEIGHTS[k]) < 0) return k;
    return kinds[0]!;
  }

  /** Starts one fault on a target nobody else is breaking; undefined if all are busy. */
  function launch(): Promise<void> | undefined {
    const kind = pickKind();
    const bank = rng.pick([...cluster.banks.keys()]);
    const target = kind.endsWith("gateway") ? "gateway" : kind === "cut_client_link" ? "client-link" : kind === "kill_redis" ? "redis" : kind.endsWith("link") ? `link:${bank}` : bank;
    if (busy.has(target)) return undefined;
    busy.add(target);
    stats.faults[kind] = (stats.faults[kind] ?? 0) + 1;
    const proc = target === "gateway" ? cluster.gateway : cluster.banks.get(bank)!;
    const run = async () => {
      switch (kind) {
        case "kill_gateway":
        case "kill_bank":
          return kill(proc);
        case "faultpoint_gateway":
          return armed(proc, rng.pick(gatewayPoints));
        case "faultpoint_bank":
          return armed(proc, rng.pick(bankPoints));
        case "freeze_gateway":
        case "freeze_bank":
          return freeze(proc);
        case "cut_link":
          return link(bank, "cut");
        case "blackhole_link":
          return link(bank, "blackhole");
        case "delay_link":
          return link(bank, "delay");
        case "garble_link":
          return link(bank, "garble");
        case "cut_client_link": {
          const ms = rng.int(300, 3000);
          cluster.clientProxy.cut();
          note(`cut clients->gateway for ${ms} ms`);
          await sleep(ms);
          cluster.clientProxy.heal();
          return note("healed clients->gateway");
        }
        case "kill_redis": {
          await cluster.redis!.crash();
          stats.crashes++;
          note("kill -9 redis");
          await sleep(rng.int(100, 2000));
          await cluster.redis!.restart();
          return note("redis restarted (empty)");
        }
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
        const target = p === cluster.gateway ? "gateway" : p.name;
        if (p.running || busy.has(target)) continue;
        busy.add(target);
        const exit = JSON.stringify(p.lastExit);
        const stderr = p.rawStderr.join("").split("\n").filter((l) => l && !l.startsWith("FAULT ")).slice(-10).join("\n");
        const errors = p.lines.slice(-6).map((l) => JSON.stringify(l).slice(0, 600)).join("\n");
        stats.unexpectedExits.push(`${p.name} exited on its own ${exit}:\n${errors}\n${stderr}`);
        note(`UNEXPECTED EXIT ${p.name} ${exit}`);
        try {
          await ensureUp(p);
        } finally {
          busy.delete(target);
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
      for (const p of [cluster.clientProxy, ...cluster.toBank.values(), ...cluster.fromBank.values()]) p.heal();
      for (const p of cluster.processes) {
        p.thaw();
        await ensureUp(p);
      }
      if (cluster.redis && !cluster.redis.running) await cluster.redis.restart();
      note("nemesis stopped; everything healed");
    },
  };
}
