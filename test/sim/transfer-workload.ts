// The transfer clients: customers paying each other (much of it through the
// hot account), repeating requests, retrying transient failures with the same
// idempotency key, and now and then reusing a key for a different request.
import { isRetryableReason, type Result } from "@paygate/vocab";
import type { TransferRequest, TxnRecord } from "@paygate/gateway/domain";
import type { Checker } from "./checker.js";
import type { Rng } from "./rng.js";
import { USERS } from "./people.js";
import type { GatewayCall, World } from "./world.js";

export interface Workload {
  schedule(): void;
  idle(): boolean;
  /** Txn ids a client was told COMMITTED. */
  acknowledged(): ReadonlySet<string>;
}

const ATTEMPTS_MAX = 6;

export function createTransferWorkload(world: World, rng: Rng, gateway: GatewayCall, checker: Checker): Workload {
  const { sched, knobs } = world;
  const acked = new Set<string>();
  /** Keys some client also used for a different request. */
  const contested = new Set<string>();
  let outstanding = 0;
  let retriesQueued = 0;
  const call = (caller: string, req: TransferRequest) =>
    gateway("transfer", async (g): Promise<{ result: Result<TxnRecord>; txnId: string | undefined }> => {
      const out = await g.coordinator.transfer(caller, req);
      return { result: out.result, txnId: out.txnId };
    });

  function attempt(caller: string, req: TransferRequest, n: number, variant: number): void {
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
      // An unavailable store leaves the txn's fate unknown to this answer.
      if (out.txnId && !r.reason.startsWith("idempotency_key_") && r.reason !== "store_unavailable")
        checker.onClientResult(caller, req.idempotencyKey, variant, out.txnId, "ABORTED");
      if (isRetryableReason(r.reason)) return retry(caller, req, n, variant);
    });
  }

  function later(fn: () => void): void {
    retriesQueued++;
    sched.after(rng.int(5, 300), "", "client", () => {
      retriesQueued--;
      fn();
    });
  }

  function retry(caller: string, req: TransferRequest, n: number, variant: number): void {
    if (n >= ATTEMPTS_MAX) return;
    later(() => attempt(caller, req, n + 1, variant));
  }

  return {
    schedule() {
      const callers = USERS.filter((u) => world.customerAccounts.some((a) => a.ownerUserId === u));
      const hot = world.customerAccounts[0]!;
      for (let i = 0; i < knobs.ops; i++) {
        const caller = rng.pick(callers);
        const own = world.customerAccounts.filter((a) => a.ownerUserId === caller);
        // Much of the traffic leans on the hot account (alice's bank-a/1001), in and out.
        const from = caller === "alice" && rng.chance(0.6) ? hot : rng.pick(own);
        const others = world.customerAccounts.filter((a) => a.accountId !== from.accountId);
        const to = from !== hot && rng.chance(0.4) ? hot : rng.pick(others);
        const req = {
          idempotencyKey: `k${i}`,
          fromAccountId: from.accountId,
          toAccountId: to.accountId,
          amountMinor: BigInt(rng.int(1, 180)),
          currency: "USD",
          memo: "",
        };
        const at = rng.int(0, knobs.workloadMs);
        sched.at(at, "", "client", () => attempt(caller, req, 1, 0));
        if (rng.chance(knobs.dupRequestP))
          sched.at(at + rng.int(0, 40), "", "client", () => attempt(caller, req, 1, 0));
        if (rng.chance(knobs.conflictP)) {
          contested.add(`${caller}/${req.idempotencyKey}`);
          sched.at(at + rng.int(-50, 400), "", "client", () =>
            attempt(caller, { ...req, amountMinor: req.amountMinor + 1n }, 1, 1),
          );
        }
      }
    },
    idle: () => outstanding === 0 && retriesQueued === 0 && sched.count((e) => e.label === "client") === 0,
    acknowledged: () => acked,
  };
}
