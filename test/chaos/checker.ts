// The chaos checker: reconciles every bank's journal (LedgerService with the
// gateway's certificate, straight to the bank) against the gateway's
// coordinator log (its SQLite file, read-only) and against what clients were
// told. Run periodically during the faults and once after healing.
//
// Always (periodic and final):
//   - a txn with journal entries has a COMMIT decision, and its entries are
//     exactly "debit from, credit to, for its amount", each posted once; an
//     ABORTED txn has no entries; so money in flight is only ever a COMMIT
//     applied at one bank and not yet at the other;
//   - no account's held or available is negative; every bank's own
//     reconciliation (balance = sum of entries, held = holds) holds;
//   - a logged decision never changes; at most one COMMITTED txn per
//     (caller, idempotency key); every txn a client was told COMMITTED is
//     COMMITTED in the log (durable acknowledgements), under the client's key,
//     and no key was acknowledged with two different txns.
// Finally, after healing: everything settles (nothing PREPARED, PENDING or
// unacknowledged) within the resolution window; per currency the balances
// sum exactly to the deposits; every COMMITTED txn and every acknowledged one
// is in both ledgers.
import Database from "better-sqlite3";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { LedgerService } from "@paygate/proto/bank";
import type { Cluster } from "./cluster.js";
import type { History } from "./history.js";
import type { KeyRecord } from "./workload.js";

interface LogTxn {
  txnId: string;
  caller: string;
  key: string;
  from: string;
  to: string;
  fromBank: string;
  toBank: string;
  amountMinor: bigint;
  status: string;
  reason: string;
}

interface EntryRow {
  readonly bank: string;
  readonly accountId: string;
  readonly kind: string;
  readonly amountMinor: bigint;
  readonly sequence: bigint;
}

export interface CheckerFigures {
  checks: number;
  banksUnreachableInChecks: number;
  entriesRead: number;
  txnsInLog: number;
  committed: number;
  aborted: number;
  pending: number;
  abortReasons: Record<string, number>;
  inFlightMaxMinor: string;
  preparedMaxAgeMs: number;
  settleMs: number;
  acknowledgedChecked: number;
}

const TRANSFER_KINDS = new Set(["transfer_debit", "transfer_credit"]);
const CALL_TIMEOUT_MS = 3_000;

export function createChecker(cluster: Cluster, history: History, keys: ReadonlyMap<string, KeyRecord>) {
  const violations: string[] = [];
  const cursor = new Map<string, bigint>();
  const entriesByTxn = new Map<string, EntryRow[]>();
  const decisions = new Map<string, string>();
  const figures: CheckerFigures = { checks: 0, banksUnreachableInChecks: 0, entriesRead: 0, txnsInLog: 0, committed: 0, aborted: 0, pending: 0, abortReasons: {}, inFlightMaxMinor: "0", preparedMaxAgeMs: 0, settleMs: 0, acknowledgedChecked: 0 };
  let inFlightMax = 0n;
  const reported = new Set<string>();

  function bad(text: string, txnIds: string[] = [], keyNames: string[] = []): void {
    if (reported.has(text)) return;
    reported.add(text);
    violations.push([text, "  minimal history:", ...history.minimal(txnIds, keyNames)].join("\n"));
    history.add({ kind: "VIOLATE", detail: text, ...(txnIds[0] ? { txnId: txnIds[0] } : {}) });
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
            if (!TRANSFER_KINDS.has(e.kind)) continue;
            const rows = entriesByTxn.get(e.txnId) ?? [];
            // The same journal row (same bank, same sequence) is one posting, however often it is read.
            if (rows.some((x) => x.bank === bank && x.sequence === e.sequence)) continue;
            if (rows.some((x) => x.accountId === e.accountId && x.kind === e.kind)) bad(`${bank} posted ${e.kind} of ${e.txnId} to ${e.accountId} twice`, [e.txnId]);
            rows.push({ bank, accountId: e.accountId, kind: e.kind, amountMinor: e.amountMinor, sequence: e.sequence });
            entriesByTxn.set(e.txnId, rows);
          }
          cursor.set(a.id, last);
          if (n < 1000) break;
        }
        const acc = (await ledger.getAccount({ accountId: a.id })).account!;
        if (acc.heldMinor < 0n || acc.balanceMinor - acc.heldMinor < 0n) bad(`${a.id}: balance ${acc.balanceMinor}, held ${acc.heldMinor}: negative held or available`);
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

  function readLog(): { txns: Map<string, LogTxn>; decided: Map<string, string>; unacked: number } {
    const db = new Database(cluster.gatewayDbFile, { readonly: true, fileMustExist: true });
    try {
      db.pragma("busy_timeout = 5000");
      db.defaultSafeIntegers(true);
      const read = db.transaction(() => {
        const txns = new Map<string, LogTxn>();
        for (const r of db.prepare("SELECT txn_id, caller_user_id, idempotency_key, from_account_id, to_account_id, from_bank, to_bank, amount_minor, status, decline_reason FROM txns").all() as Record<string, unknown>[]) {
          txns.set(String(r.txn_id), {
            txnId: String(r.txn_id),
            caller: String(r.caller_user_id),
            key: String(r.idempotency_key),
            from: String(r.from_account_id),
            to: String(r.to_account_id),
            fromBank: String(r.from_bank),
            toBank: String(r.to_bank),
            amountMinor: r.amount_minor as bigint,
            status: String(r.status),
            reason: String(r.decline_reason),
          });
        }
        const decided = new Map<string, string>();
        for (const r of db.prepare("SELECT txn_id, decision FROM decisions").all() as Record<string, unknown>[]) decided.set(String(r.txn_id), String(r.decision));
        const unacked = Number((db.prepare("SELECT count(*) AS n FROM decision_acks WHERE acked_at IS NULL").get() as { n: bigint }).n);
        return { txns, decided, unacked };
      });
      return read();
    } finally {
      db.close();
    }
  }

  /** Checks over what has been read so far. `final`: everything must be settled. */
  function judge(log: ReturnType<typeof readLog>, final: boolean): void {
    for (const [id, d] of log.decided) {
      const before = decisions.get(id);
      if (before && before !== d) bad(`the decision of ${id} changed from ${before} to ${d}`, [id]);
      decisions.set(id, d);
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
        if (log.decided.get(t.txnId) !== "COMMIT") bad(`${t.txnId} is COMMITTED without a COMMIT decision`, [t.txnId]);
      } else if (t.status === "ABORTED") {
        aborted++;
        reasons[t.reason] = (reasons[t.reason] ?? 0) + 1;
      } else pending++;
    }
    Object.assign(figures, { txnsInLog: log.txns.size, committed, aborted, pending, abortReasons: reasons });

    // Journals against the log. The log is read after the journals, and a
    // decision is logged before any bank applies it, so every entry read has
    // its decision in this log.
    let inFlight = 0n;
    for (const [txnId, rows] of entriesByTxn) {
      const t = log.txns.get(txnId);
      const d = log.decided.get(txnId);
      if (!t || d !== "COMMIT") {
        bad(`${txnId} moved money (${rows.map((r) => `${r.kind} ${r.amountMinor} at ${r.accountId}`).join(", ")}) but the coordinator's decision is ${d ?? "none"}`, [txnId], t ? [t.key] : []);
        continue;
      }
      let net = 0n;
      for (const r of rows) {
        net += r.amountMinor;
        const ok = (r.kind === "transfer_debit" && r.accountId === t.from && r.amountMinor === -t.amountMinor) || (r.kind === "transfer_credit" && r.accountId === t.to && r.amountMinor === t.amountMinor);
        if (!ok) bad(`${txnId}: entry ${r.kind} ${r.amountMinor} at ${r.accountId} does not match the logged transfer ${t.from}->${t.to} ${t.amountMinor}`, [txnId], [t.key]);
      }
      if (rows.length > 2) bad(`${txnId} has ${rows.length} transfer entries`, [txnId], [t.key]);
      inFlight += net < 0n ? -net : net;
      if (final && (rows.length !== 2 || net !== 0n)) bad(`${txnId} is COMMITTED but applied at only one bank after healing: ${rows.map((r) => `${r.kind}@${r.bank}`).join(", ")}`, [txnId], [t.key]);
    }
    if (inFlight > inFlightMax) inFlightMax = inFlight;
    figures.inFlightMaxMinor = String(inFlightMax);

    // What clients were told.
    let acked = 0;
    for (const r of keys.values()) {
      if (r.committed.size > 1) bad(`key ${r.caller}/${r.key} was acknowledged COMMITTED with ${r.committed.size} different txns: ${[...r.committed].join(", ")}`, [...r.committed], [r.key]);
      for (const id of r.committed) {
        acked++;
        const t = log.txns.get(id);
        if (!t || t.status !== "COMMITTED") bad(`a client was told ${id} COMMITTED; the log says ${t?.status ?? "nothing"}`, [id], [r.key]);
        else if (t.caller !== r.caller || t.key !== r.key) bad(`${id} acknowledged for ${r.caller}/${r.key} belongs to ${t.caller}/${t.key}`, [id], [r.key]);
        else if (final && (entriesByTxn.get(id)?.length ?? 0) !== 2) bad(`acknowledged COMMITTED ${id} is not in both ledgers`, [id], [r.key]);
      }
      for (const id of r.declined) {
        const t = log.txns.get(id);
        if (t && t.status === "COMMITTED") bad(`a client was told ${id} was declined; the log says COMMITTED`, [id], [r.key]);
      }
    }
    figures.acknowledgedChecked = acked;
    if (final) {
      for (const t of log.txns.values()) {
        if (t.status === "COMMITTED" && (entriesByTxn.get(t.txnId)?.length ?? 0) !== 2) bad(`${t.txnId} is COMMITTED in the log but not in both ledgers`, [t.txnId], [t.key]);
      }
    }
  }

  async function check(final: boolean): Promise<{ allBanks: boolean; log: ReturnType<typeof readLog> }> {
    figures.checks++;
    let allBanks = true;
    for (const bank of cluster.banks.keys()) allBanks = (await readJournal(bank)) && allBanks;
    const log = readLog();
    judge(log, final);
    return { allBanks, log };
  }

  return {
    violations,
    figures,
    /** One periodic check (during faults). */
    async periodic(): Promise<void> {
      await check(false);
    },
    /**
     * After healing: waits (bounded by windowMs) until nothing is PREPARED,
     * PENDING or unacknowledged, then checks everything exactly.
     */
    async final(windowMs: number): Promise<void> {
      const started = Date.now();
      let left = "";
      for (;;) {
        const prepared: string[] = [];
        let reachable = true;
        const totals = new Map<string, { balance: bigint; deposited: bigint }>();
        for (const bank of cluster.banks.keys()) {
          try {
            const t = await cluster.bankClient(LedgerService, bank, CALL_TIMEOUT_MS).totals({});
            for (const p of t.prepared) prepared.push(`${bank}:${p.txnId}`);
            for (const c of t.currencies) {
              const x = totals.get(c.currency) ?? { balance: 0n, deposited: 0n };
              totals.set(c.currency, { balance: x.balance + c.balanceMinor, deposited: x.deposited + c.depositedMinor });
            }
          } catch {
            reachable = false;
          }
        }
        const log = readLog();
        const pending = [...log.txns.values()].filter((t) => t.status === "PENDING").length;
        left = `${prepared.length} PREPARED (${prepared.slice(0, 5).join(" ")}), ${pending} PENDING, ${log.unacked} unacknowledged decisions${reachable ? "" : ", a bank unreachable"}`;
        if (reachable && prepared.length === 0 && pending === 0 && log.unacked === 0) {
          figures.settleMs = Date.now() - started;
          for (const [currency, x] of totals) if (x.balance !== x.deposited) bad(`money not conserved in ${currency}: balances ${x.balance}, deposits ${x.deposited}`);
          const opening = cluster.accounts.reduce((s, a) => s + a.openingMinor, 0n);
          const usd = totals.get("USD");
          if (!usd || usd.balance !== opening) bad(`USD balances ${usd?.balance} differ from the opening total ${opening} (no deposits were made)`);
          break;
        }
        if (Date.now() - started > windowMs) {
          bad(`not settled ${windowMs} ms after healing (prepare timeout + resolution window): ${left}`, prepared.map((p) => p.split(":").slice(1).join(":")));
          break;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
      const { allBanks } = await check(true);
      if (!allBanks) bad("a bank did not answer the final check");
    },
  };
}
