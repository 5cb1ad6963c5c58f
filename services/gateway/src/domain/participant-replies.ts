// What a bank's answer means to the coordinator: the rules of the gateway's
// bank clients (banks.ts, bank-links.ts) without the transport. The simulator
// (test/sim/world.ts) feeds its simulated banks' answers through these same
// functions, so it cannot drift from the real client: a rule changed here
// changes both, and the simulation's checkers judge the rule itself.
import { isReason, type Reason } from "@paygate/vocab";
import type { BankFailure, Delivery, Vote } from "./ports.js";

/**
 * Reasons a bank gives that describe the request or the account, not the
 * bank's health: they are final for this request. Any other failure
 * (transport errors, refusals of our certificate, internal errors) says
 * nothing about the request and counts as the bank being unavailable.
 */
export const BANK_BUSINESS_REASONS: ReadonlySet<string> = new Set<Reason>([
  "insufficient_funds",
  "account_not_found",
  "currency_mismatch",
  "not_account_owner",
  "account_closed",
  "txn_aborted",
  "txn_committed",
  "unknown_txn",
  "invalid_amount",
  "invalid_currency",
  "invalid_account_id",
  "invalid_argument",
  "balance_limit_exceeded",
  "already_exists",
  "idempotency_key_reused",
  "user_not_found",
]);

/** A bank call that failed, as the transport reported it. */
export interface FailedCall {
  /** The reason the bank (or the transport) gave: "" when none. */
  readonly reason: string;
  readonly message: string;
  /** Our deadline passed (the call's own timeout or the caller's signal). */
  readonly timedOut: boolean;
}

/**
 * A failed call's outcome: a timeout is participant_timeout (the bank may
 * still have acted), a reason of `finalReasons` passes through, anything else
 * is participant_unavailable with the bank's reason kept in the message.
 */
export function bankFailure(f: FailedCall, finalReasons: ReadonlySet<string> = BANK_BUSINESS_REASONS): BankFailure {
  if (f.timedOut) return { ok: false, reason: "participant_timeout", message: f.message };
  if (finalReasons.has(f.reason) && isReason(f.reason)) return { ok: false, reason: f.reason, message: f.message };
  return { ok: false, reason: "participant_unavailable", message: `${f.reason}: ${f.message}` };
}

/** A Prepare that failed instead of voting is a NO: only a YES may commit. */
export function voteOfFailure(f: FailedCall): Vote {
  return { vote: "NO", reason: bankFailure(f).reason };
}

/** A Prepare the bank answered: its vote, and for a NO the reason it recorded. */
export interface PrepareAnswer {
  readonly vote: "YES" | "NO" | "UNSPECIFIED";
  readonly reason: string;
}

/**
 * The vote of an answered Prepare; undefined when the answer is no vote the
 * vocabulary knows (no vote at all, or a NO with a reason from a newer bank).
 * Callers count that as UNKNOWN_ANSWER_VOTE.
 */
export function knownVoteOf(a: PrepareAnswer): Vote | undefined {
  if (a.vote === "YES") return { vote: "YES" };
  if (a.vote === "NO" && isReason(a.reason)) return { vote: "NO", reason: a.reason };
  return undefined;
}

/** An answer that is not a known vote: a NO, since only a YES may commit. */
export const UNKNOWN_ANSWER_VOTE: Vote = { vote: "NO", reason: "internal" };

export type DecisionKind = "commit" | "abort";

// A bank that answers Commit/Abort with these contradicts the coordinator's
// log (it aborted what we committed, or the reverse): resending cannot fix
// that, so the delivery is final and raises the alarm.
const CONTRADICTIONS: Readonly<Record<DecisionKind, ReadonlySet<string>>> = {
  commit: new Set(["unknown_txn", "txn_aborted"]),
  abort: new Set(["txn_committed"]),
};

/** A Commit/Abort that failed: a contradiction is final, anything else (a refusal, a lost call) is resent. */
export function deliveryOfFailure(kind: DecisionKind, f: Pick<FailedCall, "reason" | "message">): Delivery {
  if (CONTRADICTIONS[kind].has(f.reason)) return { ok: false, reason: f.reason, transient: false };
  return { ok: false, reason: `${f.reason}: ${f.message}`, transient: true };
}
