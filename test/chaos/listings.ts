// Customers' histories under chaos. During the run each customer keeps a
// ListTransactions stream open with `follow` on a random replica and, when it
// breaks, resumes on another random replica after the last sequence it got
// (as paycli history --follow would); the stream must deliver transactions
// decided by any replica. After healing, each customer's whole history is
// read page by page, every page from a random replica.
//
// Checked for every customer, for the pages and for the follower: sequences
// strictly increase, no txn comes twice, every txn agrees with the store, the
// history is exactly the decided txns the customer may see (their own
// requests and those touching their accounts), so every acknowledged txn is
// there exactly once, and every decided txn has its place in the history.
import { Code } from "@connectrpc/connect";
import { PaymentService, TransactionStatus, type Transaction } from "@paygate/proto/gateway";
import { errorInfo } from "@paygate/rpc";
import type { Rng } from "../sim/rng.js";
import type { Bad } from "./checker.js";
import type { Cluster } from "./cluster.js";
import type { LogSnapshot } from "./store-reader.js";
import type { KeyRecord } from "./workload.js";
import { sleep } from "./workload.js";

interface Seen {
  readonly txnId: string;
  readonly sequence: bigint;
  readonly status: string;
}

interface Follower {
  readonly user: string;
  readonly delivered: Seen[];
  reconnects: number;
  errors: Record<string, number>;
}

export interface ListingFigures {
  followers: number;
  delivered: number;
  reconnects: number;
  pagesRead: number;
  listed: number;
}

const PAGE = 500;
const PAGES_MAX = 1_000;
/** After healing, how long a follower may take to deliver the last decided txn it may see. */
const CATCH_UP_MS = 20_000;

const statusName = (t: Transaction) =>
  (TransactionStatus[t.status] ?? String(t.status)).replace(/^TRANSACTION_STATUS_/, "");

export function createListings(cluster: Cluster, rng: Rng, tokens: ReadonlyMap<string, string>) {
  const followers = new Map<string, Follower>();
  const figures: ListingFigures = { followers: 0, delivered: 0, reconnects: 0, pagesRead: 0, listed: 0 };
  const stop = new AbortController();
  let running: Promise<unknown> = Promise.resolve();

  async function follow(f: Follower): Promise<void> {
    // No deadline: a follower stays open until the run ends (a 0 timeout would be "expired at once").
    const client = cluster.client(PaymentService, tokens.get(f.user), 24 * 3_600_000);
    while (!stop.signal.aborted) {
      const after = f.delivered.at(-1)?.sequence ?? 0n;
      try {
        for await (const r of client.listTransactions(
          { afterSequence: after, follow: true, limit: 0 },
          { signal: stop.signal },
        )) {
          const t = r.transaction!;
          f.delivered.push({ txnId: t.transactionId, sequence: t.sequence, status: statusName(t) });
        }
      } catch (e) {
        if (stop.signal.aborted) return;
        const info = errorInfo(e);
        const label = info.reason || Code[info.code] || "error";
        f.errors[label] = (f.errors[label] ?? 0) + 1;
      }
      f.reconnects++;
      await sleep(rng.int(100, 800));
    }
  }

  /** Pages through a customer's whole history, each page from a random replica. */
  async function readAll(user: string): Promise<Seen[] | string> {
    const client = cluster.client(PaymentService, tokens.get(user), 10_000);
    const out: Seen[] = [];
    for (let page = 0, failures = 0; page < PAGES_MAX; ) {
      const after = out.at(-1)?.sequence ?? 0n;
      let n = 0;
      try {
        for await (const r of client.listTransactions({ afterSequence: after, follow: false, limit: PAGE })) {
          const t = r.transaction!;
          out.push({ txnId: t.transactionId, sequence: t.sequence, status: statusName(t) });
          n++;
        }
        figures.pagesRead++;
        page++;
        if (n < PAGE) return out;
      } catch (e) {
        if (++failures > 10) return `ListTransactions kept failing: ${errorInfo(e).reason || Code[errorInfo(e).code]}`;
        await sleep(300);
      }
    }
    return out;
  }

  function judgeOne(
    what: string,
    user: string,
    seen: readonly Seen[],
    expected: ReadonlyMap<string, { sequence: bigint; status: string }>,
    acked: readonly string[],
    bad: Bad,
  ): void {
    const ids = new Set<string>();
    let last = -1n;
    for (const s of seen) {
      if (s.sequence <= last)
        bad(
          `${what} of ${user}: ${s.txnId} (sequence ${s.sequence}) came after sequence ${last}: not in sequence order`,
          [s.txnId],
        );
      last = s.sequence > last ? s.sequence : last;
      if (ids.has(s.txnId)) bad(`${what} of ${user}: ${s.txnId} listed twice`, [s.txnId]);
      ids.add(s.txnId);
      const e = expected.get(s.txnId);
      if (!e) bad(`${what} of ${user}: lists ${s.txnId}, which is not a decided txn ${user} may see`, [s.txnId]);
      else if (e.sequence !== s.sequence || e.status !== s.status)
        bad(
          `${what} of ${user}: ${s.txnId} listed as ${s.status} at ${s.sequence}; the store says ${e.status} at ${e.sequence}`,
          [s.txnId],
        );
    }
    const missing = [...expected.keys()].filter((id) => !ids.has(id));
    if (missing.length > 0)
      bad(
        `${what} of ${user}: ${missing.length} decided txns missing (${missing.slice(0, 5).join(", ")})`,
        missing.slice(0, 5),
      );
    const missingAcked = acked.filter((id) => !ids.has(id));
    if (missingAcked.length > 0)
      bad(
        `${what} of ${user}: ${missingAcked.length} acknowledged COMMITTED txns missing (${missingAcked.slice(0, 5).join(", ")})`,
        missingAcked.slice(0, 5),
      );
  }

  return {
    figures,
    start(users: readonly string[]): void {
      for (const u of users) followers.set(u, { user: u, delivered: [], reconnects: 0, errors: {} });
      figures.followers = followers.size;
      running = Promise.all([...followers.values()].map((f) => follow(f)));
    },
    async check(log: LogSnapshot, keys: ReadonlyMap<string, KeyRecord>, bad: Bad): Promise<void> {
      const owner = new Map(cluster.accounts.map((a) => [a.id, a.owner]));
      for (const t of log.txns.values()) {
        if (t.status !== "PENDING" && t.sequence === null)
          bad(`${t.txnId} is ${t.status} but has no place in the history (no sequence)`, [t.txnId], [t.key]);
      }
      for (const user of tokens.keys()) {
        const expected = new Map<string, { sequence: bigint; status: string }>();
        for (const t of log.txns.values()) {
          if (t.sequence === null) continue;
          if (t.caller === user || owner.get(t.from) === user || owner.get(t.to) === user)
            expected.set(t.txnId, { sequence: t.sequence, status: t.status });
        }
        const acked = [...keys.values()]
          .filter((r) => r.caller === user || owner.get(r.from) === user || owner.get(r.to) === user)
          .flatMap((r) => [...r.committed]);
        const all = await readAll(user);
        if (typeof all === "string") bad(`history of ${user}: ${all}`);
        else {
          figures.listed += all.length;
          judgeOne("ListTransactions", user, all, expected, acked, bad);
        }
        const f = followers.get(user);
        if (!f) continue;
        const lastSeq = [...expected.values()].reduce((m, e) => (e.sequence > m ? e.sequence : m), 0n);
        const deadline = Date.now() + CATCH_UP_MS;
        while ((f.delivered.at(-1)?.sequence ?? 0n) < lastSeq && Date.now() < deadline) await sleep(200);
        if ((f.delivered.at(-1)?.sequence ?? 0n) < lastSeq) {
          bad(
            `ListTransactions follow of ${user}: ${CATCH_UP_MS} ms after healing it has delivered up to sequence ${f.delivered.at(-1)?.sequence ?? 0n}, the last decided txn ${user} may see is at ${lastSeq} (${f.reconnects} reconnects, errors ${JSON.stringify(f.errors)})`,
          );
        }
        judgeOne("ListTransactions follow", user, f.delivered, expected, acked, bad);
      }
      stop.abort();
      await running;
      for (const f of followers.values()) {
        figures.delivered += f.delivered.length;
        figures.reconnects += f.reconnects;
      }
    },
    async close(): Promise<void> {
      stop.abort();
      await running;
    },
  };
}
