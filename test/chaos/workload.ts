// The chaos workload: customers moving money across and within banks, much
// of it through one hot account, every transfer with an idempotency key that
// every retry reuses (as paycli does), some sent two or three times at once.
// It remembers what each client was told, which the checker holds the system to.
// Every call goes to a random gateway replica (Cluster.client), retries included.
import { Code } from "@connectrpc/connect";
import { PaymentService, TransactionStatus } from "@paygate/proto/gateway";
import { errorInfo, type ErrorInfo } from "@paygate/rpc";
import type { Cluster, SeedAccount } from "./cluster.js";
import { CUSTOMERS } from "./cluster.js";
import type { History } from "./history.js";
import type { Rng } from "../sim/rng.js";

export interface KeyRecord {
  readonly caller: string;
  readonly key: string;
  readonly from: string;
  readonly to: string;
  readonly amountMinor: bigint;
  /** Txn ids a client was told COMMITTED for this key. */
  readonly committed: Set<string>;
  /** Txn ids a client was told were declined (final). */
  readonly declined: Set<string>;
  attempts: number;
  /** Settled: a definitive answer (committed or a final decline). */
  done: boolean;
}

/** Codes that say more than their reason (the transport's, or a server's failure): counted as code/reason. */
const TRANSPORT_CODES: ReadonlySet<Code> = new Set([
  Code.Internal,
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.Canceled,
  Code.Aborted,
]);

/** How the workloads count a failed call in their stats: its reason, with the code for a transport failure. */
export function failureLabel(info: Pick<ErrorInfo, "code" | "reason">): string {
  return TRANSPORT_CODES.has(info.code) ? `${Code[info.code]}/${info.reason}` : info.reason;
}

/** Declines that are final for the key: retrying cannot change them. */
const FINAL_REASONS = new Set([
  "insufficient_funds",
  "currency_mismatch",
  "not_account_owner",
  "account_not_found",
  "account_closed",
  "txn_aborted",
  "idempotency_key_reused",
  "invalid_amount",
  "same_account",
]);

export interface WorkloadStats {
  transfers: number;
  keys: number;
  duplicateBursts: number;
  acknowledged: number;
  declined: number;
  answers: Record<string, number>;
}

const ATTEMPTS_MAX = 12;

export function createWorkload(cluster: Cluster, rng: Rng, history: History, tokens: ReadonlyMap<string, string>) {
  const keys = new Map<string, KeyRecord>();
  const stats: WorkloadStats = { transfers: 0, keys: 0, duplicateBursts: 0, acknowledged: 0, declined: 0, answers: {} };
  const clients = new Map<string, ReturnType<typeof cluster.client<typeof PaymentService>>>(
    CUSTOMERS.map((u) => [u, cluster.client(PaymentService, tokens.get(u), 8_000)]),
  );
  // Card holders' and the merchant's accounts are the card traffic's alone (checker: the merchant rises by exactly what was captured).
  const accounts = cluster.accounts.filter((a) => a.use === "transfer");
  let stopping = false;
  let n = 0;

  function newKey(): KeyRecord {
    const hot = accounts[0]!;
    const caller = rng.pick(CUSTOMERS.filter((u) => accounts.some((a) => a.owner === u)));
    const own = accounts.filter((a) => a.owner === caller);
    const from: SeedAccount = caller === "alice" && rng.chance(0.7) ? hot : rng.pick(own);
    const others = accounts.filter((a) => a.id !== from.id);
    const to = from !== hot && rng.chance(0.5) ? hot : rng.pick(others);
    const r: KeyRecord = {
      caller,
      key: `chaos-${++n}-${rng.uuid().slice(0, 8)}`,
      from: from.id,
      to: to.id,
      amountMinor: BigInt(rng.int(1, 20_000)),
      committed: new Set(),
      declined: new Set(),
      attempts: 0,
      done: false,
    };
    keys.set(`${caller}/${r.key}`, r);
    stats.keys++;
    return r;
  }

  /** One attempt; true when the key is settled. */
  async function attempt(r: KeyRecord): Promise<boolean> {
    r.attempts++;
    stats.transfers++;
    const started = Date.now();
    try {
      const res = await clients.get(r.caller)!.transfer({
        idempotencyKey: r.key,
        fromAccountId: r.from,
        toAccountId: r.to,
        amountMinor: r.amountMinor,
        currency: "USD",
        memo: "chaos",
      });
      const t = res.transaction!;
      stats.answers.ok = (stats.answers.ok ?? 0) + 1;
      if (t.status === TransactionStatus.COMMITTED) {
        r.committed.add(t.transactionId);
        history.add({
          kind: "ack",
          key: r.key,
          txnId: t.transactionId,
          detail: `${r.caller} ${r.from}->${r.to} ${r.amountMinor} COMMITTED (attempt ${r.attempts}, ${Date.now() - started} ms)`,
        });
        r.done = true;
        return true;
      }
      history.add({
        kind: "answer",
        key: r.key,
        txnId: t.transactionId,
        detail: `ok but status ${TransactionStatus[t.status]}`,
      });
      return false;
    } catch (e) {
      const info = errorInfo(e);
      const label = failureLabel(info);
      stats.answers[label] = (stats.answers[label] ?? 0) + 1;
      const txnId = info.metadata.transaction_id;
      history.add({
        kind: "answer",
        key: r.key,
        ...(txnId ? { txnId } : {}),
        detail: `${r.caller} ${r.from}->${r.to} ${r.amountMinor}: ${label} (attempt ${r.attempts})`,
      });
      if (FINAL_REASONS.has(info.reason)) {
        if (txnId) r.declined.add(txnId);
        r.done = true;
        return true;
      }
      return false; // transient or unknown outcome: the same key again later
    }
  }

  const settle = (r: KeyRecord, attemptsMax: number) =>
    sendUntilSettled(r, () => attempt(r), { attemptsMax, baseMs: 100, rng, stopping: () => stopping });

  async function worker(): Promise<void> {
    while (!stopping) {
      const r = newKey();
      if (rng.chance(0.12)) {
        // The same request two or three times at once (a double click, a retrying proxy).
        stats.duplicateBursts++;
        const copies = rng.int(2, 3);
        history.add({ kind: "burst", key: r.key, detail: `${copies} concurrent sends` });
        await Promise.all(Array.from({ length: copies }, () => attempt(r)));
      }
      await settle(r, ATTEMPTS_MAX);
      // Sometimes a settled key is sent again: it must answer the same, and move nothing.
      if (r.done && rng.chance(0.1)) await attempt(r);
    }
  }

  return {
    keys,
    stats,
    run(workers: number): Promise<void[]> {
      return Promise.all(Array.from({ length: workers }, () => worker()));
    },
    stop(): void {
      stopping = true;
    },
    /** After healing: every key without a definitive answer is retried until it has one (bounded). */
    async finish(): Promise<number> {
      stopping = false;
      const open = [...keys.values()].filter((r) => !r.done);
      await Promise.all(open.map((r) => settle(r, r.attempts + 8)));
      stopping = true;
      for (const r of keys.values()) {
        if (r.committed.size > 0) stats.acknowledged++;
        else if (r.done) stats.declined++;
      }
      return [...keys.values()].filter((r) => !r.done).length;
    },
    /**
     * After finish(): every key once more, each to a random replica. A key
     * must answer as before (the same txn, or the same decline) and move no
     * money again; what comes back lands in the same records the checker reads.
     */
    async resendAll(concurrency = 6): Promise<{ sent: number; changed: number }> {
      const all = [...keys.values()];
      let next = 0;
      let changed = 0;
      const before = new Map(all.map((r) => [r, `${[...r.committed].join(",")}|${r.done}`]));
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < all.length) {
            const r = all[next++]!;
            const done = r.done;
            await attempt(r);
            // An unsettled key that settles now is fine; a settled one must not change.
            if (done && before.get(r) !== `${[...r.committed].join(",")}|${r.done}`) changed++;
          }
        }),
      );
      return { sent: all.length, changed };
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * A client's retry loop: `once` sends the request once (the same key every
 * time) and says whether the answer is definitive; between tries it backs off
 * exponentially with jitter from `baseMs` (at most 3 s), as paycli does.
 * Bounded by attemptsMax; once the run is stopping, two tries are enough.
 */
export async function sendUntilSettled(
  rec: { attempts: number; done: boolean },
  once: () => Promise<boolean>,
  o: { attemptsMax: number; baseMs: number; rng: Rng; stopping: () => boolean },
): Promise<void> {
  while (!rec.done && rec.attempts < o.attemptsMax) {
    if (await once()) {
      rec.done = true;
      return;
    }
    if (o.stopping() && rec.attempts >= 2) return;
    await sleep(Math.min(3000, o.baseMs * 2 ** Math.min(rec.attempts, 5)) * (0.5 + o.rng.next()));
  }
}
