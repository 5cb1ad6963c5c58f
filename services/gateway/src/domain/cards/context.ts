// What every card use case shares: the ports (card store, 2PC rounds,
// directory, bureau, hasher, clock, logger), the settings, and what this
// process is working on right now (the orphan sweep leaves those alone).
import { createHash, randomInt } from "node:crypto";
import { assert } from "@paygate/money";
import { fail, ok, type Result } from "../model.js";
import type { Clock, Directory, EventLogger } from "../ports.js";
import type { RiskConfig } from "../risk.js";
import type { AuthRecord, CardHasher, CardStore, CreditReports, Rounds } from "../cards-ports.js";

export interface CardsOptions {
  readonly store: CardStore;
  readonly rounds: Rounds;
  readonly directory: Directory;
  readonly bureau: CreditReports;
  readonly hasher: CardHasher;
  readonly clock: Clock;
  readonly logger: EventLogger;
  readonly risk: RiskConfig;
  /** How long an authorization (and its hold at the bank) lives before it expires. */
  readonly authHoldTtlMs: number;
  /** Test seam: crypto.randomInt otherwise. */
  readonly randomInt?: (maxExclusive: number) => number;
  /** Which capture failures are final (default CAPTURE_FINAL_REASONS); the simulator widens it to prove its checker catches the mistake. */
  readonly captureFinalReasons?: ReadonlySet<string>;
  /** This replica: it owns the authorizations it creates and the batches it settles. */
  readonly replica: string;
  /** Whether another replica's lease still runs (a batch it owns is then not ours to resume). */
  readonly isReplicaAlive: (replica: string) => Promise<boolean>;
}

export interface CardsContext extends CardsOptions {
  readonly rand: (maxExclusive: number) => number;
  /** Batches this process is working on (it owns them in the store while it does). */
  readonly runningBatches: Set<string>;
  /**
   * Authorizations between their insert and their answer in this process.
   * (Captures, voids and refunds are covered by their round: rounds.isRunning.)
   */
  readonly authorizing: Set<string>;
}

export function createCardsContext(o: CardsOptions): CardsContext {
  return {
    ...o,
    rand: o.randomInt ?? ((max: number) => randomInt(max)),
    runningBatches: new Set(),
    authorizing: new Set(),
  };
}

export interface CardOutcome<T> {
  readonly result: Result<T>;
  /** The key had been seen before: the stored outcome was returned. */
  readonly replayed: boolean;
  /** For the log line: which authorization (never card data beyond last 4). */
  readonly authCode?: string;
  readonly cardLast4?: string;
}

export const AUTH_CODE_PATTERN = /^[A-Z0-9]{6}$/;
/** Lookups of a key that another request (perhaps on another replica) is inserting at the same moment. */
export const INSERT_ATTEMPTS_MAX = 5;

/** What "the same request" means for a key: a digest of its canonical fields (bigints as decimal). */
export const fingerprintOf = (parts: readonly unknown[]) =>
  createHash("sha256")
    .update(JSON.stringify(parts, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)))
    .digest("base64url");

export function must<T>(v: T | undefined): T {
  assert(v !== undefined, "record exists");
  return v;
}

/** The merchant's own, decided authorization (others' codes and declines look the same: not found). */
export async function visibleAuth(
  ctx: CardsContext,
  merchantUserId: string,
  authCode: string,
): Promise<AuthRecord | undefined> {
  if (!AUTH_CODE_PATTERN.test(authCode)) return undefined;
  const a = await ctx.store.authByCode(authCode);
  if (!a || a.merchantUserId !== merchantUserId || a.status === "PENDING" || a.status === "DECLINED") return undefined;
  return a;
}

/** The merchant's visible authorization by its code, or authorization_not_found (void, read, refund). */
export async function merchantAuth(
  ctx: CardsContext,
  merchantUserId: string,
  authCode: string,
): Promise<Result<AuthRecord>> {
  const a = await visibleAuth(ctx, merchantUserId, authCode);
  return a ? ok(a) : fail("authorization_not_found", "no such authorization");
}
