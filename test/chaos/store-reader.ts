// The checker's read-only view of the gateways' store: the SQLite file of the
// one replica, or the PostgreSQL database every replica shares. Both adapters
// keep the same tables and columns (services/gateway/src/store/db.ts and
// store/postgres/schema.ts), so one set of queries reads either, inside one
// snapshot (a SQLite read transaction; REPEATABLE READ in PostgreSQL).
// An authorization's operation and its refund reservations are read from
// their own tables (card_auth_ops, card_refund_reservations), and the old
// columns the gateway still keeps in step beside them, so the checker can
// tell the two apart.
//
// It reads with its own client (better-sqlite3, or node-postgres with short
// timeouts), never through the gateway: while PostgreSQL is killed or frozen
// a read fails fast and the periodic check simply skips the log that round.
import Database from "better-sqlite3";
import pg from "pg";

export interface LogTxn {
  readonly txnId: string;
  readonly caller: string;
  readonly key: string;
  readonly ownsKey: boolean;
  readonly from: string;
  readonly to: string;
  readonly fromBank: string;
  readonly toBank: string;
  readonly amountMinor: bigint;
  readonly status: string;
  readonly reason: string;
  /** Place in the history; null while PENDING. */
  readonly sequence: bigint | null;
}

/** A card round (hold, capture, release, refund): a txn id with a decision but no row in txns. */
export interface LogRound {
  readonly txnId: string;
  readonly kind: string;
  readonly banks: readonly string[];
}

export interface LogAuth {
  readonly authId: string;
  /** The replica that created it. */
  readonly replica: string;
  readonly authCode: string;
  readonly merchant: string;
  readonly key: string;
  readonly status: string;
  readonly reason: string;
  readonly amountMinor: bigint;
  readonly capturedMinor: bigint;
  readonly refundedMinor: bigint;
  /** The sum of its card_refund_reservations rows. */
  readonly refundReservedMinor: bigint;
  readonly holdTxnId: string;
  /** The capture or void in flight: its card_auth_ops row, if any. */
  readonly op: LogAuthOp | null;
  /** The old columns the gateway still writes for previous-release replicas (they read only these). */
  readonly columns: { readonly opTxnId: string; readonly refundReservedMinor: bigint };
  readonly captureTxnId: string;
  readonly cardAccountId: string;
  readonly cardBank: string;
  readonly merchantAccountId: string;
  readonly merchantBank: string;
  readonly merchantReference: string;
}

export interface LogAuthOp {
  readonly txnId: string;
  readonly kind: string;
  readonly amountMinor: bigint;
}

export interface LogRefund {
  readonly refundId: string;
  readonly merchant: string;
  readonly key: string;
  readonly authId: string;
  readonly amountMinor: bigint;
  readonly txnId: string;
  readonly status: string;
  readonly reason: string;
}

export interface LogBatch {
  readonly batchId: string;
  readonly key: string;
  readonly status: string;
  /** The replica settling it right now ("" = nobody: any replica may resume it). */
  readonly ownerReplica: string;
  /** Items without a final result yet. */
  readonly itemsOpen: number;
}

export interface LogSnapshot {
  readonly txns: ReadonlyMap<string, LogTxn>;
  readonly decided: ReadonlyMap<string, { readonly decision: string; readonly reason: string }>;
  /** "txn@bank" of every decision a participant has not acknowledged yet. */
  readonly unacked: readonly string[];
  readonly rounds: ReadonlyMap<string, LogRound>;
  readonly auths: ReadonlyMap<string, LogAuth>;
  readonly refunds: ReadonlyMap<string, LogRefund>;
  readonly batches: ReadonlyMap<string, LogBatch>;
}

export type StoreLocation =
  | { readonly kind: "sqlite"; readonly file: string }
  | { readonly kind: "postgres"; readonly url: string };

export interface StoreReader {
  readonly kind: StoreLocation["kind"];
  /** One consistent snapshot; rejects if the store cannot be read right now. */
  read(): Promise<LogSnapshot>;
  /** Control runs only: a write behind the gateways' back (`$1`-style parameters). */
  exec(sql: string, params?: readonly unknown[]): Promise<void>;
  close(): Promise<void>;
}

type Row = Record<string, unknown>;

/**
 * Each query names its columns as the snapshot's fields (quoted aliases keep
 * their case in both databases); `money` lists the int64 ones, read as bigint
 * whatever the driver hands back (bigint from SQLite, text from PostgreSQL).
 */
const QUERIES = {
  txns: {
    sql: `SELECT txn_id AS "txnId", sequence AS "sequence", caller_user_id AS "caller", idempotency_key AS "key", owns_key AS "ownsKey", from_account_id AS "from",
          to_account_id AS "to", from_bank AS "fromBank", to_bank AS "toBank", amount_minor AS "amountMinor", status AS "status", decline_reason AS "reason" FROM txns`,
    money: ["amountMinor", "sequence"],
  },
  decisions: { sql: `SELECT txn_id AS "txnId", decision AS "decision", reason AS "reason" FROM decisions`, money: [] },
  unacked: { sql: `SELECT txn_id AS "txnId", bank AS "bank" FROM decision_acks WHERE acked_at IS NULL`, money: [] },
  rounds: { sql: `SELECT txn_id AS "txnId", kind AS "kind", banks AS "banks" FROM rounds`, money: [] },
  auths: {
    sql: `SELECT a.auth_id AS "authId", a.replica AS "replica", a.auth_code AS "authCode", a.merchant_user_id AS "merchant", a.idempotency_key AS "key",
          a.status AS "status", a.decline_reason AS "reason", a.amount_minor AS "amountMinor", a.captured_minor AS "capturedMinor",
          a.refunded_minor AS "refundedMinor", a.hold_txn_id AS "holdTxnId", a.capture_txn_id AS "captureTxnId", a.card_account_id AS "cardAccountId",
          a.card_bank AS "cardBank", a.merchant_account_id AS "merchantAccountId", a.merchant_bank AS "merchantBank",
          a.merchant_reference AS "merchantReference", o.txn_id AS "opTxnId", o.kind AS "opKind", o.amount_minor AS "opAmountMinor",
          (SELECT coalesce(sum(v.amount_minor), 0) FROM card_refund_reservations v WHERE v.auth_id = a.auth_id) AS "refundReservedMinor",
          a.op_txn_id AS "opTxnIdColumn", a.refund_reserved_minor AS "refundReservedColumn"
          FROM card_authorizations a LEFT JOIN card_auth_ops o ON o.auth_id = a.auth_id`,
    money: [
      "amountMinor",
      "capturedMinor",
      "refundedMinor",
      "refundReservedMinor",
      "opAmountMinor",
      "refundReservedColumn",
    ],
  },
  refunds: {
    sql: `SELECT refund_id AS "refundId", merchant_user_id AS "merchant", idempotency_key AS "key", auth_id AS "authId", amount_minor AS "amountMinor",
          txn_id AS "txnId", status AS "status", reason AS "reason" FROM card_refunds`,
    money: ["amountMinor"],
  },
  batches: {
    sql: `SELECT b.batch_id AS "batchId", b.idempotency_key AS "key", b.status AS "status", b.owner_replica AS "ownerReplica",
          (SELECT count(*) FROM card_settle_items i WHERE i.batch_id = b.batch_id AND i.status = '') AS "itemsOpen" FROM card_settle_batches b`,
    money: [],
  },
} as const;

type QueryName = keyof typeof QUERIES;

/** A row as its interface: money as bigint (null stays null), flags and counts as such, everything else as text. */
function shaped(row: Row, money: readonly string[]): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(row)) {
    if (money.includes(k)) out[k] = v === null || v === undefined ? null : BigInt(v as string | number | bigint);
    else if (k === "ownsKey") out[k] = v === true || v === 1n || v === 1;
    else if (k === "itemsOpen") out[k] = Number(v);
    // text[] in PostgreSQL, comma separated in SQLite.
    else if (k === "banks")
      out[k] = Array.isArray(v)
        ? v.map(String)
        : String(v ?? "")
            .split(",")
            .filter(Boolean);
    else out[k] = v === null || v === undefined ? "" : String(v);
  }
  return out;
}

/** An authorization's shaped row with its operation and old columns gathered into their own fields. */
function toLogAuth(r: Row): LogAuth {
  const { opTxnId, opKind, opAmountMinor, opTxnIdColumn, refundReservedColumn, ...rest } = r;
  return {
    ...(rest as Omit<LogAuth, "op" | "columns">),
    op: opTxnId === "" ? null : { txnId: String(opTxnId), kind: String(opKind), amountMinor: opAmountMinor as bigint },
    columns: { opTxnId: String(opTxnIdColumn), refundReservedMinor: refundReservedColumn as bigint },
  };
}

function snapshotOf(raw: Record<QueryName, Row[]>): LogSnapshot {
  const rows = <T>(name: QueryName): T[] => raw[name].map((r) => shaped(r, QUERIES[name].money) as T);
  const byId = <T, K extends keyof T>(name: QueryName, id: K): Map<string, T> =>
    new Map(rows<T>(name).map((r) => [String(r[id]), r]));
  return {
    txns: byId<LogTxn, "txnId">("txns", "txnId"),
    decided: byId<{ txnId: string; decision: string; reason: string }, "txnId">("decisions", "txnId"),
    unacked: rows<{ txnId: string; bank: string }>("unacked").map((r) => `${r.txnId}@${r.bank}`),
    rounds: byId<LogRound, "txnId">("rounds", "txnId"),
    auths: new Map(rows<Row>("auths").map((r) => [String(r.authId), toLogAuth(r)])),
    refunds: byId<LogRefund, "refundId">("refunds", "refundId"),
    batches: byId<LogBatch, "batchId">("batches", "batchId"),
  };
}

function sqliteReader(file: string): StoreReader {
  return {
    kind: "sqlite",
    async read() {
      const db = new Database(file, { readonly: true, fileMustExist: true });
      try {
        db.pragma("busy_timeout = 5000");
        db.defaultSafeIntegers(true);
        const read = db.transaction(() => {
          const out = {} as Record<QueryName, Row[]>;
          for (const name of Object.keys(QUERIES) as QueryName[])
            out[name] = db.prepare(QUERIES[name].sql).all() as Row[];
          return out;
        });
        return snapshotOf(read());
      } finally {
        db.close();
      }
    },
    async exec(sql, params = []) {
      const db = new Database(file, { fileMustExist: true });
      try {
        db.pragma("busy_timeout = 5000");
        db.prepare(sql.replace(/\$\d+/g, "?")).run(...params);
      } finally {
        db.close();
      }
    },
    async close() {},
  };
}

/** Short enough that a frozen or killed server costs a periodic check a few seconds, not minutes. */
const PG_CONNECT_TIMEOUT_MS = 3_000;
const PG_QUERY_TIMEOUT_MS = 10_000;

function postgresReader(url: string): StoreReader {
  async function withClient<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS,
      query_timeout: PG_QUERY_TIMEOUT_MS,
      statement_timeout: PG_QUERY_TIMEOUT_MS,
    });
    client.on("error", () => {}); // a killed server: the pending query rejects; this is the socket's echo
    await client.connect();
    try {
      return await fn(client);
    } finally {
      client.end().catch(() => {});
    }
  }
  return {
    kind: "postgres",
    read: () =>
      withClient(async (c) => {
        await c.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
        const out = {} as Record<QueryName, Row[]>;
        for (const name of Object.keys(QUERIES) as QueryName[])
          out[name] = (await c.query(QUERIES[name].sql)).rows as Row[];
        await c.query("COMMIT");
        return snapshotOf(out);
      }),
    exec: (sql, params = []) =>
      withClient(async (c) => {
        await c.query(sql, params as unknown[]);
      }),
    async close() {},
  };
}

export function openStoreReader(where: StoreLocation): StoreReader {
  return where.kind === "sqlite" ? sqliteReader(where.file) : postgresReader(where.url);
}
