// A deterministic simulation of two-phase commit (VOPR spirit): the REAL
// coordinator (services/gateway/src/domain/coordinator.ts over the in-memory
// log from fakes.ts) and the REAL banks (services/bank/src/bank.ts +
// domain/participant.ts over the in-memory ledger, with the real in-doubt
// resolver) talk through a simulated network that loses, delays, reorders and
// duplicates messages; processes crash (volatile state gone, the durable log
// and ledger survive), freeze, and die at the named fault points; writes can
// fail to reach the disk. One seed drives every choice. The checker looks at
// the whole world after every step.
import { AssertionError } from "@paygate/money";
import type { FaultPoint } from "@paygate/faults";
import type { Reason } from "@paygate/rpc";
import { createBank, type Bank } from "../../services/bank/src/bank.js";
import type { LegInput } from "../../services/bank/src/domain/participant.js";
import { createResolver, type Resolver } from "../../services/bank/src/resolver.js";
import { createCoordinator, type Coordinator, type EventLogger } from "../../services/gateway/src/domain/coordinator.js";
import { createDecidedFeed } from "../../services/gateway/src/domain/decided-feed.js";
import { createMemoryDirectory, createMemoryLog, type MemoryLog } from "../../services/gateway/src/domain/fakes.js";
import type { DirectoryAccount, Result, TxnRecord } from "../../services/gateway/src/domain/model.js";
import type { CoordinatorLog, Delivery, Leg, Participants, Vote } from "../../services/gateway/src/domain/ports.js";
import { createChecker, type Checker } from "./checker.js";
import { createRng, type Rng } from "./rng.js";
import { Scheduler } from "./scheduler.js";
import { createSimLedgerStore, type LedgerEngine, type SimLedgerStore } from "./sim-store.js";

export const REPLICA = "gw";
export const COORDINATOR = "coordinator";

/** Deliberate bugs, for the control tests that prove the checker can fail. */
export type Broken =
  /** A bank that cannot hold the money says YES anyway (and records nothing). */
  | "yes_without_hold"
  /** A bank that treats PREPARED as volatile: after a restart it aborts what it had prepared. */
  | "forget_prepared_on_restart"
  /** A coordinator whose bank client counts a Prepare timeout as a YES vote. */
  | "timeout_counts_as_yes"
  /** A coordinator that answers GetDecision "ABORT" for an undecided txn without logging it first. */
  | "presume_abort_without_logging";

export interface SimOptions {
  readonly seed: number;
  readonly broken?: Broken;
  /** Keep every history line (default: yes; needed to print a violation). */
  readonly history?: boolean;
  /** The bank's in-memory ledger engine (see sim-store.ts). */
  readonly ledger?: LedgerEngine;
}

export interface SimStats {
  steps: number;
  virtualMs: number;
  transfers: number;
  /** Txns in the coordinator's log at the end, by outcome. */
  committed: number;
  aborted: number;
  messages: number;
  /** GetDecision calls answered (in-doubt resolution by a bank). */
  getDecisions: number;
  dropped: number;
  duplicated: number;
  crashes: Record<string, number>;
  faultPointCrashes: number;
  diskErrors: number;
  partitions: number;
  freezes: number;
}

export interface SimResult {
  readonly seed: number;
  readonly violations: readonly string[];
  readonly history: readonly string[];
  readonly stats: SimStats;
  /** Hash of the full history: equal for two runs of one seed. */
  readonly fingerprint: string;
}

/** Thrown by a fault point or a kill: the process is gone (already marked down). */
export class SimCrash extends Error {
  override name = "SimCrash";
}

/** A write whose fsync failed: the transaction rolled back. */
export class SimDiskError extends Error {
  override name = "SimDiskError";
}

type BankReply = { ok: true; vote?: "yes" | "no"; reason?: string; decision?: "COMMIT" | "ABORT" } | { ok: false; reason: string };

type Msg =
  | { kind: "prepare"; txnId: string; legs: LegInput[] }
  | { kind: "commit"; txnId: string }
  | { kind: "abort"; txnId: string }
  | { kind: "get_decision"; txnId: string; bank: string }
  | { kind: "reply"; requestId: number; body: BankReply };

interface PendingRequest {
  readonly node: string;
  readonly incarnation: number;
  readonly onReply: (body: BankReply) => void;
  /** The requesting process died: settle the promise the way a broken connection would. */
  readonly onDeath: () => void;
}

/** Per-seed configuration, drawn from the seed (swarm testing: each seed its own weather). */
export interface Knobs {
  readonly banks: readonly string[];
  readonly workloadMs: number;
  readonly ops: number;
  readonly lossP: number;
  readonly dupP: number;
  readonly delayMaxMs: number;
  readonly nemesisEveryMs: number;
  readonly crashW: number;
  readonly partitionW: number;
  readonly freezeW: number;
  readonly faultPointW: number;
  readonly diskW: number;
  readonly coordPrepareTimeoutMs: number;
  readonly commitTimeoutMs: number;
  readonly bankPrepareTimeoutMs: number;
  readonly resolveIntervalMs: number;
  readonly dupRequestP: number;
  readonly conflictP: number;
}

function drawKnobs(rng: Rng): Knobs {
  const three = rng.chance(0.5);
  return {
    banks: three ? ["bank-a", "bank-b", "bank-c"] : ["bank-a", "bank-b"],
    workloadMs: rng.int(200, 1500),
    ops: rng.int(3, 12),
    lossP: rng.pick([0, 0, 0.02, 0.1, 0.3]),
    dupP: rng.pick([0, 0.05, 0.2]),
    delayMaxMs: rng.pick([1, 10, 60, 250]),
    nemesisEveryMs: rng.pick([40, 120, 400, 100_000]),
    crashW: rng.pick([0, 1, 3]),
    partitionW: rng.pick([0, 1, 2]),
    freezeW: rng.pick([0, 1]),
    faultPointW: rng.pick([0, 1, 3]),
    diskW: rng.pick([0, 1]),
    coordPrepareTimeoutMs: rng.pick([80, 200, 500]),
    commitTimeoutMs: rng.pick([50, 150]),
    bankPrepareTimeoutMs: rng.pick([60, 250, 600]),
    resolveIntervalMs: rng.pick([40, 120]),
    dupRequestP: rng.pick([0, 0.15, 0.4]),
    conflictP: rng.pick([0, 0.05]),
  };
}

const USERS = ["alice", "bob", "carol", "dave"] as const;

function accountsFor(banks: readonly string[]): (DirectoryAccount & { openingMinor: bigint })[] {
  const all = [
    { accountId: "bank-a/1001", bank: "bank-a", ownerUserId: "alice", currency: "USD", openingMinor: 400n }, // the hot account
    { accountId: "bank-a/1002", bank: "bank-a", ownerUserId: "bob", currency: "USD", openingMinor: 150n },
    { accountId: "bank-b/2001", bank: "bank-b", ownerUserId: "carol", currency: "USD", openingMinor: 250n },
    { accountId: "bank-b/2002", bank: "bank-b", ownerUserId: "alice", currency: "USD", openingMinor: 60n },
    { accountId: "bank-b/2003", bank: "bank-b", ownerUserId: "dave", currency: "USD", openingMinor: 0n },
    { accountId: "bank-c/3001", bank: "bank-c", ownerUserId: "bob", currency: "USD", openingMinor: 120n },
    { accountId: "bank-c/3002", bank: "bank-c", ownerUserId: "dave", currency: "USD", openingMinor: 90n },
  ];
  return all.filter((a) => banks.includes(a.bank));
}

export interface BankNode {
  readonly name: string;
  readonly store: SimLedgerStore;
  up: boolean;
  incarnation: number;
  bank: Bank | undefined;
  resolver: Resolver | undefined;
  /** Fault points armed for the current incarnation. */
  armed: Set<FaultPoint>;
  diskErrorArmed: boolean;
}

export interface CoordinatorNode {
  readonly log: MemoryLog;
  state: "up" | "recovering" | "down";
  incarnation: number;
  coordinator: Coordinator | undefined;
  redriving: boolean;
  armed: Set<FaultPoint>;
}

export interface World {
  readonly seed: number;
  readonly rng: Rng;
  readonly knobs: Knobs;
  readonly sched: Scheduler;
  readonly banks: Map<string, BankNode>;
  readonly coord: CoordinatorNode;
  readonly accounts: readonly (DirectoryAccount & { openingMinor: bigint })[];
  readonly stats: SimStats;
  readonly broken: Broken | undefined;
  faultsOn: boolean;
  note(line: string): void;
  violation(text: string): void;
}

export async function runSimulation(options: SimOptions): Promise<SimResult> {
  const rng = createRng(options.seed);
  const knobs = drawKnobs(rng.fork());
  const net = rng.fork();
  const nemesisRng = rng.fork();
  const clientRng = rng.fork();
  const idRng = rng.fork();
  const sched = new Scheduler();
  const history: string[] = [];
  const violations: string[] = [];
  let hash = 0x811c9dc5;
  const stats: SimStats = { steps: 0, virtualMs: 0, transfers: 0, committed: 0, aborted: 0, messages: 0, getDecisions: 0, dropped: 0, duplicated: 0, crashes: {}, faultPointCrashes: 0, diskErrors: 0, partitions: 0, freezes: 0 };
  const accounts = accountsFor(knobs.banks);
  const directory = createMemoryDirectory(accounts);

  const world: World = {
    seed: options.seed,
    rng,
    knobs,
    sched,
    banks: new Map(),
    coord: { log: createMemoryLog(directory), state: "down", incarnation: 0, coordinator: undefined, redriving: false, armed: new Set() },
    accounts,
    stats,
    broken: options.broken,
    faultsOn: true,
    note(line) {
      const text = `t=${sched.nowMs} ${line}`;
      for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
      if (options.history !== false) history.push(text);
    },
    violation(text) {
      if (violations.length < 20) violations.push(`t=${sched.nowMs} ${text}`);
      world.note(`VIOLATION ${text}`);
    },
  };
  const short = (txnId: string) => txnId.slice(0, REPLICA.length + 9);

  // ---------------------------------------------------------------- network
  const pending = new Map<number, PendingRequest>();
  let requestIds = 0;
  const linkDownUntil = new Map<string, number>(); // bank -> time its link to the coordinator heals

  function linkUp(a: string, b: string): boolean {
    const bank = a === COORDINATOR ? b : a;
    return (linkDownUntil.get(bank) ?? 0) <= sched.nowMs;
  }

  function describe(m: Msg): string {
    switch (m.kind) {
      case "reply":
        return `reply#${m.requestId} ${JSON.stringify(m.body)}`;
      case "prepare":
        return `prepare ${short(m.txnId)} ${m.legs.map((l) => `${l.direction}:${l.accountId}:${l.amountMinor}`).join(",")}`;
      default:
        return `${m.kind} ${short(m.txnId)}`;
    }
  }

  function send(from: string, to: string, msg: Msg, requestId?: number): void {
    stats.messages++;
    const copies = world.faultsOn && net.chance(knobs.dupP) ? 2 : 1;
    if (copies === 2) stats.duplicated++;
    for (let c = 0; c < copies; c++) {
      const tag = `${requestId !== undefined ? `#${requestId} ` : ""}${describe(msg)} ${from}->${to}`;
      if (!linkUp(from, to) || (world.faultsOn && net.chance(knobs.lossP))) {
        stats.dropped++;
        world.note(`drop ${tag}`);
        continue;
      }
      // A healed network is a healthy one: round trips well inside every timeout.
      const delay = net.int(1, world.faultsOn ? knobs.delayMaxMs : Math.min(knobs.delayMaxMs, 5));
      sched.after(delay, to, "deliver", () => {
        // A link cut while the message was on the wire loses it too.
        if (!linkUp(from, to)) {
          stats.dropped++;
          world.note(`drop(link) ${tag}`);
          return;
        }
        world.note(`deliver ${tag}`);
        deliver(to, msg, from, requestId);
      });
    }
  }

  function alive(node: string, incarnation: number): boolean {
    if (node === COORDINATOR) return world.coord.incarnation === incarnation && world.coord.state !== "down";
    const b = world.banks.get(node)!;
    return b.incarnation === incarnation && b.up;
  }

  function request(from: string, incarnation: number, to: string, msg: Msg, onReply: (b: BankReply) => void, onDeath: () => void): number {
    const id = ++requestIds;
    // A continuation of a killed process sends nothing.
    if (!alive(from, incarnation)) {
      queueMicrotask(onDeath);
      return id;
    }
    pending.set(id, { node: from, incarnation, onReply, onDeath });
    send(from, to, msg, id);
    return id;
  }

  function settleRequest(id: number): PendingRequest | undefined {
    const p = pending.get(id);
    pending.delete(id);
    return p;
  }

  function incarnationOf(node: string): number {
    return node === COORDINATOR ? world.coord.incarnation : world.banks.get(node)!.incarnation;
  }

  function killPending(node: string): void {
    for (const [id, p] of pending) {
      if (p.node !== node) continue;
      pending.delete(id);
      p.onDeath();
    }
  }

  function deliver(to: string, msg: Msg, from: string, requestId: number | undefined): void {
    if (msg.kind === "reply") {
      const p = pending.get(msg.requestId);
      if (!p || p.node !== to || p.incarnation !== incarnationOf(to)) return; // late, duplicate or for a dead process
      pending.delete(msg.requestId);
      p.onReply(msg.body);
      return;
    }
    const reply = (body: BankReply) => {
      if (requestId !== undefined) send(to, from, { kind: "reply", requestId, body });
    };
    if (to === COORDINATOR) {
      if (msg.kind !== "get_decision") throw new Error(`coordinator got ${msg.kind}`);
      const c = world.coord;
      // Not listening: before recovery finished (main.ts starts the server after recover()).
      if (c.state !== "up" || !c.coordinator) return;
      stats.getDecisions++;
      if (world.broken === "presume_abort_without_logging" && !c.log.findDecision(msg.txnId)) return reply({ ok: true, decision: "ABORT" });
      const r = c.coordinator.getDecision(msg.txnId, msg.bank);
      reply(r.ok ? { ok: true, decision: r.value } : { ok: false, reason: r.reason });
      return;
    }
    const node = world.banks.get(to)!;
    if (!node.up || !node.bank) return; // connection refused
    handleAtBank(node, msg, reply);
  }

  // ------------------------------------------------------------------ banks
  function handleAtBank(node: BankNode, msg: Msg, reply: (b: BankReply) => void): void {
    const bank = node.bank!;
    try {
      switch (msg.kind) {
        case "prepare": {
          const r = bank.prepare({ txnId: msg.txnId, legs: msg.legs });
          if (!r.ok) return reply({ ok: false, reason: r.reason });
          if (world.broken === "yes_without_hold" && r.value.vote === "no" && r.value.reason === "insufficient_funds") return reply({ ok: true, vote: "yes" });
          return reply(r.value.vote === "yes" ? { ok: true, vote: "yes" } : { ok: true, vote: "no", reason: r.value.reason });
        }
        case "commit": {
          const r = bank.commit(msg.txnId);
          return reply(r.ok ? { ok: true } : { ok: false, reason: r.reason });
        }
        case "abort": {
          const r = bank.abort(msg.txnId);
          return reply(r.ok ? { ok: true } : { ok: false, reason: r.reason });
        }
        default:
          throw new Error(`bank got ${msg.kind}`);
      }
    } catch (e) {
      if (e instanceof SimCrash) return; // the process is gone: no answer
      if (e instanceof SimDiskError) return reply({ ok: false, reason: "internal" });
      world.violation(`${node.name} threw on ${msg.kind}: ${e instanceof Error ? e.message : String(e)}`);
      reply({ ok: false, reason: "internal" });
    }
  }

  const quietLogger = (who: string, errorsAreViolations: boolean): EventLogger => ({
    info: () => {},
    warn: () => {},
    error: (fields, msg) => {
      if (errorsAreViolations) world.violation(`${who} logged an error: ${msg} ${JSON.stringify(fields)}`);
    },
  });

  function startBank(node: BankNode): void {
    node.incarnation++;
    node.up = true;
    node.armed = new Set();
    node.diskErrorArmed = false;
    const inc = node.incarnation;
    const faults = {
      armed: node.armed as ReadonlySet<string>,
      hit(point: FaultPoint) {
        if (!node.armed.has(point) || node.incarnation !== inc) return;
        stats.faultPointCrashes++;
        world.note(`FAULT ${point} kills ${node.name}`);
        crashBank(node, `fault:${point}`);
        throw new SimCrash(point);
      },
    };
    node.store.beforeCommit = () => {
      if (!node.diskErrorArmed) return;
      node.diskErrorArmed = false;
      stats.diskErrors++;
      world.note(`DISK ${node.name}: fsync failed, the write rolled back`);
      throw new SimDiskError("fsync failed");
    };
    const bank = createBank({
      name: node.name,
      store: node.store,
      faults,
      clock: () => sched.nowMs,
      onInvariantBroken: (err) => world.violation(`${node.name} invariant broken: ${err.message}`),
    });
    node.bank = bank;
    if (world.broken === "forget_prepared_on_restart" && inc > 1) {
      for (const ref of node.store.prepared(10_000)) {
        world.note(`BROKEN ${node.name} forgets prepared ${short(ref.txnId)}`);
        bank.abort(ref.txnId);
      }
    }
    node.resolver = createResolver({
      preparedBefore: (cutoffMs, limit) => node.store.preparedBefore(cutoffMs, limit),
      ask: (txnId, coordinator) =>
        new Promise((resolve, reject) => {
          if (coordinator !== REPLICA) return reject(new Error(`unknown coordinator ${coordinator}`));
          const deadline = sched.after(knobs.commitTimeoutMs, node.name, "ask-deadline", () => {
            settleRequest(id);
            reject(new Error("deadline exceeded"));
          });
          const id = request(node.name, inc, COORDINATOR, { kind: "get_decision", txnId, bank: node.name }, (body) => {
            deadline.cancelled = true;
            if (body.ok && body.decision) resolve(body.decision === "COMMIT" ? "commit" : "abort");
            else reject(new Error(body.ok ? "no decision" : body.reason));
          }, () => {
            deadline.cancelled = true;
            reject(new Error("process died"));
          });
        }),
      apply(txnId, decision) {
        if (!alive(node.name, inc)) throw new SimCrash("process is dead");
        const r = decision === "commit" ? bank.commit(txnId) : bank.abort(txnId);
        return r.ok ? undefined : r.reason;
      },
      logger: quietLogger(`${node.name} resolver`, true),
      prepareTimeoutMs: knobs.bankPrepareTimeoutMs,
      intervalMs: knobs.resolveIntervalMs,
      backoffMaxMs: 400,
      clock: () => sched.nowMs,
    });
    const tick = () => {
      if (node.incarnation !== inc || !node.up) return;
      node.resolver!.tick().catch((e: unknown) => {
        if (e instanceof SimCrash || e instanceof SimDiskError) return;
        world.violation(`${node.name} resolver tick failed: ${e instanceof Error ? e.message : String(e)}`);
      });
      sched.after(knobs.resolveIntervalMs, node.name, "resolver-tick", tick);
    };
    sched.after(0, node.name, "resolver-tick", tick);
    world.note(`START ${node.name} #${inc}`);
  }

  function crashBank(node: BankNode, why: string): void {
    if (!node.up) return;
    node.up = false;
    node.bank = undefined;
    node.resolver = undefined;
    stats.crashes[node.name] = (stats.crashes[node.name] ?? 0) + 1;
    world.note(`CRASH ${node.name} (${why})`);
    killPending(node.name);
    sched.after(nemesisRng.int(1, 300), "", "restart", () => startBank(node));
  }

  // ------------------------------------------------------------ coordinator
  /** The log as one process incarnation sees it: a dead process writes nothing. */
  function fencedLog(log: MemoryLog, inc: number): CoordinatorLog {
    const alive = () => {
      if (world.coord.incarnation !== inc || world.coord.state === "down") throw new SimCrash("process is dead");
    };
    const wrapped = {} as Record<string, unknown>;
    for (const k of Object.keys(log) as (keyof MemoryLog)[]) {
      const v = log[k];
      if (typeof v !== "function") continue;
      wrapped[k] = (...args: unknown[]) => {
        alive();
        return (v as (...a: unknown[]) => unknown).apply(log, args);
      };
    }
    return wrapped as unknown as CoordinatorLog;
  }

  function toBankLegs(legs: readonly Leg[]): LegInput[] {
    return legs.map((l) => ({ accountId: l.accountId, direction: l.direction === "DEBIT" ? "debit" : "credit", amountMinor: l.amountMinor, currency: l.currency, ownerUserId: l.ownerUserId }));
  }

  function participantsFor(inc: number): Participants {
    // Mirrors services/gateway/src/banks.ts: transport failures and timeouts become values.
    const voteOf = (body: BankReply): Vote => {
      if (body.ok) return body.vote === "yes" ? { vote: "YES" } : { vote: "NO", reason: (body.reason ?? "internal") as Reason };
      return { vote: "NO", reason: body.reason === "internal" ? "participant_unavailable" : (body.reason as Reason) };
    };
    const deliverDecision = (kind: "commit" | "abort", bank: string, txnId: string, timeoutMs: number): Promise<Delivery> =>
      new Promise((resolve) => {
        const finish = (d: Delivery) => {
          deadline.cancelled = true;
          resolve(d);
        };
        const contradictions = kind === "commit" ? ["unknown_txn", "txn_aborted"] : ["txn_committed"];
        const deadline = sched.after(timeoutMs, COORDINATOR, `${kind}-deadline`, () => {
          settleRequest(id);
          resolve({ ok: false, reason: "participant_timeout: deadline exceeded", transient: true });
        });
        const id = request(COORDINATOR, inc, bank, { kind, txnId }, (body) => {
          if (body.ok) finish({ ok: true });
          else finish({ ok: false, reason: body.reason, transient: !contradictions.includes(body.reason) });
        }, () => finish({ ok: false, reason: "process died", transient: true }));
      });
    return {
      prepare: (bank, txnId, legs, signal) =>
        new Promise<Vote>((resolve) => {
          let done = false;
          const finish = (v: Vote) => {
            if (done) return;
            done = true;
            deadline.cancelled = true;
            settleRequest(id);
            resolve(v);
          };
          const deadline = sched.after(knobs.coordPrepareTimeoutMs, COORDINATOR, "prepare-deadline", () => {
            finish(world.broken === "timeout_counts_as_yes" ? { vote: "YES" } : { vote: "NO", reason: "participant_timeout" });
          });
          const id = request(COORDINATOR, inc, bank, { kind: "prepare", txnId, legs: toBankLegs(legs) }, (body) => finish(voteOf(body)), () => finish({ vote: "NO", reason: "participant_unavailable" }));
          signal.addEventListener("abort", () => finish({ vote: "NO", reason: "participant_timeout" }), { once: true });
        }),
      commit: (bank, txnId, timeoutMs) => deliverDecision("commit", bank, txnId, timeoutMs),
      abort: (bank, txnId, timeoutMs) => deliverDecision("abort", bank, txnId, timeoutMs),
    };
  }

  function startCoordinator(): void {
    const c = world.coord;
    c.incarnation++;
    c.state = "recovering";
    c.armed = new Set();
    c.redriving = false;
    const inc = c.incarnation;
    const coordinator = createCoordinator({
      replica: REPLICA,
      log: fencedLog(c.log, inc),
      directory,
      participants: participantsFor(inc),
      clock: { nowMs: () => sched.nowMs },
      faults: {
        hit(point) {
          if (!c.armed.has(point) || c.incarnation !== inc) return;
          stats.faultPointCrashes++;
          world.note(`FAULT ${point} kills the coordinator`);
          crashCoordinator(`fault:${point}`);
          throw new SimCrash(point);
        },
      },
      feed: createDecidedFeed(),
      logger: quietLogger("coordinator", true),
      // The real deadline timer never fires: the simulated bank client enforces
      // the (virtual) prepare timeout, as the Connect client's deadline does.
      prepareTimeoutMs: 2_000_000_000,
      commitTimeoutMs: knobs.commitTimeoutMs,
      redriveIntervalMs: 50,
      redriveBackoffMaxMs: 400,
      newTxnId: () => `${REPLICA}:${idRng.uuid()}`,
    });
    c.coordinator = coordinator;
    world.note(`START coordinator #${inc} (recovering)`);
    coordinator.recover().then(
      (report) => {
        if (c.incarnation !== inc || c.state === "down") return;
        c.state = "up";
        world.note(`coordinator #${inc} listening (aborted ${report.abortedPending} pending, redrove ${report.redriven})`);
      },
      (e: unknown) => {
        if (e instanceof SimCrash) return;
        world.violation(`coordinator recovery failed: ${e instanceof Error ? e.message : String(e)}`);
      },
    );
    const tick = () => {
      if (c.incarnation !== inc || c.state === "down") return;
      if (c.state === "up" && !c.redriving) {
        c.redriving = true;
        coordinator.redriveOnce().then(
          () => void (c.incarnation === inc && (c.redriving = false)),
          (e: unknown) => {
            if (c.incarnation === inc) c.redriving = false;
            if (!(e instanceof SimCrash)) world.violation(`redrive failed: ${e instanceof Error ? e.message : String(e)}`);
          },
        );
      }
      sched.after(50, COORDINATOR, "redrive-tick", tick);
    };
    sched.after(50, COORDINATOR, "redrive-tick", tick);
  }

  function crashCoordinator(why: string): void {
    const c = world.coord;
    if (c.state === "down") return;
    c.state = "down";
    c.coordinator = undefined;
    stats.crashes[COORDINATOR] = (stats.crashes[COORDINATOR] ?? 0) + 1;
    world.note(`CRASH coordinator (${why})`);
    killPending(COORDINATOR);
    sched.after(nemesisRng.int(1, 300), "", "restart", startCoordinator);
  }

  // ---------------------------------------------------------------- nemesis
  function nemesis(): void {
    if (!world.faultsOn) return;
    const nodes = [COORDINATOR, ...knobs.banks];
    const weights: [string, number][] = [
      ["crash", knobs.crashW],
      ["partition", knobs.partitionW],
      ["freeze", knobs.freezeW],
      ["fault_point", knobs.faultPointW],
      ["disk", knobs.diskW],
    ];
    const total = weights.reduce((t, [, w]) => t + w, 0);
    if (total > 0) {
      let r = nemesisRng.next() * total;
      const kind = weights.find(([, w]) => (r -= w) < 0)?.[0] ?? "crash";
      const target = nemesisRng.pick(nodes);
      switch (kind) {
        case "crash":
          if (target === COORDINATOR) crashCoordinator("kill -9");
          else crashBank(world.banks.get(target)!, "kill -9");
          break;
        case "partition": {
          const bank = nemesisRng.pick(knobs.banks);
          const until = sched.nowMs + nemesisRng.int(10, 600);
          linkDownUntil.set(bank, Math.max(linkDownUntil.get(bank) ?? 0, until));
          stats.partitions++;
          world.note(`PARTITION coordinator<->${bank} until t=${until}`);
          break;
        }
        case "freeze": {
          const until = sched.nowMs + nemesisRng.int(10, 700);
          sched.frozenUntil.set(target, Math.max(sched.frozenUntil.get(target) ?? 0, until));
          stats.freezes++;
          world.note(`FREEZE ${target} until t=${until}`);
          break;
        }
        case "fault_point": {
          if (target === COORDINATOR) {
            const p = nemesisRng.pick<FaultPoint>(["gateway.after_votes_before_decision", "gateway.after_commit_logged", "gateway.after_abort_logged"]);
            world.coord.armed.add(p);
            world.note(`ARM ${p}`);
          } else {
            const p = nemesisRng.pick<FaultPoint>(["bank.after_prepare_logged", "bank.before_commit_apply", "bank.after_commit_applied"]);
            world.banks.get(target)!.armed.add(p);
            world.note(`ARM ${target} ${p}`);
          }
          break;
        }
        case "disk": {
          const bank = world.banks.get(nemesisRng.pick(knobs.banks))!;
          bank.diskErrorArmed = true;
          world.note(`ARM disk error at ${bank.name}`);
          break;
        }
      }
    }
    sched.after(nemesisRng.int(1, knobs.nemesisEveryMs * 2), "", "nemesis", nemesis);
  }

  function heal(): void {
    world.faultsOn = false;
    linkDownUntil.clear();
    for (const [n] of sched.frozenUntil) sched.frozenUntil.set(n, sched.nowMs);
    world.coord.armed.clear();
    for (const b of world.banks.values()) {
      b.armed.clear();
      b.diskErrorArmed = false;
    }
    world.note("HEAL: faults off, links up, processes continued");
  }

  // ------------------------------------------------------------------ setup
  for (const name of knobs.banks) {
    const node: BankNode = { name, store: createSimLedgerStore(options.ledger), up: false, incarnation: 0, bank: undefined, resolver: undefined, armed: new Set(), diskErrorArmed: false };
    world.banks.set(name, node);
    const seedBank = createBank({ name, store: node.store, faults: { armed: new Set(), hit: () => {} }, clock: () => 0, onInvariantBroken: () => {} });
    seedBank.loadSeedOnce(() => accounts.filter((a) => a.bank === name).map((a) => ({ id: a.accountId, owner: a.ownerUserId, currency: a.currency, openingMinor: a.openingMinor })));
    startBank(node);
  }
  const checker: Checker = createChecker(world);
  for (const node of world.banks.values()) node.store.afterCommit = (touched, entries) => checker.onBankCommit(node, touched, entries);
  startCoordinator();
  sched.after(nemesisRng.int(1, knobs.nemesisEveryMs), "", "nemesis", nemesis);

  // ---------------------------------------------------------------- clients
  const invoke: TransferCall = (caller, req) => {
    const c = world.coord;
    if (c.state !== "up" || !c.coordinator) return undefined; // connection refused
    const inc = c.incarnation;
    return c.coordinator.transfer(caller, req).then(
      (out) => (c.incarnation === inc && c.state !== "down" ? { result: out.result, txnId: out.txnId } : undefined),
      (e: unknown) => {
        if (!(e instanceof SimCrash)) {
          if (e instanceof AssertionError) world.violation(`coordinator assertion: ${e.message}`);
          else world.violation(`transfer threw: ${e instanceof Error ? e.stack : String(e)}`);
        }
        return undefined; // the client saw the connection drop
      },
    );
  };
  const workload = createWorkload(world, clientRng, (caller, req) => {
    // A stopped gateway accepts the connection and answers once it is continued.
    const thaw = sched.frozenUntil.get(COORDINATOR) ?? 0;
    if (thaw <= sched.nowMs) return invoke(caller, req);
    return new Promise((resolve) => sched.at(thaw, COORDINATOR, "client-call", () => resolve(invoke(caller, req) ?? Promise.resolve(undefined))));
  }, checker);
  workload.schedule();

  // ------------------------------------------------------------------- run
  const STEPS_MAX = 200_000;
  const SETTLE_MS_MAX = 60_000;
  let healed = false;
  let settled = false;
  while (stats.steps < STEPS_MAX) {
    const ev = await sched.step();
    if (!ev) break;
    stats.steps++;
    checker.afterStep();
    if (violations.length > 0) break;
    if (!healed && sched.nowMs >= knobs.workloadMs) {
      healed = true;
      heal();
    }
    if (healed) {
      const inFlight = sched.count((e) => e.label === "deliver" || e.label === "restart") + pending.size;
      if (inFlight === 0 && workload.idle() && checker.quiescent()) {
        settled = true;
        break;
      }
      if (sched.nowMs > knobs.workloadMs + SETTLE_MS_MAX) break;
    }
  }
  stats.virtualMs = sched.nowMs;
  for (const t of world.coord.log.txns.values()) {
    if (t.status === "COMMITTED") stats.committed++;
    else if (t.status === "ABORTED") stats.aborted++;
  }
  if (violations.length === 0) {
    if (!settled) world.violation(`did not settle within ${SETTLE_MS_MAX} virtual ms after healing (${checker.describeUnsettled()})`);
    else checker.finalCheck(workload.acknowledged());
  }
  // Let orphaned continuations finish so nothing leaks into the next seed.
  await (async () => {
    for (const p of [...pending.values()]) p.onDeath();
    pending.clear();
  })();
  return { seed: options.seed, violations, history, stats, fingerprint: hash.toString(16).padStart(8, "0") };
}

// ------------------------------------------------------------------ workload
export interface TransferRequestLike {
  readonly idempotencyKey: string;
  readonly fromAccountId: string;
  readonly toAccountId: string;
  readonly amountMinor: bigint;
  readonly currency: string;
  readonly memo: string;
}

/** undefined: refused (not listening); a promise of undefined: the connection dropped mid-call. */
export type TransferCall = (caller: string, req: TransferRequestLike) => Promise<{ result: Result<TxnRecord>; txnId: string | undefined } | undefined> | undefined;

export interface Workload {
  schedule(): void;
  idle(): boolean;
  /** Txn ids a client was told COMMITTED. */
  acknowledged(): ReadonlySet<string>;
}

const TRANSIENT = new Set(["participant_timeout", "participant_unavailable", "coordinator_restarted", "idempotency_key_in_use"]);
const ATTEMPTS_MAX = 6;

function createWorkload(world: World, rng: Rng, call: TransferCall, checker: Checker): Workload {
  const { sched, knobs } = world;
  const acked = new Set<string>();
  /** Keys some client also used for a different request. */
  const contested = new Set<string>();
  let outstanding = 0;
  let retriesQueued = 0;

  function attempt(caller: string, req: TransferRequestLike, n: number, variant: number): void {
    world.stats.transfers++;
    const label = `${caller}/${req.idempotencyKey}${variant > 0 ? "'" : ""}`;
    const p = call(caller, req);
    if (!p) {
      world.note(`client ${label} attempt ${n}: refused (coordinator down)`);
      retry(caller, req, n, variant);
      return;
    }
    outstanding++;
    world.note(`client ${label} attempt ${n}: ${req.fromAccountId}->${req.toAccountId} ${req.amountMinor}`);
    void p.then((out) => {
      outstanding--;
      if (!out) {
        world.note(`client ${label} attempt ${n}: connection lost`);
        return retry(caller, req, n, variant);
      }
      const r = out.result;
      if (r.ok) {
        world.note(`client ${label} attempt ${n}: ${r.value.status} ${r.value.txnId.slice(0, 11)}`);
        if (r.value.status === "COMMITTED") acked.add(r.value.txnId);
        checker.onClientResult(caller, req.idempotencyKey, variant, r.value.txnId, r.value.status);
        // Sometimes ask again: the replay must name the same txn.
        if (rng.chance(0.2) && n < ATTEMPTS_MAX) later(() => attempt(caller, req, n + 1, variant));
        return;
      }
      world.note(`client ${label} attempt ${n}: ${r.reason}${out.txnId ? ` ${out.txnId.slice(0, 11)}` : ""}`);
      if (r.reason === "idempotency_key_reused" && !contested.has(`${caller}/${req.idempotencyKey}`)) {
        world.violation(`a retry of ${label} with the same request was called a conflict`);
      }
      if (out.txnId && !r.reason.startsWith("idempotency_key_")) checker.onClientResult(caller, req.idempotencyKey, variant, out.txnId, "ABORTED");
      if (TRANSIENT.has(r.reason)) return retry(caller, req, n, variant);
    });
  }

  function later(fn: () => void): void {
    retriesQueued++;
    sched.after(rng.int(5, 300), "", "client", () => {
      retriesQueued--;
      fn();
    });
  }

  function retry(caller: string, req: TransferRequestLike, n: number, variant: number): void {
    if (n >= ATTEMPTS_MAX) return;
    later(() => attempt(caller, req, n + 1, variant));
  }

  return {
    schedule() {
      const callers = USERS.filter((u) => world.accounts.some((a) => a.ownerUserId === u));
      const hot = world.accounts[0]!;
      for (let i = 0; i < knobs.ops; i++) {
        const caller = rng.pick(callers);
        const own = world.accounts.filter((a) => a.ownerUserId === caller);
        // Much of the traffic leans on the hot account (alice's bank-a/1001), in and out.
        const from = caller === "alice" && rng.chance(0.6) ? hot : rng.pick(own);
        const others = world.accounts.filter((a) => a.accountId !== from.accountId);
        const to = from !== hot && rng.chance(0.4) ? hot : rng.pick(others);
        const req = { idempotencyKey: `k${i}`, fromAccountId: from.accountId, toAccountId: to.accountId, amountMinor: BigInt(rng.int(1, 180)), currency: "USD", memo: "" };
        const at = rng.int(0, knobs.workloadMs);
        sched.at(at, "", "client", () => attempt(caller, req, 1, 0));
        if (rng.chance(knobs.dupRequestP)) sched.at(at + rng.int(0, 40), "", "client", () => attempt(caller, req, 1, 0));
        if (rng.chance(knobs.conflictP)) {
          contested.add(`${caller}/${req.idempotencyKey}`);
          sched.at(at + rng.int(-50, 400), "", "client", () => attempt(caller, { ...req, amountMinor: req.amountMinor + 1n }, 1, 1));
        }
      }
    },
    idle: () => outstanding === 0 && retriesQueued === 0 && sched.count((e) => e.label === "client") === 0,
    acknowledged: () => acked,
  };
}
