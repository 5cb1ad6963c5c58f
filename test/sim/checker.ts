// The simulation's invariants (DESIGN.md §9), checked after every step and
// once more, completely, after the world has healed and settled.
//
// After every step:
//   - a logged decision never changes;
//   - a txn COMMITTED at a bank has a COMMIT decision; a txn ABORTED at a bank
//     (NO vote, abort, tombstone) never has one: so never committed at one
//     participant and aborted at another;
//   - no account's held or available is negative;
//   - money: the sum of all balances equals the opening total plus the money
//     "in flight" (txns whose COMMIT is applied at one bank, not yet at the
//     other), and a txn's entries only ever sum to 0 or ±amount, and only
//     when its decision is COMMIT; no entry is posted twice;
//   - at most one COMMITTED txn per (caller, idempotency key); every answer
//     for a key names the same txn, and what a client is told agrees with
//     the log.
// At the end: nothing PREPARED, every txn decided, every participant agrees
// with the coordinator, every acknowledged decision acknowledged, journals
// match the log exactly, each bank reconciles (balance = sum of entries,
// held = active holds), and the total is exactly the opening total.
import { reconcile } from "../../services/bank/src/domain/reconcile.js";
import type { Entry } from "../../services/bank/src/domain/types.js";
import { banksOf } from "../../services/gateway/src/domain/coordinator.js";
import type { Decision } from "../../services/gateway/src/domain/model.js";
import type { BankNode, World } from "./world.js";

export interface Checker {
  onBankCommit(node: BankNode, touchedTxnIds: readonly string[], entries: readonly Entry[]): void;
  onClientResult(caller: string, key: string, variant: number, txnId: string, status: string): void;
  afterStep(): void;
  quiescent(): boolean;
  describeUnsettled(): string;
  finalCheck(acknowledged: ReadonlySet<string>): void;
}

const TRANSFER_KINDS = new Set(["transfer_debit", "transfer_credit"]);

export function createChecker(world: World): Checker {
  const log = world.coord.log;
  const banks = [...world.banks.values()];
  let openingTotal = 0n;
  for (const b of banks) for (const a of b.store.accounts.values()) openingTotal += a.balanceMinor;

  const seenDecisions = new Map<string, Decision>();
  const dirty = new Set<string>();
  /** Sum of transfer entries per txn across all banks. */
  const net = new Map<string, bigint>();
  const posted = new Set<string>();
  /** caller\0key -> the COMMITTED txn. */
  const committedByKey = new Map<string, string>();
  /** caller\0key -> variant -> txn ids a client was told about. */
  const answers = new Map<string, Map<number, Set<string>>>();
  const okAnswer = new Map<string, string>();

  const bad = (text: string) => world.violation(text);
  const short = (id: string) => id.slice(0, 11);

  function checkTxn(txnId: string): void {
    const decision = log.decisions.get(txnId)?.decision;
    for (const b of banks) {
      const state = b.store.txns.get(txnId)?.txn.state;
      if (state === "COMMITTED" && decision !== "COMMIT") bad(`${short(txnId)} is COMMITTED at ${b.name} but the coordinator's decision is ${decision ?? "none"}`);
      if (state === "ABORTED" && decision === "COMMIT") bad(`${short(txnId)} is ABORTED at ${b.name} but the coordinator decided COMMIT (atomicity)`);
    }
    const n = net.get(txnId) ?? 0n;
    if (n !== 0n) {
      const txn = log.findTxn(txnId);
      if (decision !== "COMMIT") bad(`${short(txnId)} moved ${n} without a COMMIT decision`);
      else if (!txn || (n !== txn.amountMinor && n !== -txn.amountMinor)) bad(`${short(txnId)} entries sum to ${n}, not 0 or ±${txn?.amountMinor}`);
    }
  }

  function checkMoney(): void {
    let total = 0n;
    for (const b of banks) {
      for (const a of b.store.accounts.values()) {
        if (a.heldMinor < 0n) bad(`${a.accountId} held ${a.heldMinor} < 0`);
        if (a.balanceMinor - a.heldMinor < 0n) bad(`${a.accountId} available ${a.balanceMinor - a.heldMinor} < 0`);
        total += a.balanceMinor;
      }
    }
    let inFlight = 0n;
    for (const n of net.values()) inFlight += n;
    if (total !== openingTotal + inFlight) bad(`money: balances sum to ${total}, opening ${openingTotal} + in flight ${inFlight}`);
  }

  let steps = 0;
  function newDecisions(): void {
    // Nothing new: compare everything only now and then (a decision must never change).
    if (log.decisions.size === seenDecisions.size && ++steps % 32 !== 0) return;
    for (const [id, d] of log.decisions) {
      const before = seenDecisions.get(id);
      if (before === undefined) {
        seenDecisions.set(id, d.decision);
        dirty.add(id);
        if (d.decision === "COMMIT") {
          const txn = log.findTxn(id);
          if (!txn) bad(`COMMIT logged for ${short(id)}, a txn the log does not know`);
          else {
            const k = `${txn.callerUserId}\0${txn.idempotencyKey}`;
            const other = committedByKey.get(k);
            if (other && other !== id) bad(`key ${txn.callerUserId}/${txn.idempotencyKey} committed twice: ${short(other)} and ${short(id)}`);
            committedByKey.set(k, id);
          }
        }
      } else if (before !== d.decision) bad(`decision of ${short(id)} changed from ${before} to ${d.decision}`);
    }
  }

  return {
    onBankCommit(node, touched, entries) {
      for (const id of touched) dirty.add(id);
      for (const e of entries) {
        if (!TRANSFER_KINDS.has(e.kind)) continue;
        const k = `${e.txnId}|${e.accountId}|${e.kind}`;
        if (posted.has(k)) bad(`${node.name} posted ${e.kind} of ${short(e.txnId)} to ${e.accountId} twice`);
        posted.add(k);
        net.set(e.txnId, (net.get(e.txnId) ?? 0n) + e.amountMinor);
        dirty.add(e.txnId);
      }
    },
    onClientResult(caller, key, variant, txnId, status) {
      const k = `${caller}\0${key}`;
      let byVariant = answers.get(k);
      if (!byVariant) answers.set(k, (byVariant = new Map()));
      let ids = byVariant.get(variant);
      if (!ids) byVariant.set(variant, (ids = new Set()));
      ids.add(txnId);
      if (byVariant.size > 1) bad(`two different requests ran under key ${caller}/${key}`);
      const logged = log.findTxn(txnId);
      if (!logged || logged.status !== status) bad(`client told ${caller}/${key} ${status} for ${short(txnId)}, the log says ${logged?.status ?? "nothing"}`);
      if (status === "COMMITTED") {
        const first = okAnswer.get(k);
        if (first && first !== txnId) bad(`key ${caller}/${key} answered COMMITTED with two txns: ${short(first)} and ${short(txnId)}`);
        okAnswer.set(k, txnId);
      }
    },
    afterStep() {
      newDecisions();
      for (const id of dirty) checkTxn(id);
      dirty.clear();
      checkMoney();
    },
    quiescent() {
      if (world.coord.state !== "up") return false;
      if (banks.some((b) => !b.up)) return false;
      if (banks.some((b) => b.store.prepared(1).length > 0)) return false;
      return log.pendingUndecided(1).length === 0 && log.unackedDecisions(1).length === 0;
    },
    describeUnsettled() {
      const prepared = banks.flatMap((b) => b.store.prepared(5).map((r) => `${b.name}:${short(r.txnId)}`));
      const unacked = log.unackedDecisions(5).map((u) => `${short(u.txnId)}->${u.banks.join("+")}(${u.lastError})`);
      return `coordinator ${world.coord.state}; down: ${banks.filter((b) => !b.up).map((b) => b.name).join(",") || "none"}; prepared: ${prepared.join(" ") || "none"}; unacked: ${unacked.join(" ") || "none"}; pending: ${log.pendingUndecided(5).map((t) => short(t.txnId)).join(" ") || "none"}`;
    },
    finalCheck(acknowledged) {
      steps = 31;
      newDecisions();
      const all = new Set<string>([...log.txns.keys(), ...log.decisions.keys()]);
      for (const b of banks) for (const id of b.store.txns.keys()) all.add(id);
      for (const id of all) checkTxn(id);
      checkMoney();
      for (const b of banks) {
        if (b.store.prepared(1).length > 0) bad(`${b.name} still holds PREPARED txns after healing`);
        const r = reconcile(b.store.audit());
        if (!r.consistent) bad(`${b.name} does not reconcile: ${r.problems.join("; ")}`);
        for (const id of b.store.txns.keys()) if (!log.decisions.has(id)) bad(`${b.name} knows ${short(id)}, the coordinator has no decision for it`);
      }
      let total = 0n;
      for (const b of banks) for (const a of b.store.accounts.values()) total += a.balanceMinor;
      if (total !== openingTotal) bad(`money not conserved: ${total} != opening ${openingTotal}`);
      for (const txn of log.txns.values()) {
        if (txn.status === "PENDING") {
          bad(`${short(txn.txnId)} is still PENDING in the log`);
          continue;
        }
        const participants = banksOf(txn);
        for (const bankName of participants) {
          const state = world.banks.get(bankName)!.store.txns.get(txn.txnId)?.txn.state;
          if (txn.status === "COMMITTED" && state !== "COMMITTED") bad(`${short(txn.txnId)} COMMITTED in the log but ${state ?? "unknown"} at ${bankName}`);
          if (txn.status === "ABORTED" && state !== undefined && state !== "ABORTED") bad(`${short(txn.txnId)} ABORTED in the log but ${state} at ${bankName}`);
        }
        const entries = banks.flatMap((b) => b.store.entries.filter((e) => e.txnId === txn.txnId));
        if (txn.status === "COMMITTED") {
          const debit = entries.filter((e) => e.kind === "transfer_debit" && e.accountId === txn.fromAccountId && e.amountMinor === -txn.amountMinor);
          const credit = entries.filter((e) => e.kind === "transfer_credit" && e.accountId === txn.toAccountId && e.amountMinor === txn.amountMinor);
          if (debit.length !== 1 || credit.length !== 1 || entries.length !== 2) bad(`${short(txn.txnId)} COMMITTED but its journal entries are ${JSON.stringify(entries.map((e) => [e.accountId, e.kind, String(e.amountMinor)]))}`);
        } else if (entries.length > 0) bad(`${short(txn.txnId)} ABORTED but has journal entries`);
      }
      for (const id of acknowledged) if (log.findTxn(id)?.status !== "COMMITTED") bad(`a client was told ${short(id)} COMMITTED; the log says ${log.findTxn(id)?.status}`);
      if (log.unackedDecisions(1).length > 0) bad("decisions still unacknowledged after healing");
    },
  };
}
