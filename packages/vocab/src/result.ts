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
