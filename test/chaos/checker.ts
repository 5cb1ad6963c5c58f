// The chaos checker: reconciles every bank's journal (LedgerService with the
// gateway's certificate, straight to the bank) against the gateways' store
// (the SQLite file or the shared PostgreSQL database, read-only: see
// store-reader.ts) and against what clients were told. Run periodically
// during the faults and once after healing.
//
// Always (periodic and final):
//   - a txn with journal entries has a COMMIT decision, and its entries are
//     exactly what it logged: a transfer is "debit from, credit to, for its
//     amount"; a card capture is "capture_debit at the card's account, credit
//     at the merchant's, for the captured amount" and belongs to the
//     authorization that records it; a refund is "debit the merchant, credit
//     the card's account"; holds and releases post nothing; each entry posted
//     once; an ABORTED txn has no entries; so money in flight is only ever a
//     COMMIT applied at one bank and not yet at the other;
//   - no account's held or available is negative; every bank's own
//     reconciliation (balance = sum of entries, held = holds) holds;
//   - a logged decision never changes; at most one COMMITTED txn per
//     (caller, idempotency key); every txn a client was told COMMITTED is
//     COMMITTED in the log (durable acknowledgements), under the client's key,
//     and no key was acknowledged with two different txns, nor declined (a
//     final answer) and committed;
//   - card money per authorization: captured <= authorized, refunded <= captured.
// Finally, after healing: everything settles (nothing PREPARED, PENDING or
// unacknowledged, Reconcile from a random replica says nothing is in doubt)
// within the resolution window; per currency the balances sum exactly to the
// deposits; every COMMITTED txn and every acknowledged one is in both
// ledgers; the card checks of card-checks.ts; every customer's history
// (listings.ts).
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { LedgerService } from "@paygate/proto/bank";
import { AdminService } from "@paygate/proto/gateway";
import type { Cluster } from "./cluster.js";
import type { History } from "./history.js";
import type { LogSnapshot } from "./store-reader.js";
import type { KeyRecord } from "./workload.js";

export interface EntryRow {
  readonly bank: string;
  readonly accountId: string;
  readonly kind: string;
  readonly amountMinor: bigint;
  readonly sequence: bigint;
}

export interface CheckerFigures {
  checks: number;
  banksUnreachableInChecks: number;
  logUnreadableInChecks: number;
  entriesRead: number;
  txnsInLog: number;
  committed: number;
  aborted: number;
  pending: number;
  abortReasons: Record<string, number>;
  cardRounds: Record<string, number>;
  inFlightMaxMinor: string;
  preparedMaxAgeMs: number;
  settleMs: number;
  acknowledgedChecked: number;
}

/** Journal kinds that move money between accounts (opening and deposit bring it in). */
const MONEY_KINDS = new Set(["transfer_debit", "transfer_credit", "capture_debit"]);
const CALL_TIMEOUT_MS = 3_000;

export type Bad = (text: string, txnIds?: string[], keyNames?: string[]) => void;

export interface CheckerExtras {
  /** More checks over every snapshot (cards); `final` after healing. */
  judge?(log: LogSnapshot, entriesByTxn: ReadonlyMap<string, readonly EntryRow[]>, final: boolean, bad: Bad): void;
  /** After healing, once everything settled (cards' final state, histories). */
  finalChecks?(
    log: LogSnapshot,
    entriesByTxn: ReadonlyMap<string, readonly EntryRow[]>,
    balances: ReadonlyMap<string, bigint>,
    bad: Bad,
  ): Promise<void>;
}

export function createChecker(
  cluster: Cluster,
  history: History,
  keys: ReadonlyMap<string, KeyRecord>,
  adminToken: string,
  extras: CheckerExtras = {},
) {
  const violations: string[] = [];
  const cursor = new Map<string, bigint>();
  const entriesByTxn = new Map<string, EntryRow[]>();
  const decisions = new Map<string, string>();
  /** Each account's balance as of its last journal read (read right after its entries). */
  const balances = new Map<string, bigint>();
  const figures: CheckerFigures = {
    checks: 0,
    banksUnreachableInChecks: 0,
    logUnreadableInChecks: 0,
    entriesRead: 0,
    txnsInLog: 0,
    committed: 0,
    aborted: 0,
    pending: 0,
    abortReasons: {},
    cardRounds: {},
    inFlightMaxMinor: "0",
    preparedMaxAgeMs: 0,
    settleMs: 0,
    acknowledgedChecked: 0,
  };
  let inFlightMax = 0n;
  const reported = new Set<string>();

  const bad: Bad = (text, txnIds = [], keyNames = []) => {
    if (reported.has(text)) return;
    reported.add(text);
    violations.push(
      [
        text,
        "  minimal history:",
        ...history.minimal(txnIds, keyNames),
        ...processLines([...txnIds, ...keyNames].filter((x) => x !== "")),
      ].join("\n"),
    );
    history.add({ kind: "VIOLATE", detail: text, ...(txnIds[0] ? { txnId: txnIds[0] } : {}) });
  };

  /** The services' own log lines that name one of `ids` (the tail each process keeps), for a violation's report. */
  function processLines(ids: readonly string[], linesMax = 24): string[] {
    if (ids.length === 0) return [];
    const out: string[] = [];
    for (const p of cluster.processes) {
      for (const l of p.lines) {
        const text = JSON.stringify(l);
        if (ids.some((id) => text.includes(id))) out.push(`  [${p.name}] ${text.slice(0, 400)}`);
      }
    }
    return out.length === 0
      ? []
      : [
          "  service log lines naming them:",
          ...(out.length > linesMax
            ? [...out.slice(0, linesMax / 2), `  ... ${out.length - linesMax} lines ...`, ...out.slice(-linesMax / 2)]
            : out),
        ];
  }

  /** New journal entries of every account at one bank; false if the bank did not answer. */
  async function readJournal(bank: string): Promise<boolean> {
    const ledger = cluster.bankClient(LedgerService, bank, CALL_TIMEOUT_MS);
    try {
      for (const a of cluster.accounts.filter((x) => x.bank === bank)) {
        for (let page = 0; page < 10_000; page++) {
          const after = cursor.get(a.id) ?? 0n;
          let last = after;
          let n = 0;
          for await (const r of ledger.listEntries({ accountId: a.id, afterSequence: after, limit: 1000 })) {
            const e = r.entry!;
            n++;
            last = e.sequence;
            // Per entry, not per page: a stream cut mid-page (the bank killed or frozen) resumes after
            // the last entry read, so no entry is read twice and mistaken for a second posting.
            cursor.set(a.id, last);
            figures.entriesRead++;
            if (!MONEY_KINDS.has(e.kind)) continue;
            const rows = entriesByTxn.get(e.txnId) ?? [];
            // The same journal row (same bank, same sequence) is one posting, however often it is read.
            if (rows.some((x) => x.bank === bank && x.sequence === e.sequence)) continue;
            if (rows.some((x) => x.accountId === e.accountId && x.kind === e.kind))
              bad(`${bank} posted ${e.kind} of ${e.txnId} to ${e.accountId} twice`, [e.txnId]);
            rows.push({ bank, accountId: e.accountId, kind: e.kind, amountMinor: e.amountMinor, sequence: e.sequence });
            entriesByTxn.set(e.txnId, rows);
          }
          cursor.set(a.id, last);
          if (n < 1000) break;
        }
        const acc = (await ledger.getAccount({ accountId: a.id })).account!;
        balances.set(a.id, acc.balanceMinor);
        if (acc.heldMinor < 0n || acc.balanceMinor - acc.heldMinor < 0n)
          bad(`${a.id}: balance ${acc.balanceMinor}, held ${acc.heldMinor}: negative held or available`);
      }
      const t = await ledger.totals({});
      if (!t.ledgerConsistent) bad(`${bank} does not reconcile: ${t.problems.join("; ")}`);
      for (const p of t.prepared) {
        const age = Date.now() - (p.preparedAt ? timestampMs(p.preparedAt) : Date.now());
        figures.preparedMaxAgeMs = Math.max(figures.preparedMaxAgeMs, age);
      }
      return true;
    } catch {
      figures.banksUnreachableInChecks++;
      return false; // down, frozen or cut off right now: the next check catches up
    }
  }

  /** What clients had been told when the store's snapshot began: an answer that arrives during the read is judged next time. */
  function toldSoFar(): { r: KeyRecord; committed: string[]; declined: string[] }[] {
    return [...keys.values()].map((r) => ({ r, committed: [...r.committed], declined: [...r.declined] }));
  }

  /** Checks over what has been read so far. `final`: everything must be settled. */
  /** The log itself: no decision changes, one COMMITTED txn per key; its figures. */
  function judgeLog(log: LogSnapshot): void {
    for (const [id, d] of log.decided) {
      const before = decisions.get(id);
      if (before && before !== d.decision) bad(`the decision of ${id} changed from ${before} to ${d.decision}`, [id]);
      decisions.set(id, d.decision);
    }
    const committedByKey = new Map<string, string>();
    let committed = 0;
    let aborted = 0;
    let pending = 0;
    const reasons: Record<string, number> = {};
    for (const t of log.txns.values()) {
      if (t.status === "COMMITTED") {
        committed++;
        const k = `${t.caller}/${t.key}`;
        const other = committedByKey.get(k);
        if (other) bad(`key ${k} has two COMMITTED txns: ${other} and ${t.txnId}`, [other, t.txnId], [t.key]);
        committedByKey.set(k, t.txnId);
        if (log.decided.get(t.txnId)?.decision !== "COMMIT")
          bad(`${t.txnId} is COMMITTED without a COMMIT decision`, [t.txnId]);
      } else if (t.status === "ABORTED") {
        aborted++;
        reasons[t.reason] = (reasons[t.reason] ?? 0) + 1;
        if (log.decided.get(t.txnId)?.decision === "COMMIT")
          bad(`${t.txnId} is ABORTED but its decision is COMMIT`, [t.txnId], [t.key]);
      } else pending++;
    }
    const rounds: Record<string, number> = {};
    for (const r of log.rounds.values()) {
      const d = log.decided.get(r.txnId)?.decision ?? "PENDING";
      rounds[`${r.kind}:${d}`] = (rounds[`${r.kind}:${d}`] ?? 0) + 1;
    }
    Object.assign(figures, {
      txnsInLog: log.txns.size,
      committed,
      aborted,
      pending,
      abortReasons: reasons,
      cardRounds: rounds,
    });
  }

  /**
   * Journals against the log. The log is read after the journals, and a
   * decision is logged before any bank applies it, so every entry read has
   * its decision in this log.
   */
  function judgeJournals(log: LogSnapshot, final: boolean): void {
    let inFlight = 0n;
    for (const [txnId, rows] of entriesByTxn) {
      const t = log.txns.get(txnId);
      const round = log.rounds.get(txnId);
      const d = log.decided.get(txnId)?.decision;
      if ((!t && !round) || d !== "COMMIT") {
        bad(
          `${txnId} moved money (${rows.map((r) => `${r.kind} ${r.amountMinor} at ${r.accountId}`).join(", ")}) but the coordinator's decision is ${d ?? "none"}${t || round ? "" : " and the store knows no such txn"}`,
          [txnId],
          t ? [t.key] : [],
        );
        continue;
      }
      let net = 0n;
      for (const r of rows) net += r.amountMinor;
      inFlight += net < 0n ? -net : net;
      if (!t) continue; // a card round: extras.judge checks its legs
      for (const r of rows) {
        const ok =
          (r.kind === "transfer_debit" && r.accountId === t.from && r.amountMinor === -t.amountMinor) ||
          (r.kind === "transfer_credit" && r.accountId === t.to && r.amountMinor === t.amountMinor);
        if (!ok)
          bad(
            `${txnId}: entry ${r.kind} ${r.amountMinor} at ${r.accountId} does not match the logged transfer ${t.from}->${t.to} ${t.amountMinor}`,
            [txnId],
            [t.key],
          );
      }
      if (rows.length > 2) bad(`${txnId} has ${rows.length} transfer entries`, [txnId], [t.key]);
      if (final && (rows.length !== 2 || net !== 0n))
        bad(
          `${txnId} is COMMITTED but applied at only one bank after healing: ${rows.map((r) => `${r.kind}@${r.bank}`).join(", ")}`,
          [txnId],
          [t.key],
        );
    }
    if (inFlight > inFlightMax) inFlightMax = inFlight;
    figures.inFlightMaxMinor = String(inFlightMax);
  }

  /** What clients were told, against the log. */
  function judgeTold(log: LogSnapshot, told: ReturnType<typeof toldSoFar>, final: boolean): void {
    let acked = 0;
    for (const { r, committed: told1, declined: told2 } of told) {
      if (told1.length > 1)
        bad(
          `key ${r.caller}/${r.key} was acknowledged COMMITTED with ${told1.length} different txns: ${told1.join(", ")}`,
          told1,
          [r.key],
        );
      if (told1.length > 0 && told2.length > 0)
        bad(
          `key ${r.caller}/${r.key} was declined for good (${told2.join(", ")}) and acknowledged COMMITTED (${told1.join(", ")})`,
          [...told1, ...told2],
          [r.key],
        );
      for (const id of told1) {
        acked++;
        const t = log.txns.get(id);
        if (!t || t.status !== "COMMITTED")
          bad(`a client was told ${id} COMMITTED; the log says ${t?.status ?? "nothing"}`, [id], [r.key]);
        else if (t.caller !== r.caller || t.key !== r.key)
          bad(`${id} acknowledged for ${r.caller}/${r.key} belongs to ${t.caller}/${t.key}`, [id], [r.key]);
        else if (final && (entriesByTxn.get(id)?.length ?? 0) !== 2)
          bad(`acknowledged COMMITTED ${id} is not in both ledgers`, [id], [r.key]);
      }
      for (const id of told2) {
        const t = log.txns.get(id);
        if (t && t.status === "COMMITTED")
          bad(`a client was told ${id} was declined; the log says COMMITTED`, [id], [r.key]);
      }
    }
    figures.acknowledgedChecked = acked;
  }

  function judge(log: LogSnapshot, told: ReturnType<typeof toldSoFar>, final: boolean): void {
    judgeLog(log);
    judgeJournals(log, final);
    judgeTold(log, told, final);
    if (final) {
      for (const t of log.txns.values()) {
        if (t.status === "COMMITTED" && (entriesByTxn.get(t.txnId)?.length ?? 0) !== 2)
          bad(`${t.txnId} is COMMITTED in the log but not in both ledgers`, [t.txnId], [t.key]);
      }
    }
    extras.judge?.(log, entriesByTxn, final, bad);
  }

  async function check(final: boolean): Promise<{ allBanks: boolean; log: LogSnapshot | undefined }> {
    figures.checks++;
    let allBanks = true;
    for (const bank of cluster.banks.keys()) allBanks = (await readJournal(bank)) && allBanks;
    let log: LogSnapshot | undefined;
    const told = toldSoFar();
    try {
      log = await cluster.reader.read();
    } catch (e) {
      figures.logUnreadableInChecks++;
      if (final)
        bad(`the gateways' store could not be read after healing: ${e instanceof Error ? e.message : String(e)}`);
      return { allBanks, log: undefined }; // PostgreSQL killed or frozen right now: the next check judges
    }
    judge(log, told, final);
    return { allBanks, log };
  }

  /** Every bank's PREPARED rounds and totals by currency; `reachable` false when a bank did not answer. */
  async function bankTotals(): Promise<{
    prepared: string[];
    reachable: boolean;
    totals: Map<string, { balance: bigint; deposited: bigint }>;
  }> {
    const prepared: string[] = [];
    let reachable = true;
    const totals = new Map<string, { balance: bigint; deposited: bigint }>();
    for (const bank of cluster.banks.keys()) {
      try {
        const t = await cluster.bankClient(LedgerService, bank, CALL_TIMEOUT_MS).totals({});
        for (const p of t.prepared) prepared.push(`${bank}:${p.txnId}`);
        for (const c of t.currencies) {
          const x = totals.get(c.currency) ?? { balance: 0n, deposited: 0n };
          totals.set(c.currency, {
            balance: x.balance + c.balanceMinor,
            deposited: x.deposited + c.depositedMinor,
          });
        }
      } catch {
        reachable = false;
      }
    }
    return { prepared, reachable, totals };
  }

  async function reconcile(): Promise<string> {
    try {
      const r = await cluster.client(AdminService, adminToken, 10_000).reconcile({});
      if (r.conserved && r.inDoubt.length === 0) return "";
      return `Reconcile: conserved ${r.conserved}, in doubt ${r.inDoubt.length} (${r.inDoubt
        .slice(0, 5)
        .map((d) => `${d.transactionId}@${d.where}:${d.state}`)
        .join(
          " ",
        )}), banks ${r.banks.map((b) => `${b.bank}:${b.reachable ? "up" : "DOWN"}${b.ledgerConsistent ? "" : ":inconsistent"}`).join(" ")}`;
    } catch (e) {
      return `Reconcile failed: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`;
    }
  }

  return {
    violations,
    figures,
    bad,
    /** One periodic check (during faults). */
    async periodic(): Promise<void> {
      await check(false);
    },
    /**
     * After healing: waits (bounded by windowMs) until nothing is PREPARED,
     * PENDING or unacknowledged and Reconcile agrees, then checks everything exactly.
     */
    async final(windowMs: number): Promise<void> {
      const started = Date.now();
      let left = "";
      for (;;) {
        const banks = await bankTotals();
        const { prepared, totals } = banks;
        let reachable = banks.reachable;
        let pending = -1;
        let unacked: readonly string[] = ["(store unreadable)"];
        let pendingRounds = 0;
        let busyCards = 0;
        try {
          const log = await cluster.reader.read();
          pending = [...log.txns.values()].filter((t) => t.status === "PENDING").length;
          pendingRounds = [...log.rounds.values()].filter((r) => !log.decided.has(r.txnId)).length;
          // Card work still moving (a capture or void in flight, a batch being settled): judged once it stops.
          busyCards =
            [...log.auths.values()].filter((a) => a.op !== null).length +
            [...log.batches.values()].filter((b) => b.status === "PENDING" && b.ownerReplica !== "").length;
          unacked = log.unacked;
        } catch {
          reachable = false;
        }
        const reconciled =
          reachable &&
          prepared.length === 0 &&
          pending === 0 &&
          pendingRounds === 0 &&
          unacked.length === 0 &&
          busyCards === 0
            ? await reconcile()
            : "(not asked yet)";
        left = `${prepared.length} PREPARED (${prepared.slice(0, 5).join(" ")}), ${pending} PENDING, ${pendingRounds} undecided card rounds, ${busyCards} card operations or batches in progress, ${unacked.length} unacknowledged decisions (${unacked.slice(0, 5).join(" ")})${reachable ? "" : ", a bank or the store unreachable"}; ${reconciled || "Reconcile: nothing in doubt"}`;
        if (reconciled === "") {
          figures.settleMs = Date.now() - started;
          for (const [currency, x] of totals)
            if (x.balance !== x.deposited)
              bad(`money not conserved in ${currency}: balances ${x.balance}, deposits ${x.deposited}`);
          const opening = cluster.accounts.reduce((s, a) => s + a.openingMinor, 0n);
          const usd = totals.get("USD");
          if (!usd || usd.balance !== opening)
            bad(`USD balances ${usd?.balance} differ from the opening total ${opening} (no deposits were made)`);
          break;
        }
        if (Date.now() - started > windowMs) {
          bad(
            `not settled ${windowMs} ms after healing (prepare timeout + resolution window): ${left}`,
            prepared.map((p) => p.split(":").slice(1).join(":")),
          );
          break;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
      const { allBanks, log } = await check(true);
      if (!allBanks) bad("a bank did not answer the final check");
      if (log) await extras.finalChecks?.(log, entriesByTxn, balances, bad);
    },
  };
}
