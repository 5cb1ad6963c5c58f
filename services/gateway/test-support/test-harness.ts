// Test support for the gateway's unit tests (no production code imports it):
// a coordinator and the card use cases wired to in-memory or SQLite ports with
// the timeouts the tests share, a logger that keeps what it was told, and a
// bank model that really holds funds, so a leftover hold shows up as the NO a
// real bank would vote.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import type { FaultPoint, Faults } from "@paygate/faults";
import { createCardHasher } from "../src/domain/cards-crypto.js";
import type { AuthRecord, CardStore, CreditReportResult, CreditReports } from "../src/domain/cards-ports.js";
import {
  createCards,
  type AuthorizeInput,
  type Cards,
  type IssueCardInput,
  type IssuedCard,
} from "../src/domain/cards.js";
import {
  createCoordinator,
  type Coordinator,
  type CoordinatorOptions,
  type EventLogger,
} from "../src/domain/coordinator.js";
import { createDecidedFeed } from "../src/domain/decided-feed.js";
import type { FakeBanks, PrepareCall } from "./fakes.js";
import type { DirectoryAccount, Result } from "../src/domain/model.js";
import type { Clock, CoordinatorLog, Delivery, Directory, Participants, Vote } from "../src/domain/ports.js";

export interface Logged {
  readonly level: "info" | "warn" | "error";
  readonly fields: Record<string, unknown>;
  readonly msg: string;
}

export type CapturingLogger = EventLogger & {
  readonly logged: Logged[];
  /** Each entry as the JSON line pino would write (bigints as strings). */
  lines(): string[];
};

export function createCapturingLogger(): CapturingLogger {
  const logged: Logged[] = [];
  const entry = (level: Logged["level"]) => (fields: object, msg: string) =>
    void logged.push({ level, fields: fields as Record<string, unknown>, msg });
  return {
    logged,
    info: entry("info"),
    warn: entry("warn"),
    error: entry("error"),
    lines: () =>
      logged.map((l) =>
        JSON.stringify({ ...l.fields, msg: l.msg }, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)),
      ),
  };
}

export function value<T>(r: Result<T>): T {
  if (!r.ok) assert.fail(`expected ok, got ${r.reason}: ${r.message}`);
  return r.value;
}

export function reasonOf(r: Result<unknown>): string {
  assert.ok(!r.ok, "expected a failure");
  return r.reason;
}

/** A well-formed txn id of `replica`, numbered. */
export const txnIdOf = (n: number, replica = "gateway-0"): string =>
  `${replica}:00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;

let txnIds = 0;
/** Numbered txn ids, unique across every test of a file. */
export const sequentialTxnIds =
  (replica = "gateway-0") =>
  () =>
    txnIdOf(++txnIds, replica);

/** Lets queued promise callbacks and setImmediate work (group commit) run. */
export const turn = () => new Promise<void>((r) => setImmediate(r));

/** Turns the event loop until `cond` holds (a hang guard, not a timing goal). */
export async function until(what: string, cond: () => boolean, turnsMax = 1_000): Promise<void> {
  for (let i = 0; i < turnsMax && !cond(); i++) await turn();
  assert.ok(cond(), `gave up waiting for ${what}`);
}

/** Calls held until the test lets them go. */
export interface Gate {
  /** A promise that resolves (with `answer()`) once opened. */
  wait<T>(answer: () => T | Promise<T>): Promise<T>;
  /** How many calls wait now. */
  readonly waiting: number;
  open(): void;
}

export function createGate(): Gate {
  const held: (() => void)[] = [];
  return {
    wait: (answer) =>
      new Promise((resolve, reject) => void held.push(() => void Promise.resolve().then(answer).then(resolve, reject))),
    get waiting() {
      return held.length;
    },
    open: () => held.splice(0).forEach((go) => go()),
  };
}

export interface TestCoordinatorOptions {
  readonly log: CoordinatorLog;
  readonly directory: Directory;
  readonly participants: Participants;
  readonly clock: Clock;
  readonly logger?: EventLogger;
  readonly replica?: string;
  readonly prepareTimeoutMs?: number;
  readonly faultsHit?: FaultPoint[];
  readonly newTxnId?: () => string;
  readonly sharedLog?: boolean;
}

export const COMMIT_TIMEOUT_MS = 5_000;
export const REDRIVE_INTERVAL_MS = 1_000;

/** The coordinator with the timeouts every unit test uses (10 s prepare, 5 s commit, redrive 1 s doubling to 8 s). */
export function createTestCoordinator(o: TestCoordinatorOptions): Coordinator {
  const options: CoordinatorOptions = {
    replica: o.replica ?? "gateway-0",
    log: o.log,
    directory: o.directory,
    participants: o.participants,
    clock: o.clock,
    faults: { hit: (p) => void o.faultsHit?.push(p) },
    feed: createDecidedFeed(),
    logger: o.logger ?? createCapturingLogger(),
    prepareTimeoutMs: o.prepareTimeoutMs ?? 10_000,
    commitTimeoutMs: COMMIT_TIMEOUT_MS,
    redriveIntervalMs: REDRIVE_INTERVAL_MS,
    redriveBackoffMaxMs: 8_000,
    ...(o.newTxnId ? { newTxnId: o.newTxnId } : {}),
    ...(o.sharedLog !== undefined ? { sharedLog: o.sharedLog } : {}),
  };
  return createCoordinator(options);
}

/** A credit bureau with a score per user; `down` makes it unreachable. */
export interface FakeBureau extends CreditReports {
  readonly scores: Map<string, number>;
  down: boolean;
  calls: number;
}

export function createFakeBureau(scores: Iterable<[string, number]>): FakeBureau {
  const bureau: FakeBureau = {
    scores: new Map(scores),
    down: false,
    calls: 0,
    async fetch(userId): Promise<CreditReportResult> {
      bureau.calls++;
      if (bureau.down) return { ok: false, reason: "bureau_unavailable", message: "down" };
      const score = bureau.scores.get(userId);
      return score === undefined
        ? { ok: false, reason: "user_not_found", message: "no report" }
        : { ok: true, report: { userId, score, delinquencies: 0 } };
    },
  };
  return bureau;
}

export const DAY_MS = 86_400_000;
export const AUTH_HOLD_TTL_MS = 7 * DAY_MS;

export interface TestCardsOptions {
  readonly store: CardStore;
  readonly coordinator: Coordinator;
  readonly directory: Directory;
  readonly bureau: CreditReports;
  readonly clock: Clock;
  readonly logger: EventLogger;
  readonly replica?: string;
  readonly isReplicaAlive?: (replica: string) => Promise<boolean>;
}

const HASHER = createCardHasher(randomBytes(32));

/** The card tests' accounts: customers at bank-a, the merchant "shop" at bank-b, "shop2" at bank-a. */
export const CARD_ACCOUNTS: readonly DirectoryAccount[] = [
  { accountId: "bank-a/1001", bank: "bank-a", ownerUserId: "alice", currency: "USD" },
  { accountId: "bank-a/1002", bank: "bank-a", ownerUserId: "bob", currency: "USD" },
  { accountId: "bank-a/1003", bank: "bank-a", ownerUserId: "alice", currency: "EUR" },
  { accountId: "bank-b/2003", bank: "bank-b", ownerUserId: "shop", currency: "USD" },
  { accountId: "bank-a/1009", bank: "bank-a", ownerUserId: "shop2", currency: "USD" },
];

/** A card on alice's USD account unless told otherwise. */
export async function issueTestCard(cards: Cards, over: Partial<IssueCardInput> = {}): Promise<IssuedCard> {
  return value(
    await cards.issueCard({
      accountId: "bank-a/1001",
      cardholderName: "Alice",
      number: "",
      expMonth: 0,
      expYear: 0,
      cvc: "",
      ...over,
    }),
  );
}

let authKeys = 0;
/** The shop's authorization of 25.00 with the card, under a fresh key. */
export function authReq(card: IssuedCard, over: Partial<AuthorizeInput> = {}): AuthorizeInput {
  return {
    idempotencyKey: `key-${++authKeys}`,
    card: { number: card.number, expMonth: card.card.expMonth, expYear: card.card.expYear, cvc: card.cvc },
    amountMinor: 2_500n,
    currency: "USD",
    merchantReference: "order-1",
    merchantAccountId: "bank-b/2003",
    ...over,
  };
}

/** Authorizes for the shop and expects an approval. */
export async function approveWith(
  cards: Cards,
  card: IssuedCard,
  over: Partial<AuthorizeInput> = {},
): Promise<AuthRecord> {
  return value((await cards.authorize("shop", authReq(card, over))).result);
}

/** The card use cases with the risk rule and hold lifetime every card test uses. */
export function createTestCards(o: TestCardsOptions): Cards {
  return createCards({
    store: o.store,
    rounds: o.coordinator,
    directory: o.directory,
    bureau: o.bureau,
    hasher: HASHER,
    clock: o.clock,
    logger: o.logger,
    risk: { scoreMin: 600, reviewAmountMinor: 50_000n, reviewScoreMin: 700, dailySpendMaxMinor: 100_000n },
    authHoldTtlMs: AUTH_HOLD_TTL_MS,
    replica: o.replica ?? "gateway-0",
    isReplicaAlive: o.isReplicaAlive ?? (async () => false),
  });
}

/**
 * One bank that really holds what it prepares (DEBIT and AUTH_HOLD legs) out
 * of `availableMinor`: a Prepare that does not fit votes NO
 * insufficient_funds, an Abort releases, a Commit spends (an AUTH_HOLD's
 * Commit keeps it, as the standing hold of the authorization). While
 * `abortsReach` is false its Aborts are lost (a partition). Other banks vote
 * with `othersVote`.
 */
export interface HoldingBank {
  /** txn id -> amount held. */
  readonly holds: Map<string, bigint>;
  availableMinor: bigint;
  abortsReach: boolean;
  /** What this bank answers after it placed the hold (e.g. a reply lost on the way: participant_timeout). */
  answerAfterHold: (call: PrepareCall) => Vote;
  othersVote: (call: PrepareCall) => Promise<Vote>;
}

export function holdFundsAt(banks: FakeBanks, bank: string, availableMinor: bigint): HoldingBank {
  const model: HoldingBank = {
    holds: new Map(),
    availableMinor,
    abortsReach: true,
    answerAfterHold: () => ({ vote: "YES" }),
    othersVote: async () => ({ vote: "YES" }),
  };
  const held = () => [...model.holds.values()].reduce((a, b) => a + b, 0n);
  const standing = new Set<string>();
  banks.onPrepare = async (call) => {
    if (call.bank !== bank) return model.othersVote(call);
    const amount = call.legs
      .filter((l) => l.direction === "DEBIT" || l.direction === "AUTH_HOLD")
      .reduce((a, l) => a + l.amountMinor, 0n);
    if (amount > model.availableMinor - held()) return { vote: "NO", reason: "insufficient_funds" };
    model.holds.set(call.txnId, amount);
    if (call.legs.some((l) => l.direction === "AUTH_HOLD")) standing.add(call.txnId);
    return model.answerAfterHold(call);
  };
  const other = { commit: banks.onCommit, abort: banks.onAbort };
  banks.onAbort = async (b, txnId): Promise<Delivery> => {
    if (b !== bank) return other.abort(b, txnId);
    if (!model.abortsReach) return { ok: false, reason: "participant_unavailable: partitioned", transient: true };
    model.holds.delete(txnId);
    return { ok: true };
  };
  banks.onCommit = async (b, txnId): Promise<Delivery> => {
    if (b !== bank) return other.commit(b, txnId);
    if (standing.has(txnId)) return { ok: true };
    model.availableMinor -= model.holds.get(txnId) ?? 0n;
    model.holds.delete(txnId);
    return { ok: true };
  };
  return model;
}

/**
 * `bank`'s prepare timed out on its side: before voting it asks GetDecision,
 * which presumes abort (the test expects ABORT). Other banks vote YES.
 */
export function askBeforeVoting(banks: FakeBanks, coordinator: Coordinator, bank: string): void {
  banks.onPrepare = async (call) => {
    if (call.bank === bank) assert.equal(value(await coordinator.getDecision(call.txnId, bank)), "ABORT");
    return { vote: "YES" };
  };
}

/** Aborts to `bank` are lost while `down` is true; every other delivery is acknowledged. */
export function loseAbortsTo(banks: FakeBanks, bank: string): { down: boolean } {
  const control = { down: true };
  banks.onAbort = async (b) =>
    b === bank && control.down ? { ok: false, reason: "participant_unavailable: down", transient: true } : { ok: true };
  return control;
}

/** Crash points that throw (instead of SIGKILL) when armed: the step after them never runs. */
export function throwingFaults(): Faults & { arm(p: FaultPoint | undefined): void } {
  let armed: FaultPoint | undefined;
  return {
    get armed() {
      return new Set(armed ? [armed] : []);
    },
    arm: (p) => void (armed = p),
    hit(p) {
      if (p === armed) throw new Error(`crash at ${p}`);
    },
  };
}
