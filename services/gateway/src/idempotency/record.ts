// What the fast path keeps under one idempotency key, and its wire form. The
// value is JSON (bigints as decimal strings) with a version, so a gateway that
// reads a record it does not understand treats it as absent and asks the log.
import type { Reason } from "@paygate/rpc";
import type { Failure, Result, TxnRecord, TxnStatus } from "../domain/model.js";

const VERSION = 1;

/** A request with this key is being worked on by `owner` (`<replica>/<boot id>`). */
export interface InFlightRecord {
  readonly state: "in_flight";
  readonly fingerprint: string;
  readonly owner: string;
  /** Unique per claim: only the claim's holder may delete it. */
  readonly token: string;
}

/** The key's final outcome: what every repeat of the request is answered with. */
export interface DoneRecord {
  readonly state: "done";
  readonly fingerprint: string;
  readonly txnId: string;
  readonly result: Result<TxnRecord>;
}

export type IdempotencyRecord = InFlightRecord | DoneRecord;

/** `idem:{caller}:{key}`. User ids never contain ':' (USER_ID_PATTERN), so the split is unambiguous. */
export function cacheKey(callerUserId: string, idempotencyKey: string): string {
  return `idem:${callerUserId}:${idempotencyKey}`;
}

export function encodeRecord(r: IdempotencyRecord): string {
  if (r.state === "in_flight")
    return JSON.stringify({ v: VERSION, state: r.state, fp: r.fingerprint, owner: r.owner, token: r.token });
  const result = r.result.ok
    ? {
        ok: true,
        txn: {
          ...r.result.value,
          sequence: r.result.value.sequence.toString(),
          amountMinor: r.result.value.amountMinor.toString(),
        },
      }
    : { ok: false, reason: r.result.reason, message: r.result.message, metadata: r.result.metadata ?? {} };
  return JSON.stringify({ v: VERSION, state: r.state, fp: r.fingerprint, txnId: r.txnId, result });
}

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const str = (o: Json, k: string): string | undefined => (typeof o[k] === "string" ? (o[k] as string) : undefined);
const int = (o: Json, k: string): number | undefined => (Number.isSafeInteger(o[k]) ? (o[k] as number) : undefined);
const big = (o: Json, k: string): bigint | undefined => {
  const s = str(o, k);
  return s !== undefined && /^-?\d{1,20}$/.test(s) ? BigInt(s) : undefined;
};

const STATUSES: readonly TxnStatus[] = ["PENDING", "COMMITTED", "ABORTED"];

class Malformed extends Error {}
const need = <T>(v: T | undefined): T => {
  if (v === undefined) throw new Malformed();
  return v;
};

function decodeTxn(t: unknown): TxnRecord | undefined {
  if (!isObj(t)) return undefined;
  const status = str(t, "status");
  try {
    // Typed literal: a field added to TxnRecord fails to compile here instead of vanishing from replays.
    const txn: TxnRecord = {
      txnId: need(str(t, "txnId")),
      sequence: need(big(t, "sequence")),
      callerUserId: need(str(t, "callerUserId")),
      idempotencyKey: need(str(t, "idempotencyKey")),
      fingerprint: need(str(t, "fingerprint")),
      fromAccountId: need(str(t, "fromAccountId")),
      toAccountId: need(str(t, "toAccountId")),
      fromBank: need(str(t, "fromBank")),
      toBank: need(str(t, "toBank")),
      amountMinor: need(big(t, "amountMinor")),
      currency: need(str(t, "currency")),
      memo: need(str(t, "memo")),
      status: need(STATUSES.find((s) => s === status)),
      declineReason: need(str(t, "declineReason")),
      createdAtMs: need(int(t, "createdAtMs")),
      decidedAtMs: need(int(t, "decidedAtMs")),
    };
    return txn;
  } catch (e) {
    if (e instanceof Malformed) return undefined;
    throw e;
  }
}

function decodeFailure(o: Json): Failure | undefined {
  const reason = str(o, "reason");
  const message = str(o, "message");
  const metadata = o.metadata;
  if (reason === undefined || message === undefined || !isObj(metadata)) return undefined;
  if (!Object.values(metadata).every((v) => typeof v === "string")) return undefined;
  const meta = metadata as Record<string, string>;
  return Object.keys(meta).length > 0
    ? { ok: false, reason: reason as Reason, message, metadata: meta }
    : { ok: false, reason: reason as Reason, message };
}

/** undefined for anything malformed or from another version. */
export function decodeRecord(raw: string): IdempotencyRecord | undefined {
  let o: unknown;
  try {
    o = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (!isObj(o) || o.v !== VERSION) return undefined;
  const fingerprint = str(o, "fp");
  if (fingerprint === undefined) return undefined;
  if (o.state === "in_flight") {
    const owner = str(o, "owner");
    const token = str(o, "token");
    return owner !== undefined && token !== undefined ? { state: "in_flight", fingerprint, owner, token } : undefined;
  }
  if (o.state !== "done") return undefined;
  const txnId = str(o, "txnId");
  const r = o.result;
  if (txnId === undefined || !isObj(r)) return undefined;
  if (r.ok === true) {
    const txn = decodeTxn(r.txn);
    return txn ? { state: "done", fingerprint, txnId, result: { ok: true, value: txn } } : undefined;
  }
  const failure = r.ok === false ? decodeFailure(r) : undefined;
  return failure ? { state: "done", fingerprint, txnId, result: failure } : undefined;
}
