// A deterministic simulation of two-phase commit (VOPR spirit): the REAL
// coordinator (services/gateway/src/domain/coordinator.ts over the in-memory
// log from fakes.ts) and the REAL banks (services/bank/src/bank.ts +
// domain/participant.ts over the in-memory ledger, with the real in-doubt
// resolver) talk through a simulated network that loses, delays, reorders and
// duplicates messages; processes crash (volatile state gone, the durable log
// and ledger survive), freeze, and die at the named fault points; writes can
// fail to reach the disk. Card payments run through the REAL cards.ts over an
// in-memory card store (sim-card-store.ts) and a simulated credit bureau,
// interleaved with transfers under the same faults. One seed drives every
// choice. The checkers look at the whole world after every step.
import { AssertionError } from "@paygate/money";
import type { FaultPoint } from "@paygate/faults";
import { ledgerDirectionOf, retryableReasons } from "@paygate/vocab";
import type { LegInput } from "@paygate/bank/domain";
import { createBank, createResolver, type Bank, type Resolver } from "@paygate/bank/use-cases";
import {
  CAPTURE_FINAL_REASONS,
  createCardHasher,
  createCards,
  createCoordinator,
  createDecidedFeed,
  createReplicaDuties,
  deliveryOfFailure,
  knownVoteOf,
  StoreUnavailableError,
  UNKNOWN_ANSWER_VOTE,
  voteOfFailure,
  type Cards,
  type Coordinator,
  type CoordinatorLog,
  type CreditReportResult,
  type CreditReports,
  type DecisionKind,
  type Delivery,
  type EventLogger,
  type Leg,
  type Participants,
  type ReplicaLeases,
  type Vote,
} from "@paygate/gateway/domain";
import { createMemoryDirectory, createMemoryLog, type MemoryLog } from "@paygate/gateway/test-support";
import { createCardChecker, type CardChecker } from "./card-checker.js";
import { createCardWorkload } from "./card-workload.js";
import { createChecker, type Checker } from "./checker.js";
import { CREDIT_FILE, customerAccountsFor, merchantAccountAt, RISK, type SimAccount } from "./people.js";
import { createRng, type Rng } from "./rng.js";
import { Scheduler } from "./scheduler.js";
import { createSimCardStore, type CardStoreIo, type SimCardStore } from "./sim-card-store.js";
import { createSimLedgerStore, type LedgerEngine, type SimLedgerStore } from "./sim-store.js";
import { createTransferWorkload } from "./transfer-workload.js";

export const REPLICA = "gw";
export const COORDINATOR = "coordinator";
export const BUREAU = "credit-bureau";
/** Every clock reads EPOCH_MS + virtual time (+ a bank's skew): card expiry dates need a real-looking date. */
export const EPOCH_MS = Date.UTC(2030, 0, 15, 8, 0, 0);

/** Deliberate bugs, for the control tests that prove the checker can fail. */
export type Broken =
  /** A bank that cannot hold the money says YES anyway (and records nothing). */
  | "yes_without_hold"
  /** A bank that treats PREPARED as volatile: after a restart it aborts what it had prepared. */
  | "forget_prepared_on_restart"
  /** A coordinator whose bank client counts a Prepare timeout as a YES vote. */
  | "timeout_counts_as_yes"
  /** A coordinator that answers GetDecision "ABORT" for an undecided txn without logging it first. */
  | "presume_abort_without_logging"
  /** A card bank that captures the whole hold, whatever amount the capture asks for. */
  | "capture_whole_hold"
  /** A gateway that stores a transient capture failure (participant_*, hold_in_use, ...) as the item's final result. */
  | "transient_capture_final"
  /** A card store whose refund skips the reservation check (refunded + reserved + amount <= captured). */
  | "refund_skips_reservation"
  /** A bank whose release leaves the hold ACTIVE after taking it out of held: its expiry releases it again. */
  | "hold_released_twice"
  /** A gateway bank client that reports an Abort acknowledged without sending it (a retry then meets the old hold). */
  | "abort_acked_unsent";

export const TRANSFER_BROKEN: readonly Broken[] = [
  "yes_without_hold",
  "forget_prepared_on_restart",
  "timeout_counts_as_yes",
  "presume_abort_without_logging",
];
export const CARD_BROKEN: readonly Broken[] = [
  "capture_whole_hold",
  "transient_capture_final",
  "refund_skips_reservation",
  "hold_released_twice",
  "abort_acked_unsent",
];

export interface SimOptions {
  readonly seed: number;
  readonly broken?: Broken;
  /** Keep every history line (default: yes; needed to print a violation). */
  readonly history?: boolean;
  /** The bank's in-memory ledger engine (see sim-store.ts). */
  readonly ledger?: LedgerEngine;
  /**
   * Hunting aid (run.ts --tolerate): violations matching this are noted, not
   * counted, so a run goes on past a known finding. Never used by the tests.
   */
  readonly tolerate?: RegExp;
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
  /** Card calls made by the merchant and the admin (every attempt). */
  cardCalls: number;
  /** Authorizations at the end, by how they ended (approved = reached APPROVED). */
  approved: number;
  declined: number;
  captured: number;
  partialCaptures: number;
  voided: number;
  expired: number;
  refunds: number;
  /** Capture items answered with a retryable failure (the batch was sent again). */
  captureRetries: number;
  /** Holds the banks' own sweeps expired. */
  bankExpiries: number;
  /** Gateway store writes that failed (StoreUnavailableError). */
  gatewayStoreFailures: number;
}

export interface SimResult {
  readonly seed: number;
  readonly violations: readonly string[];
  readonly history: readonly string[];
  readonly stats: SimStats;
  /** Hash of the full history: equal for two runs of one seed. */
  readonly fingerprint: string;
}

const NO_LEASES: ReplicaLeases = {
  heartbeat: async () => {},
  isAlive: async () => false,
  claimExpired: async () => [],
  takenOver: async () => {},
};

/** The log's writes (ack and deferAck "never reject": a lost one costs a resend). */
const LOG_WRITES: ReadonlySet<string> = new Set(["claim", "reclaim", "registerRound", "decide"]);

/** A bank call's own deadline passed, as @paygate/rpc's errorInfo reports a Connect DeadlineExceeded. */
const DEADLINE_EXCEEDED = { reason: "deadline_exceeded", message: "deadline exceeded" } as const;
/** The call's connection broke (the calling process died), as errorInfo reports Connect's Unavailable. */
const CONNECTION_LOST = { reason: "unavailable", message: "process died" } as const;

/** The gateway's card-data key (a fixed one: the hashes are never compared across runs). */
const CARD_HASHER = createCardHasher(Buffer.alloc(32, 7));

/** Thrown by a fault point or a kill: the process is gone (already marked down). */
export class SimCrash extends Error {
  override name = "SimCrash";
}

/** A write whose fsync failed: the transaction rolled back. */
export class SimDiskError extends Error {
  override name = "SimDiskError";
}

type BankReply =
  | {
      ok: true;
      vote?: "yes" | "no";
      reason?: string;
      decision?: "COMMIT" | "ABORT";
      report?: { score: number; delinquencies: number };
    }
  | { ok: false; reason: string };

type Msg =
  | { kind: "credit_report"; userId: string }
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
  /** Weight of "the gateway's next store write fails" (lost, or applied with the outcome lost). */
  readonly gatewayStoreW: number;
  readonly coordPrepareTimeoutMs: number;
  readonly commitTimeoutMs: number;
  readonly bankPrepareTimeoutMs: number;
  readonly resolveIntervalMs: number;
  readonly dupRequestP: number;
  readonly conflictP: number;
  /** Authorizations the merchant asks for (0: a transfers-only world). */
  readonly authorizations: number;
  readonly merchantBank: string;
  readonly holdTtlMs: number;
  readonly gatewayExpiryEveryMs: number;
  readonly bankExpiryEveryMs: number;
  /** Each bank's clock is off the gateway's by up to this much (either way). */
  readonly clockSkewMaxMs: number;
  readonly bureauTimeoutMs: number;
  /** A card-store write is durable this long after it is issued (group commit), at most. */
  readonly storeLatencyMaxMs: number;
}

function drawKnobs(rng: Rng): Knobs {
  const three = rng.chance(0.5);
  // Most worlds take card payments too; they then carry fewer transfers, so a seed costs about what a transfers-only one did.
  const authorizations = rng.pick([0, 0, 1, 2, 3]);
  return {
    banks: three ? ["bank-a", "bank-b", "bank-c"] : ["bank-a", "bank-b"],
    workloadMs: rng.int(200, 1500),
    ops: authorizations > 0 ? rng.int(1, 5) : rng.int(3, 12),
    lossP: rng.pick([0, 0, 0.02, 0.1, 0.3]),
    dupP: rng.pick([0, 0.05, 0.2]),
    delayMaxMs: rng.pick([1, 10, 60, 250]),
    nemesisEveryMs: rng.pick([40, 120, 400, 100_000]),
    crashW: rng.pick([0, 1, 3]),
    partitionW: rng.pick([0, 1, 2]),
    freezeW: rng.pick([0, 1]),
    faultPointW: rng.pick([0, 1, 3]),
    diskW: rng.pick([0, 1]),
    gatewayStoreW: rng.pick([0, 0, 1]),
    coordPrepareTimeoutMs: rng.pick([80, 200, 500]),
    commitTimeoutMs: rng.pick([50, 150]),
    bankPrepareTimeoutMs: rng.pick([60, 250, 600]),
    resolveIntervalMs: rng.pick([40, 120]),
    dupRequestP: rng.pick([0, 0.15, 0.4]),
    conflictP: rng.pick([0, 0.05]),
    authorizations,
    merchantBank: rng.pick(three ? ["bank-a", "bank-b", "bank-c"] : ["bank-a", "bank-b"]),
    holdTtlMs: rng.pick([150, 400, 800]),
    gatewayExpiryEveryMs: rng.pick([40, 150]),
    bankExpiryEveryMs: rng.pick([40, 150]),
    clockSkewMaxMs: rng.pick([0, 0, 20, 150]),
    bureauTimeoutMs: rng.pick([40, 150]),
    storeLatencyMaxMs: rng.pick([0, 0, 3, 12]),
  };
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
  /** Its clock minus the gateway's. */
  readonly skewMs: number;
  /** Starts the expiry sweep's timer unless it runs (it sleeps while the bank has no ACTIVE hold). */
  wakeSweep: () => void;
}

export interface BureauNode {
  up: boolean;
  incarnation: number;
}

export interface CoordinatorNode {
  readonly log: MemoryLog;
  state: "up" | "recovering" | "down";
  incarnation: number;
  coordinator: Coordinator | undefined;
  cards: Cards | undefined;
  /** Durable like the log: survives a gateway crash. */
  readonly cardStore: SimCardStore;
  redriving: boolean;
  armed: Set<FaultPoint>;
  /** Starts the authorization expiry sweep's timer unless it runs (it sleeps while nothing is APPROVED). */
  wakeSweep: () => void;
  /**
   * The next write to the gateway's store (log or card store) fails with
   * StoreUnavailableError: "lost" before it applies, "unknown" after (the
   * connection dropped during COMMIT).
   */
  storeFault: "lost" | "unknown" | undefined;
}

/** What a client reaches when it calls the gateway. */
export interface Gateway {
  readonly coordinator: Coordinator;
  readonly cards: Cards;
}

/** undefined: refused (not listening); a promise of undefined: the connection dropped mid-call. */
export type GatewayCall = <T>(what: string, fn: (g: Gateway) => Promise<T>) => Promise<T | undefined> | undefined;

export interface World {
  readonly seed: number;
  readonly rng: Rng;
  readonly knobs: Knobs;
  readonly sched: Scheduler;
  readonly banks: Map<string, BankNode>;
  readonly coord: CoordinatorNode;
  readonly bureau: BureauNode;
  /** Every account: the customers' and the merchant's. */
  readonly accounts: readonly SimAccount[];
  readonly customerAccounts: readonly SimAccount[];
  readonly merchantAccount: SimAccount;
  readonly stats: SimStats;
  readonly broken: Broken | undefined;
  faultsOn: boolean;
  note(line: string): void;
  violation(text: string): void;
}

/** A bank that is not yet started, its accounts seeded. */
function addBankNode(world: World, name: string, skewMs: number, ledger: LedgerEngine | undefined): BankNode {
  const accounts = world.accounts;
  const node: BankNode = {
    name,
    store: createSimLedgerStore(ledger),
    up: false,
    incarnation: 0,
    bank: undefined,
    resolver: undefined,
    armed: new Set(),
    diskErrorArmed: false,
    skewMs,
    wakeSweep: () => {},
  };
  world.banks.set(name, node);
  const seedBank = createBank({
    name,
    store: node.store,
    faults: { armed: new Set(), hit: () => {} },
    clock: () => EPOCH_MS,
    onInvariantBroken: () => {},
  });
  seedBank.loadSeedOnce(() =>
    accounts
      .filter((a) => a.bank === name)
      .map((a) => ({ id: a.accountId, owner: a.ownerUserId, currency: a.currency, openingMinor: a.openingMinor })),
  );
  if (world.broken === "hold_released_twice") {
    node.store.rewriteHoldChange = (hold, change) =>
      change.state === "RELEASED" ? { ...change, state: "ACTIVE", closedAtMs: 0 } : change;
  }
  return node;
}

/** The knobs and the random streams of one run, forked from its seed in this order. */
function forkStreams(rng: Rng) {
  const knobs = drawKnobs(rng.fork());
  const net = rng.fork();
  const nemesisRng = rng.fork();
  const clientRng = rng.fork();
  const idRng = rng.fork();
  const cardClientRng = rng.fork();
  const cardCodeRng = rng.fork();
  const storeRng = rng.fork();
  return { knobs, net, nemesisRng, clientRng, idRng, cardClientRng, cardCodeRng, storeRng };
}

/** Every counter at zero. */
function newStats(): SimStats {
  return {
    steps: 0,
    virtualMs: 0,
    transfers: 0,
    committed: 0,
    aborted: 0,
    messages: 0,
    getDecisions: 0,
    dropped: 0,
    duplicated: 0,
    crashes: {},
    faultPointCrashes: 0,
    diskErrors: 0,
    partitions: 0,
    freezes: 0,
    cardCalls: 0,
    approved: 0,
    declined: 0,
    captured: 0,
    partialCaptures: 0,
    voided: 0,
    expired: 0,
    refunds: 0,
    captureRetries: 0,
    bankExpiries: 0,
    gatewayStoreFailures: 0,
  };
}

/** The world's shared state, with its history, violations and fingerprint. */
function createWorld(
  options: SimOptions,
  parts: Pick<World, "rng" | "knobs" | "sched" | "stats" | "customerAccounts" | "merchantAccount" | "accounts">,
  directory: ReturnType<typeof createMemoryDirectory>,
): { world: World; history: string[]; violations: string[]; fingerprint: () => string } {
  const { rng, knobs, sched, stats, customerAccounts, merchantAccount, accounts } = parts;
  const history: string[] = [];
  const violations: string[] = [];
  let hash = 0x811c9dc5;
  const world: World = {
    seed: options.seed,
    rng,
    knobs,
    sched,
    banks: new Map(),
    coord: {
      log: createMemoryLog(directory),
      state: "down",
      incarnation: 0,
      coordinator: undefined,
      cards: undefined,
      cardStore: createSimCardStore(),
      redriving: false,
      armed: new Set(),
      wakeSweep: () => {},
      storeFault: undefined,
    },
    bureau: { up: true, incarnation: 1 },
    accounts,
    customerAccounts,
    merchantAccount,
    stats,
    broken: options.broken,
    faultsOn: true,
    note(line) {
      const text = `t=${sched.nowMs} ${line}`;
      for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193) >>> 0;
      if (options.history !== false) history.push(text);
    },
    violation(text) {
      if (options.tolerate?.test(text)) return world.note(`TOLERATED ${text}`);
      if (violations.length < 20) violations.push(`t=${sched.nowMs} ${text}`);
      world.note(`VIOLATION ${text}`);
    },
  };
  return { world, history, violations, fingerprint: () => hash.toString(16).padStart(8, "0") };
}

export function runSimulation(options: SimOptions): Promise<SimResult> {
  return simulate(options);
}

async function simulate(options: SimOptions): Promise<SimResult> {
  const rng = createRng(options.seed);
  const { knobs, net, nemesisRng, clientRng, idRng, cardClientRng, cardCodeRng, storeRng } = forkStreams(rng);
  const sched = new Scheduler();
  const stats = newStats();
  const customerAccounts = customerAccountsFor(knobs.banks);
  const merchantAccount = merchantAccountAt(knobs.merchantBank);
  const accounts = [...customerAccounts, merchantAccount];
  const directory = createMemoryDirectory(accounts);
  const gatewayClock = { nowMs: () => EPOCH_MS + sched.nowMs };

  const { world, history, violations, fingerprint } = createWorld(
    options,
    { rng, knobs, sched, stats, customerAccounts, merchantAccount, accounts },
    directory,
  );
  const short = (txnId: string) => txnId.slice(0, REPLICA.length + 9);

  // ---------------------------------------------------------------- network
  const { pending, linkDownUntil, alive, exchange, killPending } = createNetwork();

  /** The simulated network: requests, their replies, lost and duplicated messages, cut links. */
  function createNetwork() {
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
        case "credit_report":
          return `credit_report ${m.userId}`;
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
      if (node === BUREAU) return world.bureau.incarnation === incarnation && world.bureau.up;
      const b = world.banks.get(node)!;
      return b.incarnation === incarnation && b.up;
    }

    function request(
      from: string,
      incarnation: number,
      to: string,
      msg: Msg,
      onReply: (b: BankReply) => void,
      onDeath: () => void,
    ): number {
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

    /**
     * One request and its answer, settled once: from the reply, from the
     * deadline passing (the client's timeout), from the asking process dying,
     * or from `abort` (the caller giving up).
     */
    function exchange<T>(
      from: string,
      inc: number,
      to: string,
      msg: Msg,
      deadline: { readonly ms: number; readonly label: string; readonly answer: () => T },
      answer: { readonly reply: (body: BankReply) => T; readonly death: () => T },
      abort?: { readonly signal: AbortSignal; readonly answer: () => T },
    ): Promise<T> {
      return new Promise<T>((resolve) => {
        let done = false;
        const finish = (v: T) => {
          if (done) return;
          done = true;
          timer.cancelled = true;
          settleRequest(id);
          resolve(v);
        };
        const timer = sched.after(deadline.ms, from, deadline.label, () => finish(deadline.answer()));
        const id = request(
          from,
          inc,
          to,
          msg,
          (body) => finish(answer.reply(body)),
          () => finish(answer.death()),
        );
        abort?.signal.addEventListener("abort", () => finish(abort.answer()), { once: true });
      });
    }

    function incarnationOf(node: string): number {
      if (node === COORDINATOR) return world.coord.incarnation;
      return node === BUREAU ? world.bureau.incarnation : world.banks.get(node)!.incarnation;
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
      if (to === BUREAU) {
        if (msg.kind !== "credit_report") throw new Error(`the bureau got ${msg.kind}`);
        if (!world.bureau.up) return; // connection refused
        const report = CREDIT_FILE[msg.userId];
        return reply(report ? { ok: true, report } : { ok: false, reason: "user_not_found" });
      }
      if (to === COORDINATOR) {
        if (msg.kind !== "get_decision") throw new Error(`coordinator got ${msg.kind}`);
        const c = world.coord;
        // Not listening: before recovery finished (main.ts starts the server after recover()).
        if (c.state !== "up" || !c.coordinator) return;
        stats.getDecisions++;
        if (world.broken === "presume_abort_without_logging" && !c.log.decisions.has(msg.txnId))
          return reply({ ok: true, decision: "ABORT" });
        const inc = c.incarnation;
        c.coordinator.getDecision(msg.txnId, msg.bank).then(
          (r) => {
            if (alive(COORDINATOR, inc))
              reply(r.ok ? { ok: true, decision: r.value } : { ok: false, reason: r.reason });
          },
          (e: unknown) => {
            if (e instanceof StoreUnavailableError)
              return alive(COORDINATOR, inc) && reply({ ok: false, reason: "store_unavailable" });
            if (!(e instanceof SimCrash))
              world.violation(`getDecision threw: ${e instanceof Error ? e.stack : String(e)}`);
          },
        );
        return;
      }
      const node = world.banks.get(to)!;
      if (!node.up || !node.bank) return; // connection refused
      handleAtBank(node, msg, reply);
    }
    return { pending, linkDownUntil, alive, exchange, killPending };
  }

  // ------------------------------------------------------------------ banks
  function handleAtBank(node: BankNode, msg: Msg, reply: (b: BankReply) => void): void {
    const bank = node.bank!;
    try {
      switch (msg.kind) {
        case "prepare": {
          const legs =
            world.broken === "capture_whole_hold"
              ? msg.legs.map((l) =>
                  l.direction === "capture"
                    ? { ...l, amountMinor: node.store.hold(l.holdId ?? "")?.amountMinor ?? l.amountMinor }
                    : l,
                )
              : msg.legs;
          const r = bank.prepare({ txnId: msg.txnId, legs });
          checker.onVote(node, msg.txnId, legs, r.ok ? r.value : undefined);
          if (!r.ok) return reply({ ok: false, reason: r.reason });
          if (world.broken === "yes_without_hold" && r.value.vote === "no" && r.value.reason === "insufficient_funds")
            return reply({ ok: true, vote: "yes" });
          return reply(
            r.value.vote === "yes" ? { ok: true, vote: "yes" } : { ok: true, vote: "no", reason: r.value.reason },
          );
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

  function quietLogger(who: string, errorsAreViolations: boolean): EventLogger {
    return {
      info: () => {},
      warn: () => {},
      error: (fields, msg) => {
        if (errorsAreViolations) world.violation(`${who} logged an error: ${msg} ${JSON.stringify(fields)}`);
      },
    };
  }

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
    const bankClock = () => EPOCH_MS + sched.nowMs + node.skewMs;
    const bank = createBank({
      name: node.name,
      store: node.store,
      faults,
      clock: bankClock,
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
      async ask(txnId, coordinator) {
        if (coordinator !== REPLICA) throw new Error(`unknown coordinator ${coordinator}`);
        const answer = await exchange<"commit" | "abort" | Error>(
          node.name,
          inc,
          COORDINATOR,
          { kind: "get_decision", txnId, bank: node.name },
          { ms: knobs.commitTimeoutMs, label: "ask-deadline", answer: () => new Error("deadline exceeded") },
          {
            reply: (body) =>
              body.ok && body.decision
                ? body.decision === "COMMIT"
                  ? "commit"
                  : "abort"
                : new Error(body.ok ? "no decision" : body.reason),
            death: () => new Error("process died"),
          },
        );
        if (answer instanceof Error) throw answer;
        return answer;
      },
      apply(txnId, decision) {
        if (!alive(node.name, inc)) throw new SimCrash("process is dead");
        const r = decision === "commit" ? bank.commit(txnId) : bank.abort(txnId);
        return r.ok ? undefined : r.reason;
      },
      logger: quietLogger(`${node.name} resolver`, true),
      prepareTimeoutMs: knobs.bankPrepareTimeoutMs,
      intervalMs: knobs.resolveIntervalMs,
      backoffMaxMs: 400,
      clock: bankClock,
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
    // The bank's own hold expiry sweep (services/bank/src/expiry.ts), on the bank's clock.
    // Its timer sleeps while no hold is ACTIVE: a tick then would do nothing.
    let ticking = false;
    const sweep = () => {
      ticking = false;
      if (node.incarnation !== inc || !node.up) return;
      try {
        // A sweep with nothing due changes nothing; skipping it saves the simulation a write.
        const nowMs = bankClock();
        let due = false;
        for (const h of node.store.holds.values())
          if (h.state === "ACTIVE" && h.pinnedTxnId === "" && h.expiresAtMs <= nowMs) due = true;
        if (due)
          for (const h of bank.expireHolds()) {
            stats.bankExpiries++;
            world.note(
              `${node.name} expired the hold of ${world.coord.cardStore.auths.get(h.holdId)?.authCode ?? "an unknown authorization"}`,
            );
          }
      } catch (e) {
        if (!(e instanceof SimCrash || e instanceof SimDiskError))
          world.violation(`${node.name} expiry sweep failed: ${e instanceof Error ? e.message : String(e)}`);
      }
      node.wakeSweep();
    };
    node.wakeSweep = () => {
      if (ticking || node.incarnation !== inc || !node.up) return;
      for (const h of node.store.holds.values()) {
        if (h.state !== "ACTIVE") continue;
        ticking = true;
        sched.after(knobs.bankExpiryEveryMs, node.name, "expiry-tick", sweep);
        return;
      }
    };
    node.wakeSweep();
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
  const { startCoordinator, crashCoordinator } = createGatewayProcess();

  /** The gateway process: its log and card store as one incarnation reaches them, its start, recovery and crash. */
  function createGatewayProcess() {
    /** The log as one process incarnation sees it: a dead process writes nothing. */
    /** Takes the armed gateway store failure, if any, for this write. */
    function takeStoreFault(what: string): "lost" | "unknown" | undefined {
      const fault = world.coord.storeFault;
      if (!fault || !world.faultsOn) return undefined;
      world.coord.storeFault = undefined;
      stats.gatewayStoreFailures++;
      world.note(`STORE ${what} failed: ${fault === "lost" ? "nothing written" : "written, but the outcome was lost"}`);
      return fault;
    }

    const storeUnavailable = () => new StoreUnavailableError("the gateway's store is unavailable");

    /** The log as one process incarnation sees it: a dead process writes nothing; a write may meet a store failure. */
    function fencedLog(log: MemoryLog, inc: number): CoordinatorLog {
      const dead = () => world.coord.incarnation !== inc || world.coord.state === "down";
      const wrapped = {} as Record<string, unknown>;
      for (const k of Object.keys(log) as (keyof MemoryLog)[]) {
        const v = log[k];
        if (typeof v !== "function") continue;
        const call = (args: unknown[]) => (v as (...a: unknown[]) => unknown).apply(log, args);
        wrapped[k] = (...args: unknown[]) => {
          // ack and deferAck never reject (the port says so): a dead process's are simply lost.
          if ((k === "ack" || k === "deferAck") && dead()) return undefined;
          if (dead()) throw new SimCrash("process is dead");
          const fault = LOG_WRITES.has(k) ? takeStoreFault(`log.${k}`) : undefined;
          if (fault === "lost") return Promise.reject(storeUnavailable());
          if (fault === "unknown") {
            return Promise.resolve(call(args)).then(() => {
              throw storeUnavailable();
            });
          }
          return call(args);
        };
      }
      return wrapped as unknown as CoordinatorLog;
    }

    // The leg as the bank reads it off the wire: the direction by the vocabulary's one
    // table (what the gateway's bank client sends by); a hold leg's hold id and lifetime pass as they are.
    function toBankLegs(legs: readonly Leg[]): LegInput[] {
      return legs.map(({ direction, ...rest }) => ({ ...rest, direction: ledgerDirectionOf(direction) }));
    }

    function participantsFor(inc: number): Participants {
      // A simulated bank's answer means what a real one's does: the gateway's
      // bank client rules (participant-replies.ts), not a copy of them. Only the
      // transport is simulated here: a deadline, a dead process, a lost reply,
      // each reported as the Connect client reports it (errorInfo's reasons).
      const voteOf = (body: BankReply): Vote => {
        if (body.ok)
          return (
            knownVoteOf({
              vote: body.vote === "yes" ? "YES" : body.vote === "no" ? "NO" : "UNSPECIFIED",
              reason: body.reason ?? "",
            }) ?? UNKNOWN_ANSWER_VOTE
          );
        return voteOfFailure({ reason: body.reason, message: "refused by the simulated bank", timedOut: false });
      };
      const deliverDecision = (
        kind: DecisionKind,
        bank: string,
        txnId: string,
        timeoutMs: number,
      ): Promise<Delivery> => {
        if (kind === "abort" && world.broken === "abort_acked_unsent") return Promise.resolve({ ok: true });
        return exchange<Delivery>(
          COORDINATOR,
          inc,
          bank,
          { kind, txnId },
          {
            ms: timeoutMs,
            label: `${kind}-deadline`,
            answer: () => deliveryOfFailure(kind, DEADLINE_EXCEEDED),
          },
          {
            reply: (body) =>
              body.ok
                ? { ok: true }
                : deliveryOfFailure(kind, { reason: body.reason, message: "refused by the simulated bank" }),
            death: () => deliveryOfFailure(kind, CONNECTION_LOST),
          },
        );
      };
      return {
        prepare(bank, txnId, legs, signal) {
          checker.onPrepareSent(txnId, legs);
          const timedOut = (): Vote => voteOfFailure({ ...DEADLINE_EXCEEDED, timedOut: true });
          return exchange<Vote>(
            COORDINATOR,
            inc,
            bank,
            { kind: "prepare", txnId, legs: toBankLegs(legs) },
            {
              ms: knobs.coordPrepareTimeoutMs,
              label: "prepare-deadline",
              answer: () => (world.broken === "timeout_counts_as_yes" ? { vote: "YES" } : timedOut()),
            },
            { reply: voteOf, death: () => voteOfFailure({ ...CONNECTION_LOST, timedOut: false }) },
            { signal, answer: timedOut },
          );
        },
        commit: (bank, txnId, timeoutMs) => deliverDecision("commit", bank, txnId, timeoutMs),
        abort: (bank, txnId, timeoutMs) => deliverDecision("abort", bank, txnId, timeoutMs),
      };
    }

    /** As main.ts: the coordinator's recovery, then the cards' (their rounds settle against the same log), then listening. */
    function recoverCoordinator(inc: number, coordinator: Coordinator, cards: Cards): void {
      const c = world.coord;
      (async () => ({ report: await coordinator.recover(), cardsReport: await cards.recover() }))().then(
        ({ report, cardsReport }) => {
          if (c.incarnation !== inc || c.state === "down") return;
          c.state = "up";
          const settled = cardsReport.authorizations + cardsReport.operations + cardsReport.refunds;
          world.note(
            `coordinator #${inc} listening (aborted ${report.abortedPending} pending, redrove ${report.redriven}, settled ${settled} card rounds)`,
          );
        },
        (e: unknown) => {
          if (e instanceof SimCrash) return;
          // main.ts exits when recovery fails; the supervisor starts it again.
          if (e instanceof StoreUnavailableError) return crashCoordinator("recovery met an unavailable store");
          world.violation(`coordinator recovery failed: ${e instanceof Error ? e.message : String(e)}`);
        },
      );
    }

    /** The orphan sweep (duties.start() alone: every prepare timeout): claims and rounds whose request lost the store. */
    function startOrphanSweep(inc: number, duties: ReturnType<typeof createReplicaDuties>): void {
      const c = world.coord;
      let sweepingOrphans = false;
      const orphanTick = () => {
        if (c.incarnation !== inc || c.state === "down") return;
        if (c.state === "up" && !sweepingOrphans) {
          sweepingOrphans = true;
          duties.tick().then(
            () => void (sweepingOrphans = false),
            (e: unknown) => {
              sweepingOrphans = false;
              if (!(e instanceof SimCrash || e instanceof StoreUnavailableError))
                world.violation(`orphan sweep failed: ${e instanceof Error ? e.message : String(e)}`);
            },
          );
        }
        sched.after(knobs.coordPrepareTimeoutMs, COORDINATOR, "orphan-tick", orphanTick);
      };
      sched.after(knobs.coordPrepareTimeoutMs, COORDINATOR, "orphan-tick", orphanTick);
    }

    /** The redrive loop (startRedrive): a pass every 50 ms, never two at once. */
    function startRedrive(inc: number, coordinator: Coordinator): void {
      const c = world.coord;
      const tick = () => {
        if (c.incarnation !== inc || c.state === "down") return;
        if (c.state === "up" && !c.redriving) {
          c.redriving = true;
          coordinator.redriveOnce().then(
            () => void (c.incarnation === inc && (c.redriving = false)),
            (e: unknown) => {
              if (c.incarnation === inc) c.redriving = false;
              // startRedrive logs a failed tick and tries again at the next.
              if (!(e instanceof SimCrash || e instanceof StoreUnavailableError))
                world.violation(`redrive failed: ${e instanceof Error ? e.message : String(e)}`);
            },
          );
        }
        sched.after(50, COORDINATOR, "redrive-tick", tick);
      };
      sched.after(50, COORDINATOR, "redrive-tick", tick);
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
        clock: gatewayClock,
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
      const cards = createCards({
        store: c.cardStore.view(cardStoreIo(inc)),
        rounds: coordinator,
        directory,
        bureau: bureauFor(inc),
        hasher: CARD_HASHER,
        clock: gatewayClock,
        logger: quietLogger("cards", true),
        risk: RISK,
        authHoldTtlMs: knobs.holdTtlMs,
        randomInt: (max) => cardCodeRng.int(0, max - 1),
        replica: REPLICA,
        // One replica: nobody else's lease runs.
        isReplicaAlive: async () => false,
        // The control: a gateway that takes transient capture failures for final ones.
        ...(world.broken === "transient_capture_final"
          ? { captureFinalReasons: new Set([...CAPTURE_FINAL_REASONS, ...retryableReasons]) }
          : {}),
      });
      // Alone (one replica, its own store) the duties are the orphan sweep only: the leases go unused.
      const duties = createReplicaDuties({
        replica: REPLICA,
        bootId: `boot-${inc}`,
        leases: NO_LEASES,
        coordinator,
        cards,
        clock: gatewayClock,
        logger: quietLogger("replica duties", true),
        shared: false,
        leaseMs: knobs.coordPrepareTimeoutMs,
        heartbeatIntervalMs: knobs.coordPrepareTimeoutMs,
        prepareTimeoutMs: knobs.coordPrepareTimeoutMs,
      });
      c.coordinator = coordinator;
      c.cards = cards;
      world.note(`START coordinator #${inc} (recovering)`);
      recoverCoordinator(inc, coordinator, cards);
      startRedrive(inc, coordinator);
      startOrphanSweep(inc, duties);
      // The gateway's authorization expiry sweep (cards.startExpiry), on the gateway's clock.
      // Its timer sleeps while no authorization is APPROVED: a tick then would do nothing.
      let sweeping = false;
      let ticking = false;
      const sweep = () => {
        ticking = false;
        if (c.incarnation !== inc || c.state === "down") return;
        // A sweep with nothing due changes nothing; skipping it saves the simulation a write.
        const nowMs = gatewayClock.nowMs();
        let due = false;
        for (const a of c.cardStore.auths.values())
          if (a.status === "APPROVED" && a.op === null && a.expiresAtMs <= nowMs) due = true;
        if (c.state === "up" && !sweeping && due) {
          sweeping = true;
          cards.expireDue().then(
            (n) => {
              sweeping = false;
              if (n > 0 && alive(COORDINATOR, inc)) world.note(`gateway expired ${n} authorization(s)`);
            },
            (e: unknown) => {
              sweeping = false;
              if (!(e instanceof SimCrash || e instanceof StoreUnavailableError))
                world.violation(`authorization expiry sweep failed: ${e instanceof Error ? e.message : String(e)}`);
            },
          );
        }
        c.wakeSweep();
      };
      c.wakeSweep = () => {
        if (ticking || c.incarnation !== inc || c.state === "down") return;
        for (const a of c.cardStore.auths.values()) {
          if (a.status !== "APPROVED") continue;
          ticking = true;
          sched.after(knobs.gatewayExpiryEveryMs, COORDINATOR, "expiry-tick", sweep);
          return;
        }
      };
      c.wakeSweep();
    }

    /**
     * The card store as one gateway incarnation reaches it: writes durable
     * after a (group commit) delay, nothing from a dead process, and a write
     * may meet a store failure.
     */
    function cardStoreIo(inc: number): CardStoreIo {
      const dead = () => world.coord.incarnation !== inc || world.coord.state === "down";
      return {
        alive() {
          if (dead()) throw new SimCrash("process is dead");
        },
        write<T>(what: string, apply: () => T): Promise<T> {
          if (dead()) return Promise.reject(new SimCrash("process is dead"));
          const durable = (): T => {
            // Not yet durable when the process died: the write is lost.
            if (dead()) throw new SimCrash("process is dead");
            const fault = takeStoreFault(`cards.${what}`);
            if (fault === "lost") throw storeUnavailable();
            const r = apply();
            if (fault === "unknown") throw storeUnavailable();
            return r;
          };
          const latency = world.faultsOn ? storeRng.int(0, knobs.storeLatencyMaxMs) : 0;
          if (latency === 0) return Promise.resolve().then(durable);
          return new Promise((resolve, reject) => {
            sched.after(latency, COORDINATOR, "card-store", () => {
              try {
                resolve(durable());
              } catch (e) {
                reject(e);
              }
            });
          });
        },
      };
    }

    /** Mirrors services/gateway/src/bureau.ts: never throws; a timeout or a lost connection is bureau_unavailable. */
    function bureauFor(inc: number): CreditReports {
      const unavailable = (message: string): CreditReportResult => ({
        ok: false,
        reason: "bureau_unavailable",
        message,
      });
      return {
        fetch: (userId) =>
          exchange<CreditReportResult>(
            COORDINATOR,
            inc,
            BUREAU,
            { kind: "credit_report", userId },
            { ms: knobs.bureauTimeoutMs, label: "bureau-deadline", answer: () => unavailable("deadline exceeded") },
            {
              reply(body) {
                if (body.ok && body.report) return { ok: true, report: { userId, ...body.report } };
                return !body.ok && body.reason === "user_not_found"
                  ? { ok: false, reason: "user_not_found", message: "no report" }
                  : unavailable("bad answer");
              },
              death: () => unavailable("process died"),
            },
          ),
      };
    }

    function crashCoordinator(why: string): void {
      const c = world.coord;
      if (c.state === "down") return;
      c.state = "down";
      c.coordinator = undefined;
      c.cards = undefined;
      stats.crashes[COORDINATOR] = (stats.crashes[COORDINATOR] ?? 0) + 1;
      world.note(`CRASH coordinator (${why})`);
      killPending(COORDINATOR);
      sched.after(nemesisRng.int(1, 300), "", "restart", startCoordinator);
    }
    return { startCoordinator, crashCoordinator };
  }

  // ---------------------------------------------------------------- nemesis
  const { nemesis, heal } = createNemesis();

  /** The faults: crashes, partitions, freezes, armed fault points and store failures; and the healing. */
  function createNemesis() {
    function crashBureau(): void {
      const b = world.bureau;
      if (!b.up) return;
      b.up = false;
      stats.crashes[BUREAU] = (stats.crashes[BUREAU] ?? 0) + 1;
      world.note("CRASH credit bureau (kill -9)");
      sched.after(nemesisRng.int(1, 300), "", "restart", () => {
        b.up = true;
        b.incarnation++;
        world.note(`START credit bureau #${b.incarnation}`);
      });
    }

    /** One fault of `kind` at `target`: the nemesis's draws after choosing them. */
    function strike(kind: string, target: string, cardsOn: boolean): void {
      switch (kind) {
        case "crash":
          if (target === COORDINATOR) crashCoordinator("kill -9");
          else if (target === BUREAU) crashBureau();
          else crashBank(world.banks.get(target)!, "kill -9");
          break;
        case "partition": {
          const peer = nemesisRng.pick(cardsOn ? [...knobs.banks, BUREAU] : knobs.banks);
          const until = sched.nowMs + nemesisRng.int(10, 600);
          linkDownUntil.set(peer, Math.max(linkDownUntil.get(peer) ?? 0, until));
          stats.partitions++;
          world.note(`PARTITION coordinator<->${peer} until t=${until}`);
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
          if (target === BUREAU) break;
          if (target === COORDINATOR) {
            const p = nemesisRng.pick<FaultPoint>([
              "gateway.after_votes_before_decision",
              "gateway.after_commit_logged",
              "gateway.after_abort_logged",
            ]);
            world.coord.armed.add(p);
            world.note(`ARM ${p}`);
          } else {
            const p = nemesisRng.pick<FaultPoint>([
              "bank.after_prepare_logged",
              "bank.before_commit_apply",
              "bank.after_commit_applied",
            ]);
            world.banks.get(target)!.armed.add(p);
            world.note(`ARM ${target} ${p}`);
          }
          break;
        }
        case "gateway_store": {
          const c = world.coord;
          c.storeFault = nemesisRng.pick(["lost", "unknown"] as const);
          world.note(`ARM gateway store failure (${c.storeFault})`);
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

    function nemesis(): void {
      if (!world.faultsOn) return;
      const cardsOn = knobs.authorizations > 0;
      const nodes = cardsOn ? [COORDINATOR, ...knobs.banks, BUREAU] : [COORDINATOR, ...knobs.banks];
      const weights: [string, number][] = [
        ["crash", knobs.crashW],
        ["partition", knobs.partitionW],
        ["freeze", knobs.freezeW],
        ["fault_point", knobs.faultPointW],
        ["disk", knobs.diskW],
        ["gateway_store", knobs.gatewayStoreW],
      ];
      const total = weights.reduce((t, [, w]) => t + w, 0);
      if (total > 0) {
        let r = nemesisRng.next() * total;
        const kind = weights.find(([, w]) => (r -= w) < 0)?.[0] ?? "crash";
        const target = nemesisRng.pick(nodes);
        strike(kind, target, cardsOn);
      }
      sched.after(nemesisRng.int(1, knobs.nemesisEveryMs * 2), "", "nemesis", nemesis);
    }

    function heal(): void {
      world.faultsOn = false;
      linkDownUntil.clear();
      for (const [n] of sched.frozenUntil) sched.frozenUntil.set(n, sched.nowMs);
      world.coord.armed.clear();
      world.coord.storeFault = undefined;
      for (const b of world.banks.values()) {
        b.armed.clear();
        b.diskErrorArmed = false;
      }
      world.note("HEAL: faults off, links up, processes continued");
    }
    return { nemesis, heal };
  }

  // ------------------------------------------------------------------ setup
  /** Every bank, each with its clock skew (drawn in bank order), seeded and started. */
  function startBanks(): void {
    const skewRng = rng.fork();
    for (const name of knobs.banks) {
      const skewMs = knobs.clockSkewMaxMs === 0 ? 0 : skewRng.int(-knobs.clockSkewMaxMs, knobs.clockSkewMaxMs);
      const node = addBankNode(world, name, skewMs, options.ledger);
      startBank(node);
    }
  }

  /** The checkers hear of every bank commit and every card store change. */
  function wireCheckers(): void {
    for (const node of world.banks.values()) {
      node.store.afterCommit = (commit) => {
        checker.onBankCommit(node, commit);
        if (commit.holds.length > 0) node.wakeSweep();
      };
    }
    world.coord.cardStore.onChange = (change) => {
      cardChecker.onChange(change);
      if (change.kind === "auth" && change.after?.status === "APPROVED") world.coord.wakeSweep();
    };
    if (world.broken === "refund_skips_reservation") world.coord.cardStore.skipRefundReservationCheck = true;
  }

  startBanks();
  const cardChecker: CardChecker = createCardChecker(world);
  const checker: Checker = createChecker(world, cardChecker);
  wireCheckers();
  startCoordinator();
  sched.after(nemesisRng.int(1, knobs.nemesisEveryMs), "", "nemesis", nemesis);

  // ---------------------------------------------------------------- clients
  function invoke<T>(what: string, fn: (g: Gateway) => Promise<T>): Promise<T | undefined> | undefined {
    const c = world.coord;
    if (c.state !== "up" || !c.coordinator || !c.cards) return undefined; // connection refused
    const inc = c.incarnation;
    return fn({ coordinator: c.coordinator, cards: c.cards }).then(
      (out) => (alive(COORDINATOR, inc) ? out : undefined),
      (e: unknown) => {
        // The store error interceptor answers store_unavailable: the client retries, as after a dropped connection.
        if (e instanceof StoreUnavailableError) world.note(`${what}: store_unavailable`);
        else if (e instanceof AssertionError) world.violation(`gateway assertion in ${what}: ${e.message}`);
        else if (!(e instanceof SimCrash))
          world.violation(`${what} threw: ${e instanceof Error ? e.stack : String(e)}`);
        return undefined; // the client saw the connection drop
      },
    );
  }
  /** A client's call: a stopped gateway accepts the connection and answers once it is continued. */
  function gateway<T>(what: string, fn: (g: Gateway) => Promise<T>): Promise<T | undefined> | undefined {
    const thaw = sched.frozenUntil.get(COORDINATOR) ?? 0;
    if (thaw <= sched.nowMs) return invoke(what, fn);
    return new Promise((resolve) =>
      sched.at(thaw, COORDINATOR, "client-call", () => resolve(invoke(what, fn) ?? Promise.resolve(undefined))),
    );
  }
  const workload = createTransferWorkload(world, clientRng, gateway, checker);
  workload.schedule();
  const cardWorkload = createCardWorkload(world, cardClientRng, gateway, cardChecker);
  cardWorkload.schedule();

  // ------------------------------------------------------------------- run
  const STEPS_MAX = 200_000;
  const SETTLE_MS_MAX = 60_000;
  let healed = false;
  let settled = false;

  /** After one step: whether the run is over (a violation, settled, or out of time to settle). */
  function stepTaken(): boolean {
    stats.steps++;
    checker.afterStep();
    if (violations.length > 0) return true;
    if (!healed && sched.nowMs >= knobs.workloadMs) {
      healed = true;
      heal();
    }
    if (healed) {
      const inFlight = sched.count((e) => e.label === "deliver" || e.label === "restart") + pending.size;
      if (inFlight === 0 && workload.idle() && cardWorkload.idle() && cardChecker.quiescent() && checker.quiescent()) {
        settled = true;
        return true;
      }
      if (sched.nowMs > knobs.workloadMs + SETTLE_MS_MAX) return true;
    }
    return false;
  }

  /** The counts, then the final checks of a run that settled. */
  function concludeRun(): void {
    stats.virtualMs = sched.nowMs;
    for (const t of world.coord.log.txns.values()) {
      if (t.status === "COMMITTED") stats.committed++;
      else if (t.status === "ABORTED") stats.aborted++;
    }
    cardChecker.count(stats);
    if (violations.length === 0) {
      if (!settled)
        world.violation(
          `did not settle within ${SETTLE_MS_MAX} virtual ms after healing (${checker.describeUnsettled()}; ${cardChecker.describeUnsettled()})`,
        );
      else {
        checker.finalCheck(workload.acknowledged());
        cardChecker.finalCheck();
      }
    }
  }

  while (stats.steps < STEPS_MAX) {
    const ev = await sched.step();
    if (!ev) break;
    if (stepTaken()) break;
  }
  concludeRun();
  // Let orphaned continuations finish so nothing leaks into the next seed.
  await (async () => {
    for (const p of [...pending.values()]) p.onDeath();
    pending.clear();
  })();
  return { seed: options.seed, violations, history, stats, fingerprint: fingerprint() };
}
