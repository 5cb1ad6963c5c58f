// The gateway's CardStore for the simulation: the semantics of
// services/gateway/src/store/cards-store.ts (unique indexes as exactly-once
// guards, compare-and-set with an opId that reports a re-run as applied,
// startRefund reserving only while refunded + reserved + amount <= captured,
// recordRisk comparing the card's spend, expiry skipping a capture or void in
// flight; the operation lock on the record, a reservation per refund in
// flight, as the store keeps them in tables of their own) over Maps that survive a simulated gateway crash, like the memory
// log. Each process incarnation gets its own view (a dead process reads and
// writes nothing); writes go through `write`, which the world delays like a
// group commit's fsync. The checker reads the Maps and hears every change.
import type {
  AuthChange,
  AuthExpect,
  AuthRecord,
  BatchItemRecord,
  BatchRecord,
  CardRecord,
  CardStore,
  RefundEnd,
  RefundRecord,
  RefundReservation,
  RefundStart,
} from "@paygate/gateway/domain";

/** One durable change, as the checker sees it (undefined: the row did not exist / was deleted). */
export type CardChange =
  | { readonly kind: "auth"; readonly before: AuthRecord | undefined; readonly after: AuthRecord | undefined }
  | { readonly kind: "item"; readonly before: BatchItemRecord; readonly after: BatchItemRecord }
  | { readonly kind: "batch"; readonly before: BatchRecord | undefined; readonly after: BatchRecord }
  | { readonly kind: "refund"; readonly before: RefundRecord | undefined; readonly after: RefundRecord | undefined };

/** How one process incarnation reaches the store. */
export interface CardStoreIo {
  /** Throws (SimCrash) when the process is dead. */
  alive(): void;
  /** Runs a write once it is durable (the process must still be alive then); resolves with its result. */
  write<T>(what: string, apply: () => T): Promise<T>;
}

export interface SimCardStore {
  readonly cards: ReadonlyMap<string, CardRecord>;
  readonly auths: ReadonlyMap<string, AuthRecord>;
  readonly batches: ReadonlyMap<string, BatchRecord>;
  readonly items: ReadonlyMap<string, readonly BatchItemRecord[]>;
  readonly refunds: ReadonlyMap<string, RefundRecord>;
  /** By refund txn id: the refunds in flight, whose amounts each authorization's refundReservedMinor adds up. */
  readonly reservations: ReadonlyMap<string, RefundReservation>;
  /** Called after every durable change. */
  onChange: (change: CardChange) => void;
  /** Control test: startRefund reserves without checking what is left to refund. */
  skipRefundReservationCheck: boolean;
  view(io: CardStoreIo): CardStore;
}

const keyOf = (merchantUserId: string, key: string) => `${merchantUserId}\0${key}`;
const ofReplica = (txnId: string, replica: string | undefined) =>
  replica === undefined || txnId.startsWith(`${replica}:`);
/** ORDER BY a number, ties in insertion order (SQLite's rowid). */
const byNumber = <T>(rows: T[], n: (row: T) => number): T[] => rows.sort((a, b) => n(a) - n(b));

export function createSimCardStore(): SimCardStore {
  const cards = new Map<string, CardRecord>();
  const cardByPan = new Map<string, string>();
  const auths = new Map<string, AuthRecord>();
  const lastOp = new Map<string, string>();
  const authByCode = new Map<string, string>();
  const authByKey = new Map<string, string>();
  const batches = new Map<string, BatchRecord>();
  const batchByKey = new Map<string, string>();
  const items = new Map<string, BatchItemRecord[]>();
  const refunds = new Map<string, RefundRecord>();
  const refundByKey = new Map<string, string>();
  const reservations = new Map<string, RefundReservation>();

  function putAuth(next: AuthRecord, opId: string | undefined): void {
    const before = auths.get(next.authId);
    auths.set(next.authId, next);
    if (opId !== undefined) lastOp.set(next.authId, opId);
    store.onChange({ kind: "auth", before, after: next });
  }

  function putRefund(next: RefundRecord | undefined, refundId: string): void {
    const before = refunds.get(refundId);
    if (next) refunds.set(refundId, next);
    else {
      refunds.delete(refundId);
      if (before) refundByKey.delete(keyOf(before.merchantUserId, before.idempotencyKey));
    }
    store.onChange({ kind: "refund", before, after: next });
  }

  function updateAuthNow(authId: string, expect: AuthExpect, change: AuthChange, nowMs: number, opId: string): boolean {
    const current = auths.get(authId);
    if (!current) return false;
    if (lastOp.get(authId) === opId) return true; // this very update, re-run after an unknown outcome
    if (expect.status !== undefined && current.status !== expect.status) return false;
    if (expect.opTxnId !== undefined && (current.op?.txnId ?? "") !== expect.opTxnId) return false;
    putAuth({ ...current, ...change, updatedAtMs: nowMs }, opId);
    return true;
  }

  function spent(cardId: string, sinceMs: number, excludeAuthId: string): bigint {
    let total = 0n;
    for (const a of auths.values()) {
      if (a.cardId !== cardId || a.createdAtMs < sinceMs || a.authId === excludeAuthId) continue;
      if (a.status === "APPROVED" || a.status === "CAPTURED" || (a.status === "PENDING" && a.riskApproved))
        total += a.amountMinor;
    }
    return total;
  }

  /** Adds `refundedMinor` and puts the authorization's reserved total back in step with its reservations. */
  function adjustRefunds(authId: string, refundedMinor: bigint, nowMs: number): void {
    const a = auths.get(authId);
    let reserved = 0n;
    for (const v of reservations.values()) if (v.authId === authId) reserved += v.amountMinor;
    if (a)
      putAuth(
        { ...a, refundedMinor: a.refundedMinor + refundedMinor, refundReservedMinor: reserved, updatedAtMs: nowMs },
        undefined,
      );
  }

  function startRefundNow(r: RefundRecord, nowMs: number): RefundStart {
    const existingId = refundByKey.get(keyOf(r.merchantUserId, r.idempotencyKey));
    if (existingId !== undefined)
      return existingId === r.refundId ? { started: true } : { started: false, existing: refunds.get(existingId)! };
    const a = auths.get(r.authId);
    const fits =
      a !== undefined &&
      a.status === "CAPTURED" &&
      (store.skipRefundReservationCheck || a.refundedMinor + a.refundReservedMinor + r.amountMinor <= a.capturedMinor);
    if (!fits)
      return { started: false, refundableMinor: a ? a.capturedMinor - a.refundedMinor - a.refundReservedMinor : 0n };
    reservations.set(r.txnId, { refundTxnId: r.txnId, authId: r.authId, amountMinor: r.amountMinor });
    adjustRefunds(r.authId, 0n, nowMs);
    refundByKey.set(keyOf(r.merchantUserId, r.idempotencyKey), r.refundId);
    putRefund({ ...r }, r.refundId);
    return { started: true };
  }

  function finishRefundNow(refundId: string, end: RefundEnd, nowMs: number): void {
    const r = refunds.get(refundId);
    if (!r || r.status !== "PENDING") return; // finished already (a re-run, or recovery)
    reservations.delete(r.txnId);
    if (end.status === "COMMITTED") {
      adjustRefunds(r.authId, r.amountMinor, nowMs);
      putRefund({ ...r, status: "COMMITTED", reason: "" }, refundId);
      return;
    }
    adjustRefunds(r.authId, 0n, nowMs);
    putRefund(end.status === "RETRY" ? undefined : { ...r, status: "FAILED", reason: end.reason }, refundId);
  }

  function insertBatchNow(batch: BatchRecord, rows: readonly BatchItemRecord[]): boolean {
    if (batches.has(batch.batchId)) return true; // a re-run after a lost outcome finds its own row
    if (batchByKey.has(keyOf(batch.merchantUserId, batch.idempotencyKey))) return false;
    batches.set(batch.batchId, batch);
    batchByKey.set(keyOf(batch.merchantUserId, batch.idempotencyKey), batch.batchId);
    items.set(
      batch.batchId,
      rows.map((it) => ({
        batchId: batch.batchId,
        index: it.index,
        authCode: it.authCode,
        amountMinor: it.amountMinor,
        status: "",
        reason: "",
        capturedMinor: 0n,
        txnId: "",
      })),
    );
    store.onChange({ kind: "batch", before: undefined, after: batch });
    return true;
  }

  function putBatch(next: BatchRecord): void {
    const before = batches.get(next.batchId);
    batches.set(next.batchId, next);
    store.onChange({ kind: "batch", before, after: next });
  }

  type BatchView = Pick<
    CardStore,
    "insertBatch" | "batchByKey" | "batchItems" | "takeBatch" | "releaseBatches" | "setBatchItem" | "finishBatch"
  >;

  /** The capture batches as one incarnation's view reaches them. */
  function batchView(io: CardStoreIo, read: <T>(fn: () => T) => Promise<T>): BatchView {
    return {
      insertBatch: (batch, rows) => io.write("insertBatch", () => insertBatchNow(batch, rows)),
      batchByKey: (merchantUserId, key) => read(() => batches.get(batchByKey.get(keyOf(merchantUserId, key)) ?? "")),
      batchItems: (batchId) => read(() => [...(items.get(batchId) ?? [])]),
      takeBatch: (batchId, fromReplica, replica) =>
        io.write("takeBatch", () => {
          const b = batches.get(batchId);
          if (!b) return false;
          if (b.status === "PENDING" && b.ownerReplica === fromReplica) {
            putBatch({ ...b, ownerReplica: replica });
            return true;
          }
          return b.ownerReplica === replica;
        }),
      releaseBatches: (replica, keep) =>
        io.write("releaseBatches", () => {
          let n = 0;
          for (const b of batches.values()) {
            if (b.status !== "PENDING" || b.ownerReplica !== replica || keep.includes(b.batchId)) continue;
            putBatch({ ...b, ownerReplica: "" });
            n++;
          }
          return n;
        }),
      setBatchItem: (batchId, index, result) =>
        io.write("setBatchItem", () => {
          const rows = items.get(batchId);
          const before = rows?.[index];
          if (!rows || !before) throw new Error(`batch item ${batchId}#${index} does not exist`);
          const after: BatchItemRecord = {
            ...before,
            status: result.status,
            reason: result.reason,
            capturedMinor: result.capturedMinor,
            txnId: result.txnId,
          };
          rows[index] = after;
          store.onChange({ kind: "item", before, after });
        }),
      finishBatch: (batchId) =>
        io.write("finishBatch", () => {
          const b = batches.get(batchId);
          if (b?.status === "PENDING") putBatch({ ...b, status: "DONE" });
        }),
    };
  }

  const store: SimCardStore = {
    cards,
    auths,
    batches,
    items,
    refunds,
    reservations,
    onChange: () => {},
    skipRefundReservationCheck: false,
    view(io) {
      const read = async <T>(fn: () => T): Promise<T> => {
        io.alive();
        return fn();
      };
      return {
        insertCard: (card) =>
          io.write("insertCard", () => {
            const owner = cardByPan.get(card.panHmac);
            if (owner !== undefined) return owner === card.cardId;
            cards.set(card.cardId, card);
            cardByPan.set(card.panHmac, card.cardId);
            return true;
          }),
        cardByPanHmac: (panHmac) => read(() => cards.get(cardByPan.get(panHmac) ?? "")),
        authById: (authId) => read(() => auths.get(authId)),
        authByCode: (code) => read(() => auths.get(authByCode.get(code) ?? "")),
        authByKey: (merchantUserId, key) => read(() => auths.get(authByKey.get(keyOf(merchantUserId, key)) ?? "")),
        insertAuth: (auth) =>
          io.write("insertAuth", () => {
            if (auths.has(auth.authId)) return true;
            if (authByCode.has(auth.authCode) || authByKey.has(keyOf(auth.merchantUserId, auth.idempotencyKey)))
              return false;
            authByCode.set(auth.authCode, auth.authId);
            authByKey.set(keyOf(auth.merchantUserId, auth.idempotencyKey), auth.authId);
            putAuth({ ...auth }, "");
            return true;
          }),
        updateAuth: (authId, expect, change, nowMs, opId) =>
          io.write("updateAuth", () => updateAuthNow(authId, expect, change, nowMs, opId)),
        deleteAuth: (authId) =>
          io.write("deleteAuth", () => {
            const a = auths.get(authId);
            if (!a || a.status !== "PENDING") return;
            auths.delete(authId);
            lastOp.delete(authId);
            authByCode.delete(a.authCode);
            authByKey.delete(keyOf(a.merchantUserId, a.idempotencyKey));
            store.onChange({ kind: "auth", before: a, after: undefined });
          }),
        recordRisk: (authId, cardId, sinceMs, spentMinor, change, nowMs) =>
          // One writer at a time: the spend read here is the spend at commit.
          io.write(
            "recordRisk",
            () =>
              spent(cardId, sinceMs, authId) === spentMinor &&
              updateAuthNow(authId, { status: "PENDING" }, change, nowMs, `risk/${authId}`),
          ),
        spentSince: (cardId, sinceMs, excludeAuthId) => read(() => spent(cardId, sinceMs, excludeAuthId)),
        pendingAuths: (limit, replica) =>
          read(() =>
            byNumber(
              [...auths.values()].filter(
                (a) => a.status === "PENDING" && (replica === undefined || a.replica === replica),
              ),
              (a) => a.createdAtMs,
            ).slice(0, limit),
          ),
        authsWithOp: (limit, replica) =>
          read(() =>
            byNumber(
              [...auths.values()].filter((a) => a.op !== null && ofReplica(a.op.txnId, replica)),
              (a) => a.updatedAtMs,
            ).slice(0, limit),
          ),
        expireDue: (nowMs, limit) =>
          io.write("expireDue", () => {
            const due = byNumber(
              [...auths.values()].filter((a) => a.status === "APPROVED" && a.expiresAtMs <= nowMs && a.op === null),
              (a) => a.expiresAtMs,
            ).slice(0, limit);
            return due.map((a) => {
              const next: AuthRecord = { ...a, status: "EXPIRED", updatedAtMs: nowMs };
              putAuth(next, undefined);
              return next;
            });
          }),
        ...batchView(io, read),
        startRefund: (refund, nowMs) => io.write("startRefund", () => startRefundNow(refund, nowMs)),
        finishRefund: (refundId, end, nowMs) => io.write("finishRefund", () => finishRefundNow(refundId, end, nowMs)),
        refundByKey: (merchantUserId, key) =>
          read(() => refunds.get(refundByKey.get(keyOf(merchantUserId, key)) ?? "")),
        refundById: (refundId) => read(() => refunds.get(refundId)),
        pendingRefunds: (limit, replica) =>
          read(() =>
            byNumber(
              [...refunds.values()].filter((r) => r.status === "PENDING" && ofReplica(r.txnId, replica)),
              (r) => r.createdAtMs,
            ).slice(0, limit),
          ),
      };
    },
  };
  return store;
}
