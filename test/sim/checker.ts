// The simulation's invariants (DESIGN.md §9), checked after every step and
// once more, completely, after the world has healed and settled. This file
// holds the banks' and the transfers' side; card-checker.ts the cards'.
//
// After every step:
//   - a logged decision never changes;
//   - a txn COMMITTED at a bank has a COMMIT decision; a txn ABORTED at a bank
//     (NO vote, abort, tombstone) never has one: so never committed at one
//     participant and aborted at another;
//   - no account's held or available is negative, and each account's held is
//     exactly its ACTIVE standing holds plus the debit and auth_hold legs of
//     its PREPARED txns (a hold released twice, or never, shows here);
//   - a standing hold goes from ACTIVE to CAPTURED, RELEASED or EXPIRED once
//     and never changes again (never captured after a release or expiry), and
//     a capture takes at most the hold;
//   - money: the sum of all balances equals the opening total plus the money
//     "in flight" (txns whose COMMIT is applied at one bank, not yet at the
//     other), and a txn's entries (transfers, captures, refunds) only ever sum
//     to 0 or ±amount, and only when its decision is COMMIT; no entry is
//     posted twice;
//   - at most one COMMITTED txn per (caller, idempotency key); every answer
//     for a key names the same txn, and what a client is told agrees with
//     the log.
// At the end: nothing PREPARED, every txn decided, every participant agrees
// with the coordinator, every acknowledged decision acknowledged, journals
// match the log exactly, each bank reconciles (balance = sum of entries,
// held = active holds), the total is exactly the opening total, and no
// request was declined for good by its own earlier attempt's leftover hold.
import { reconcile, type Entry, type Hold, type Leg, type PrepareOutcome } from "@paygate/bank/domain";
import { banksOf, type Decision } from "@paygate/gateway/domain";
import type { BankCommit } from "./sim-store.js";
import type { BankNode, World } from "./world.js";

/** What the card side tells the bank side about card rounds. */
export interface RoundRequests {
  /** The request (caller and idempotency key) a card round belongs to, if any. */
  requestOf(txnId: string): string | undefined;
  /** True if the round's failure became its request's final answer (a stored decline). */
  endedFinal(txnId: string): boolean;
}

export interface Checker {
  onBankCommit(node: BankNode, commit: BankCommit): void;
  /** A bank answered a Prepare (undefined: malformed, nothing recorded). */
  onVote(
    node: BankNode,
    txnId: string,
    legs: readonly { readonly accountId: string; readonly direction: string }[],
    outcome: PrepareOutcome | undefined,
  ): void;
  /** The legs the coordinator asked a bank to prepare (a card round's amount comes from them). */
  onPrepareSent(txnId: string, legs: readonly { readonly direction: string; readonly amountMinor: bigint }[]): void;
  onClientResult(caller: string, key: string, variant: number, txnId: string, status: string): void;
  afterStep(): void;
  quiescent(): boolean;
  describeUnsettled(): string;
  finalCheck(acknowledged: ReadonlySet<string>): void;
}

/** Entry kinds that move money between accounts (opening balances and deposits bring it in). */
const MOVING_KINDS = new Set(["transfer_debit", "transfer_credit", "capture_debit"]);
const RESERVING = new Set(["debit", "auth_hold"]);

export function createChecker(world: World, cardRounds: RoundRequests): Checker {
  const log = world.coord.log;
  const banks = [...world.banks.values()];
  let openingTotal = 0n;
  for (const b of banks) for (const a of b.store.accounts.values()) openingTotal += a.balanceMinor;

  const seenDecisions = new Map<string, Decision>();
  const dirty = new Set<string>();
  /** Sum of money-moving entries per txn across all banks, and of all of them. */
  const net = new Map<string, bigint>();
  let inFlight = 0n;
  const posted = new Set<string>();
  /** A card round's amount (every money-moving leg of a round carries the same one). */
  const roundAmount = new Map<string, bigint>();
  /** Per account: its ACTIVE holds plus its PREPARED reserving legs, from what the banks changed. */
  const expectedHeld = new Map<string, bigint>();
  for (const b of banks) for (const a of b.store.accounts.values()) expectedHeld.set(a.accountId, a.heldMinor);
  /** Accounts whose held a bank commit changed (reused: one commit at a time). */
  const touched = new Set<string>();
  /** A NO insufficient_funds vote -> the PREPARED txn of the same request that held the money. */
  const selfBlocked = new Map<string, string>();
  /** caller\0key -> the COMMITTED txn. */
  const committedByKey = new Map<string, string>();
  /** caller\0key -> the latest transfer txn (the key's current answer). */
  const latestByKey = new Map<string, string>();
  /** caller\0key -> variant -> txn ids a client was told about. */
  const answers = new Map<string, Map<number, Set<string>>>();
  const okAnswer = new Map<string, string>();

  const bad = (text: string) => world.violation(text);
  const short = (id: string) => id.slice(0, 11);

  /** Transfers and registered rounds with no decision yet (the log's own state, read synchronously). */
  function undecided(limit: number): string[] {
    const out: string[] = [];
    for (const t of log.txns.values())
      if (out.length < limit && t.status === "PENDING" && !log.decisions.has(t.txnId)) out.push(t.txnId);
    for (const id of log.rounds.keys()) if (out.length < limit && !log.decisions.has(id)) out.push(id);
    return out;
  }

  /** Decisions some participant has not acknowledged. */
  function unacked(limit: number): { txnId: string; banks: string[]; lastError: string }[] {
    const out: { txnId: string; banks: string[]; lastError: string }[] = [];
    for (const [txnId, rows] of log.acks) {
      if (out.length >= limit) break;
      const waiting = [...rows].filter(([, r]) => !r.acked).map(([b]) => b);
      if (waiting.length > 0)
        out.push({ txnId, banks: waiting, lastError: [...rows.values()].map((r) => r.lastError).find(Boolean) ?? "" });
    }
    return out;
  }

  const requestOf = (txnId: string): string | undefined => {
    const t = log.txns.get(txnId);
    return t ? `${t.callerUserId}\0${t.idempotencyKey}` : cardRounds.requestOf(txnId);
  };

  function checkTxn(txnId: string): void {
    const decision = log.decisions.get(txnId)?.decision;
    for (const b of banks) {
      const state = b.store.txns.get(txnId)?.txn.state;
      if (state === "COMMITTED" && decision !== "COMMIT")
        bad(`${short(txnId)} is COMMITTED at ${b.name} but the coordinator's decision is ${decision ?? "none"}`);
      if (state === "ABORTED" && decision === "COMMIT")
        bad(`${short(txnId)} is ABORTED at ${b.name} but the coordinator decided COMMIT (atomicity)`);
    }
    const n = net.get(txnId) ?? 0n;
    if (n !== 0n) {
      const amount = log.txns.get(txnId)?.amountMinor ?? roundAmount.get(txnId);
      if (decision !== "COMMIT") bad(`${short(txnId)} moved ${n} without a COMMIT decision`);
      else if (amount === undefined || (n !== amount && n !== -amount))
        bad(`${short(txnId)} entries sum to ${n}, not 0 or ±${amount} (money created or destroyed)`);
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
    if (total !== openingTotal + inFlight)
      bad(`money: balances sum to ${total}, opening ${openingTotal} + in flight ${inFlight}`);
  }

  function checkHold(node: BankNode, before: Hold | undefined, after: Hold): void {
    const code = world.coord.cardStore.auths.get(after.holdId)?.authCode ?? "?";
    const what = `${node.name}: the hold of ${code}`;
    if (!before) {
      if (after.state !== "ACTIVE" || after.pinnedTxnId !== "")
        bad(`${what} was placed ${after.state}${after.pinnedTxnId ? " and pinned" : ""}`);
      return;
    }
    if (before.state !== "ACTIVE")
      return bad(`${what} was ${before.state} and became ${after.state} (released or captured twice)`);
    if (after.amountMinor !== before.amountMinor || after.accountId !== before.accountId)
      bad(`${what} changed its amount or account`);
    if (after.state === "CAPTURED" && (after.capturedMinor <= 0n || after.capturedMinor > after.amountMinor))
      bad(`${what} captured ${after.capturedMinor} of a hold of ${after.amountMinor}`);
    if (after.state === "ACTIVE" && (before.pinnedTxnId === "") === (after.pinnedTxnId === ""))
      bad(`${what} was re-pinned without being unpinned (${short(before.pinnedTxnId)} -> ${short(after.pinnedTxnId)})`);
  }

  function addHeld(accountId: string, deltaMinor: bigint, touched: Set<string>): void {
    expectedHeld.set(accountId, (expectedHeld.get(accountId) ?? 0n) + deltaMinor);
    touched.add(accountId);
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
        if (d.decision !== "COMMIT") continue;
        const txn = log.txns.get(id);
        if (!txn) {
          if (!log.rounds.has(id)) bad(`COMMIT logged for ${short(id)}, a txn the log does not know`);
          continue;
        }
        const k = `${txn.callerUserId}\0${txn.idempotencyKey}`;
        const other = committedByKey.get(k);
        if (other && other !== id)
          bad(`key ${txn.callerUserId}/${txn.idempotencyKey} committed twice: ${short(other)} and ${short(id)}`);
        committedByKey.set(k, id);
      } else if (before !== d.decision) bad(`decision of ${short(id)} changed from ${before} to ${d.decision}`);
    }
  }

  /** The transfer's failure is its key's last word: the key's latest txn, aborted for a business reason. */
  function transferEndedFinal(txnId: string): boolean {
    const t = log.txns.get(txnId);
    if (!t || t.status !== "ABORTED" || t.declineReason !== "insufficient_funds") return false;
    return latestByKey.get(`${t.callerUserId}\0${t.idempotencyKey}`) === txnId;
  }

  return {
    onBankCommit(node, commit) {
      for (const e of commit.entries) {
        if (!MOVING_KINDS.has(e.kind)) continue;
        const k = `${e.txnId}|${e.accountId}|${e.kind}`;
        if (posted.has(k)) bad(`${node.name} posted ${e.kind} of ${short(e.txnId)} to ${e.accountId} twice`);
        posted.add(k);
        net.set(e.txnId, (net.get(e.txnId) ?? 0n) + e.amountMinor);
        inFlight += e.amountMinor;
        dirty.add(e.txnId);
      }
      touched.clear();
      for (const t of commit.txns) {
        dirty.add(t.txnId);
        const was = t.before === "PREPARED";
        const is = t.after === "PREPARED";
        if (was === is) continue;
        for (const l of t.legs)
          if (RESERVING.has(l.direction)) addHeld(l.accountId, is ? l.amountMinor : -l.amountMinor, touched);
      }
      for (const { before, after } of commit.holds) {
        checkHold(node, before, after);
        const was = before?.state === "ACTIVE";
        const is = after.state === "ACTIVE";
        if (was !== is) addHeld(after.accountId, is ? after.amountMinor : -after.amountMinor, touched);
      }
      for (const id of touched) {
        const held = node.store.accounts.get(id)?.heldMinor;
        if (held !== expectedHeld.get(id))
          bad(
            `${node.name}: ${id} holds ${held}, but its active holds and prepared debits come to ${expectedHeld.get(id)}`,
          );
      }
    },
    onVote(node, txnId, legs, outcome) {
      if (outcome?.vote !== "no" || outcome.reason !== "insufficient_funds" || outcome.redelivered) return;
      const request = requestOf(txnId);
      if (request === undefined) return;
      const accounts = new Set(legs.filter((l) => RESERVING.has(l.direction)).map((l) => l.accountId));
      for (const [id, row] of node.store.txns) {
        if (id === txnId || row.txn.state !== "PREPARED" || requestOf(id) !== request) continue;
        if (row.legs.some((l: Leg) => RESERVING.has(l.direction) && accounts.has(l.accountId))) {
          selfBlocked.set(txnId, id);
          world.note(
            `${node.name}: ${short(txnId)} meets the hold of ${short(id)}, an earlier attempt of the same request`,
          );
        }
      }
    },
    onPrepareSent(txnId, legs) {
      if (log.txns.has(txnId) || roundAmount.has(txnId)) return;
      const moving = legs.find((l) => l.direction === "CAPTURE" || l.direction === "DEBIT" || l.direction === "CREDIT");
      if (moving) roundAmount.set(txnId, moving.amountMinor);
    },
    onClientResult(caller, key, variant, txnId, status) {
      const k = `${caller}\0${key}`;
      let byVariant = answers.get(k);
      if (!byVariant) answers.set(k, (byVariant = new Map()));
      let ids = byVariant.get(variant);
      if (!ids) byVariant.set(variant, (ids = new Set()));
      ids.add(txnId);
      if (byVariant.size > 1) bad(`two different requests ran under key ${caller}/${key}`);
      const logged = log.txns.get(txnId);
      if (!logged || logged.status !== status)
        bad(`client told ${caller}/${key} ${status} for ${short(txnId)}, the log says ${logged?.status ?? "nothing"}`);
      if (status === "COMMITTED") {
        const first = okAnswer.get(k);
        if (first && first !== txnId)
          bad(`key ${caller}/${key} answered COMMITTED with two txns: ${short(first)} and ${short(txnId)}`);
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
      if (banks.some((b) => !b.up || b.store.preparedCount() > 0)) return false;
      // Asked after every step once healed: plain loops, no arrays.
      for (const t of log.txns.values()) if (t.status === "PENDING" && !log.decisions.has(t.txnId)) return false;
      for (const id of log.rounds.keys()) if (!log.decisions.has(id)) return false;
      for (const rows of log.acks.values()) for (const r of rows.values()) if (!r.acked) return false;
      return true;
    },
    describeUnsettled() {
      const prepared = banks.flatMap((b) => b.store.prepared(5).map((r) => `${b.name}:${short(r.txnId)}`));
      const waiting = unacked(5).map((u) => `${short(u.txnId)}->${u.banks.join("+")}(${u.lastError})`);
      return `coordinator ${world.coord.state}; down: ${
        banks
          .filter((b) => !b.up)
          .map((b) => b.name)
          .join(",") || "none"
      }; prepared: ${prepared.join(" ") || "none"}; unacked: ${waiting.join(" ") || "none"}; pending: ${undecided(5).map(short).join(" ") || "none"}`;
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
        for (const id of b.store.txns.keys())
          if (!log.decisions.has(id)) bad(`${b.name} knows ${short(id)}, the coordinator has no decision for it`);
      }
      let total = 0n;
      for (const b of banks) for (const a of b.store.accounts.values()) total += a.balanceMinor;
      if (total !== openingTotal) bad(`money not conserved: ${total} != opening ${openingTotal}`);
      for (const txn of [...log.txns.values()].sort((a, b) => a.createdAtMs - b.createdAtMs))
        latestByKey.set(`${txn.callerUserId}\0${txn.idempotencyKey}`, txn.txnId);
      for (const txn of log.txns.values()) {
        if (txn.status === "PENDING") {
          bad(`${short(txn.txnId)} is still PENDING in the log`);
          continue;
        }
        for (const bankName of banksOf(txn)) {
          const state = world.banks.get(bankName)!.store.txns.get(txn.txnId)?.txn.state;
          if (txn.status === "COMMITTED" && state !== "COMMITTED")
            bad(`${short(txn.txnId)} COMMITTED in the log but ${state ?? "unknown"} at ${bankName}`);
          if (txn.status === "ABORTED" && state !== undefined && state !== "ABORTED")
            bad(`${short(txn.txnId)} ABORTED in the log but ${state} at ${bankName}`);
        }
        const entries = entriesOf(world, txn.txnId);
        if (txn.status === "COMMITTED") {
          const debit = entries.filter(
            (e) =>
              e.kind === "transfer_debit" && e.accountId === txn.fromAccountId && e.amountMinor === -txn.amountMinor,
          );
          const credit = entries.filter(
            (e) => e.kind === "transfer_credit" && e.accountId === txn.toAccountId && e.amountMinor === txn.amountMinor,
          );
          if (debit.length !== 1 || credit.length !== 1 || entries.length !== 2)
            bad(
              `${short(txn.txnId)} COMMITTED but its journal entries are ${JSON.stringify(entries.map((e) => [e.accountId, e.kind, String(e.amountMinor)]))}`,
            );
        } else if (entries.length > 0) bad(`${short(txn.txnId)} ABORTED but has journal entries`);
      }
      for (const [txnId, blocker] of selfBlocked) {
        if (transferEndedFinal(txnId) || cardRounds.endedFinal(txnId)) {
          bad(
            `${short(txnId)} was declined insufficient_funds for good because ${short(blocker)}, an earlier attempt of the same request, still held the money (a transient failure became final)`,
          );
        }
      }
      for (const id of acknowledged)
        if (log.txns.get(id)?.status !== "COMMITTED")
          bad(`a client was told ${short(id)} COMMITTED; the log says ${log.txns.get(id)?.status}`);
      if (unacked(1).length > 0) bad("decisions still unacknowledged after healing");
    },
  };
}

/** Every journal entry a txn posted, at every bank. */
export function entriesOf(world: World, txnId: string): Entry[] {
  return [...world.banks.values()].flatMap((b) => b.store.entries.filter((e) => e.txnId === txnId));
}
