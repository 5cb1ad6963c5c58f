// The offline queue's state machine. Every payment lives here from before its
// first send until its outcome is known:
//
//   queued ──claim──> sending ──committed──> committed      (terminal)
//     ^                  │ ────declined───> declined       (terminal, with reason)
//     │                  │ ────transient──> queued (attempts+1, next = now + full-jitter backoff)
//     │                  │                  or gave_up once attempts reach attemptsMax
//     └──────────────────┘ ────needs_login─> queued (unchanged attempts, due again at once)
//   gave_up ──retry──> queued (attempts reset; same key, so it still cannot pay twice)
//
// The idempotency key is chosen once, before the first send, and never
// changes: every replay of an entry (after a crash, a timeout, a restart)
// is the same request to the gateway, which answers it at most once.
import { assert } from "@paygate/money";
import { fullJitterDelayMs, type BackoffPolicy, type Random } from "./backoff.js";
import type { PaymentRequest } from "./payment.js";

export type EntryState = "queued" | "sending" | "committed" | "declined" | "gave_up";

export const ENTRY_STATES: readonly EntryState[] = ["queued", "sending", "committed", "declined", "gave_up"];

/** States the queue still owes the user an answer for (counted as queue depth). */
export const PENDING_STATES: readonly EntryState[] = ["queued", "sending"];

/** States kept only as recent results; pruned to the newest N. */
export const FINISHED_STATES: readonly EntryState[] = ["committed", "declined"];

/** Who is sending an entry right now; a claim past its expiry, or of a dead process, is void. */
export interface Claim {
  readonly pid: number;
  readonly expiresAt: number;
}

export interface QueueEntry extends PaymentRequest {
  readonly key: string;
  readonly state: EntryState;
  /** Sends so far whose outcome was not final (and the final one, if any). */
  readonly attempts: number;
  readonly createdAt: number;
  readonly updatedAt: number;
  /** When a queued entry is due; null once terminal. */
  readonly nextAttemptAt: number | null;
  readonly claim: Claim | null;
  readonly lastReason: string | null;
  readonly lastError: string | null;
  readonly transactionId: string | null;
}

/** What one send told us. The gateway client maps transport errors onto these. */
export type SendOutcome =
  | { readonly kind: "committed"; readonly transactionId: string }
  | {
      readonly kind: "declined";
      readonly reason: string;
      readonly message: string;
      readonly transactionId: string | null;
    }
  // "gateway": the gateway itself is unreachable or overloaded, so other entries would fail too.
  // "entry": this request is busy (in flight, a bank timed out); other entries may go through.
  | {
      readonly kind: "transient";
      readonly scope: "gateway" | "entry";
      readonly reason: string;
      readonly message: string;
    }
  | { readonly kind: "needs_login"; readonly reason: string; readonly message: string };

export interface QueuePolicy {
  readonly backoff: BackoffPolicy;
  /** Sends per entry before it gives up and waits for the user (`queue retry`). */
  readonly attemptsMax: number;
  /** How long a claim protects an entry from other paycli processes. */
  readonly claimLeaseMs: number;
}

export function isFinished(state: EntryState): boolean {
  return state === "committed" || state === "declined";
}

export function createEntry(key: string, request: PaymentRequest, now: number): QueueEntry {
  return {
    ...request,
    key,
    state: "queued",
    attempts: 0,
    createdAt: now,
    updatedAt: now,
    nextAttemptAt: now,
    claim: null,
    lastReason: null,
    lastError: null,
    transactionId: null,
  };
}

export interface ClaimCheck {
  readonly now: number;
  /** Ignore the backoff schedule (`queue flush`). */
  readonly force?: boolean;
  /** Whether the claiming process still runs; a SIGKILLed sender frees its entry at once. */
  readonly claimAlive: (claim: Claim) => boolean;
}

export function isClaimable(e: QueueEntry, check: ClaimCheck): boolean {
  if (e.state === "queued") return check.force === true || (e.nextAttemptAt ?? 0) <= check.now;
  if (e.state === "sending") {
    // A sender that died between "sending" and recording the outcome left this
    // claim behind; the request may or may not have reached the gateway, and
    // replaying it with the same key is exactly what makes that safe.
    return e.claim === null || e.claim.expiresAt <= check.now || !check.claimAlive(e.claim);
  }
  return false;
}

export function claimEntry<E extends QueueEntry>(e: E, pid: number, now: number, policy: QueuePolicy): E {
  assert(e.state === "queued" || e.state === "sending", `cannot claim an entry in state ${e.state}`);
  return { ...e, state: "sending", claim: { pid, expiresAt: now + policy.claimLeaseMs }, updatedAt: now };
}

export function applyOutcome<E extends QueueEntry>(
  e: E,
  outcome: SendOutcome,
  now: number,
  policy: QueuePolicy,
  random: Random,
): E {
  assert(e.state === "sending", `an outcome applies only to a sending entry, not ${e.state}`);
  assert(policy.attemptsMax >= 1, "attemptsMax must be at least 1");
  const base = { ...e, claim: null, updatedAt: now };
  switch (outcome.kind) {
    case "committed":
      return {
        ...base,
        state: "committed",
        attempts: e.attempts + 1,
        nextAttemptAt: null,
        transactionId: outcome.transactionId,
        lastReason: null,
        lastError: null,
      };
    case "declined":
      return {
        ...base,
        state: "declined",
        attempts: e.attempts + 1,
        nextAttemptAt: null,
        transactionId: outcome.transactionId,
        lastReason: outcome.reason,
        lastError: outcome.message,
      };
    case "transient": {
      const attempts = e.attempts + 1;
      if (attempts >= policy.attemptsMax) {
        return {
          ...base,
          state: "gave_up",
          attempts,
          nextAttemptAt: null,
          lastReason: outcome.reason,
          lastError: `gave up after ${attempts} attempts (last: ${outcome.message}); the outcome is unknown — \`paycli queue retry ${e.key}\` sends it again with the same key, which cannot pay twice`,
        };
      }
      return {
        ...base,
        state: "queued",
        attempts,
        nextAttemptAt: now + fullJitterDelayMs(attempts - 1, policy.backoff, random),
        lastReason: outcome.reason,
        lastError: outcome.message,
      };
    }
    case "needs_login":
      // Not the gateway's fault nor the payment's: keep the place in line and
      // the attempt budget; it is due as soon as the user logs in again.
      return {
        ...base,
        state: "queued",
        nextAttemptAt: now,
        lastReason: outcome.reason,
        lastError: `${outcome.message} — run \`paycli login\`, then \`paycli sync\``,
      };
  }
}

/** `queue retry`: a given-up entry goes back in line with a fresh attempt budget. */
export function retryEntry<E extends QueueEntry>(e: E, now: number): E {
  assert(e.state === "gave_up", `only a given-up entry can be retried, not ${e.state}`);
  return { ...e, state: "queued", attempts: 0, nextAttemptAt: now, updatedAt: now, claim: null };
}
