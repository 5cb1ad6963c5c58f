// How every paygate domain returns an expected failure: as a value carrying a
// vocabulary reason (TigerBeetle's `.exceeds_credits`), never as an exception.
// One shape, so @paygate/rpc's error table can raise any domain's failure and
// a client can branch on any service's reason the same way.
import type { Reason } from "./reasons.js";

export interface Failure<R extends string = Reason> {
  readonly ok: false;
  readonly reason: R;
  readonly message: string;
  /** Facts the caller may act on (e.g. the aborted transaction_id); carried in the error detail. */
  readonly metadata?: Readonly<Record<string, string>>;
}

/** A use case's answer; `R` narrows the reasons one operation can give. */
export type Result<T, R extends string = Reason> = { readonly ok: true; readonly value: T } | Failure<R>;

export interface Success<T> {
  readonly ok: true;
  readonly value: T;
}

/** A success; it fits any `Result<T, R>`, whatever reasons the operation may give. */
export const ok = <T>(value: T): Success<T> => ({ ok: true, value });

/**
 * An expected failure. `R` is the reason given (a literal: it fits an
 * operation's narrower union, as the bank's are, and the whole `Reason`); a
 * reason outside the vocabulary does not compile. Without metadata the field
 * is absent, not undefined.
 */
export function fail<R extends Reason>(
  reason: R,
  message: string,
  metadata?: Readonly<Record<string, string>>,
): Failure<R> {
  return metadata ? { ok: false, reason, message, metadata } : { ok: false, reason, message };
}
