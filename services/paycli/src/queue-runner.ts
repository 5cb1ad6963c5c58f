// The queue's use cases: submit a new payment (store it, then send it), and
// drain due entries in queue order. This file sequences the domain's state
// machine, the store and the gateway; it decides nothing on its own.
//
// Durability order, which is the whole point:
//   1. the entry, with its idempotency key, is fsync'd as "sending" (claimed);
//   2. only then does the request leave for the gateway;
//   3. the outcome is written back (compare-and-set on the claim).
// A crash between 1 and 3 leaves a claimed entry of a dead process; the next
// run reclaims it and sends the same key again, which the gateway answers at
// most once.
import { assert } from "@paygate/money";
import type { Random } from "./domain/backoff.js";
import type { PaymentRequest } from "./domain/payment.js";
import {
  applyOutcome,
  claimEntry,
  createEntry,
  isClaimable,
  type Claim,
  type QueuePolicy,
  type SendOutcome,
} from "./domain/queue.js";
import type { QueueStore, StoredEntry } from "./store/queue-store.js";
import type { FaultPoint } from "./config.js";
import type { TransferCommand, TransferResult } from "./gateway-client.js";
import type { TransactionView } from "./views.js";

export interface TransferPort {
  transfer(command: TransferCommand): Promise<TransferResult>;
}

export interface QueueRunnerDeps {
  readonly store: QueueStore;
  /** Created on first use, so listing or an empty sync needs no certificates. */
  readonly port: () => TransferPort;
  readonly policy: QueuePolicy;
  readonly now: () => number;
  readonly random: Random;
  readonly pid: number;
  readonly claimAlive: (claim: Claim) => boolean;
  /** Test-only crash points; a no-op unless PAYCLI_FAULTPOINT names the point. */
  readonly fault: (point: FaultPoint) => void;
  /** Entries looked at per pass. */
  readonly passEntriesMax: number;
}

export interface SendResult {
  /** The entry as stored after this send. */
  readonly entry: StoredEntry;
  readonly outcome: SendOutcome;
  readonly transaction: TransactionView | null;
  /** Our claim had expired and another process recorded this entry first; its record stands. */
  readonly superseded: boolean;
}

export type PassStop =
  | { readonly kind: "gateway"; readonly retryAt: number; readonly message: string }
  | { readonly kind: "needs_login"; readonly message: string }
  | { readonly kind: "interrupted" };

export interface PassReport {
  readonly results: SendResult[];
  readonly stoppedBy: PassStop | null;
  /** Entries another user queued: only their own session may send them. */
  readonly otherUsers: number;
  /** Entries another live paycli process is sending right now. */
  readonly busy: number;
  readonly notDue: number;
}

export interface QueueRunner {
  /** Stores the payment durably and sends it once. The key must be new. */
  submit(key: string, request: PaymentRequest): Promise<SendResult>;
  /** Claims and sends one existing entry now (pay --key for a queued key); undefined if it is not claimable. */
  sendNow(entry: StoredEntry, force: boolean): Promise<SendResult | undefined>;
  /** Sends due entries of `userId` in queue order; stops early when more sends could only fail the same way. */
  runPass(options: {
    userId: string;
    force: boolean;
    signal?: AbortSignal | undefined;
    onResult?: (r: SendResult) => void;
  }): Promise<PassReport>;
  /** When the next entry of `userId` becomes sendable, or null if none is pending. */
  nextDueAt(userId: string): number | null;
}

export function createQueueRunner(deps: QueueRunnerDeps): QueueRunner {
  const { store, policy } = deps;
  let port: TransferPort | undefined;

  async function sendClaimed(claimed: StoredEntry): Promise<SendResult> {
    assert(claimed.state === "sending", "send only an entry this process has claimed");
    assert(claimed.claim?.pid === deps.pid, `send only an entry claimed by this process (pid ${deps.pid})`);
    port ??= deps.port();
    const res = await port.transfer({
      key: claimed.key,
      fromAccountId: claimed.fromAccountId,
      toAccountId: claimed.toAccountId,
      amountMinor: claimed.amountMinor,
      currency: claimed.currency,
      memo: claimed.memo,
    });
    deps.fault("after_send_before_record");
    const next = applyOutcome(claimed, res.outcome, deps.now(), policy, deps.random);
    const saved = store.replace(claimed, next);
    if (saved === undefined) {
      const current = store.get(claimed.key);
      assert(current !== undefined, `queue entry ${claimed.key} vanished while being sent`);
      return { entry: current, outcome: res.outcome, transaction: res.transaction, superseded: true };
    }
    return { entry: saved, outcome: res.outcome, transaction: res.transaction, superseded: false };
  }

  function claim(e: StoredEntry, force: boolean): StoredEntry | undefined {
    const now = deps.now();
    if (!isClaimable(e, { now, force, claimAlive: deps.claimAlive })) return undefined;
    return store.replace(e, claimEntry(e, deps.pid, now, policy));
  }

  return {
    async submit(key, request) {
      const now = deps.now();
      const claimed = store.insert(claimEntry(createEntry(key, request, now), deps.pid, now, policy));
      assert(claimed !== undefined, `idempotency key ${key} is already in the queue`);
      deps.fault("after_enqueue");
      return sendClaimed(claimed);
    },

    async sendNow(entry, force) {
      const claimed = claim(entry, force);
      return claimed === undefined ? undefined : sendClaimed(claimed);
    },

    async runPass({ userId, force, signal, onResult }) {
      const results: SendResult[] = [];
      let otherUsers = 0;
      let busy = 0;
      let notDue = 0;
      let stoppedBy: PassStop | null = null;
      for (const e of store.pending(deps.passEntriesMax)) {
        if (signal?.aborted) {
          stoppedBy = { kind: "interrupted" };
          break;
        }
        if (e.userId !== userId) {
          otherUsers++;
          continue;
        }
        // Re-read: an earlier send in this pass took time, and another process may have moved this row.
        const fresh = store.get(e.key);
        if (fresh === undefined || (fresh.state !== "queued" && fresh.state !== "sending")) continue;
        const claimed = claim(fresh, force);
        if (claimed === undefined) {
          if (fresh.state === "sending") busy++;
          else notDue++;
          continue;
        }
        const r = await sendClaimed(claimed);
        results.push(r);
        onResult?.(r);
        if (r.outcome.kind === "needs_login") {
          stoppedBy = { kind: "needs_login", message: r.outcome.message };
          break;
        }
        if (r.outcome.kind === "transient" && r.outcome.scope === "gateway") {
          // The next entries would meet the same dead gateway; the failed
          // entry's backoff paces the whole queue until it answers again.
          stoppedBy = { kind: "gateway", retryAt: r.entry.nextAttemptAt ?? deps.now(), message: r.outcome.message };
          break;
        }
      }
      return { results, stoppedBy, otherUsers, busy, notDue };
    },

    nextDueAt(userId) {
      let next: number | null = null;
      for (const e of store.pending(deps.passEntriesMax)) {
        if (e.userId !== userId) continue;
        const at =
          e.state === "queued"
            ? (e.nextAttemptAt ?? deps.now())
            : e.claim !== null && deps.claimAlive(e.claim)
              ? e.claim.expiresAt
              : deps.now();
        next = next === null ? at : Math.min(next, at);
      }
      return next;
    },
  };
}
