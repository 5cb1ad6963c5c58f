// The shapes of the identifiers every service and client must agree on. One
// rule each: a client that checks with a looser rule queues requests the
// gateway refuses; a bank with a looser rule accepts what no gateway sends.

/**
 * "<bank>/<number>", e.g. bank-a/1001. Groups: 1 = bank, 2 = number. The bank
 * name is a DNS label (lowercase, it names a service and a certificate); the
 * number has at most 12 digits so it fits an INTEGER column with room to spare.
 */
export const ACCOUNT_ID_PATTERN = /^([a-z][a-z0-9-]{0,30})\/(\d{1,12})$/;

export function isAccountId(id: string): boolean {
  return ACCOUNT_ID_PATTERN.test(id);
}

/** The bank part of a well-formed account id; undefined for a malformed one. */
export function bankOfAccountId(id: string): string | undefined {
  return ACCOUNT_ID_PATTERN.exec(id)?.[1];
}

/**
 * "<coordinator replica>:<uuid>", e.g. gateway-0:1b4e28ba-2fa1-4d2b-883f-0016d3cca427.
 * Group 1 = the replica that decides the transaction (banks ask it on recovery).
 */
export const TXN_ID_PATTERN = /^([a-z][a-z0-9-]{0,62}):[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isTxnId(id: string): boolean {
  return TXN_ID_PATTERN.test(id);
}

/**
 * Every key that makes a money-moving request exactly-once: transfers,
 * deposits, card authorizations, settlement batches, refunds. Keys end up in
 * log lines, Redis keys and the banks' deposit ids, so only characters that
 * need no quoting anywhere; 100 is far above what clients use (a UUID is 36,
 * the checkout's keys at most 70) and leaves room for the prefix a deposit id adds.
 */
export const IDEMPOTENCY_KEY_LENGTH_MAX = 100;
export const IDEMPOTENCY_KEY_PATTERN = /^[A-Za-z0-9_.:-]{1,100}$/;

/** Why a key is malformed, for the caller; undefined when it is well-formed. */
export function checkIdempotencyKeyShape(key: string): string | undefined {
  if (key.length === 0) return "idempotency_key is required (reuse it on every retry)";
  if (!IDEMPOTENCY_KEY_PATTERN.test(key)) {
    return `idempotency_key must be 1-${IDEMPOTENCY_KEY_LENGTH_MAX} characters of letters, digits and _ . : -`;
  }
  return undefined;
}

/**
 * A bank's deposit id: the gateway sends "<origin>:<idempotency key>" (origin
 * "admin" today). The length allows any origin of up to 27 characters in front
 * of any valid key, so a key the gateway accepts is never refused by the bank.
 */
export const DEPOSIT_ID_LENGTH_MAX = 128;
export const DEPOSIT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

/** The deposit id for a deposit made through `origin` (e.g. "admin") under `key`. */
export function depositIdOf(origin: string, key: string): string {
  return `${origin}:${key}`;
}
