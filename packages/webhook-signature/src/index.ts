// @paygate/webhook-signature: the Paygate-Signature header of a webhook
// delivery (docs/WEBHOOKS.md). The gateway signs with it, a receiver (the
// checkout, a merchant's own server) verifies with it. No Connect, no storage.
//
//   Paygate-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]
//   v1 = hex(HMAC-SHA256(key = secret as UTF-8, message = "<t>.<raw body>"))
//
// One v1 per secret that signs now, so a receiver that knows only the old
// secret of a roll still verifies during the overlap.
import { createHmac, timingSafeEqual } from "node:crypto";

export const SIGNATURE_HEADER = "Paygate-Signature";
export const SIGNATURE_TOLERANCE_SECONDS_DEFAULT = 300;
/** A header longer than this is refused unread: one t and a handful of v1 entries fit many times over. */
export const SIGNATURE_HEADER_LENGTH_MAX = 4096;
/** More v1 entries than this is not a roll in progress but an attack on the verifier's time. */
export const SIGNATURE_ENTRIES_MAX = 8;

const V1_PATTERN = /^[0-9a-fA-F]{64}$/;
const T_PATTERN = /^[0-9]{1,12}$/;

export type VerifyFailure =
  | "missing_signature"
  | "malformed_signature"
  | "timestamp_out_of_tolerance"
  | "signature_mismatch";
export type VerifyResult = { ok: true; t: number } | { ok: false; reason: VerifyFailure };

/** The v1 value for one secret: hex HMAC-SHA256 over "<t>.<body>". */
export function signatureV1(secret: string, body: string, tSeconds: number): string {
  return createHmac("sha256", Buffer.from(secret, "utf8"))
    .update(`${tSeconds}.`, "utf8")
    .update(body, "utf8")
    .digest("hex");
}

/** The header value signing `body` at `tSeconds` with every secret given (at least one). */
export function signatureHeader(secrets: readonly string[], body: string, tSeconds: number): string {
  if (secrets.length === 0) throw new Error("signatureHeader: no secret to sign with");
  if (!Number.isSafeInteger(tSeconds) || tSeconds < 0) throw new Error(`signatureHeader: bad timestamp ${tSeconds}`);
  return [`t=${tSeconds}`, ...secrets.map((s) => `v1=${signatureV1(s, body, tSeconds)}`)].join(",");
}

interface ParsedHeader {
  readonly t: number;
  readonly v1: readonly Buffer[];
}

/**
 * Parses "t=..,v1=..[,v1=..]". Exactly one t; at least one v1; entries of
 * other schemes (a future v2) are skipped, so a receiver keeps working when
 * the sender adds one. Anything else is malformed.
 */
function parseHeader(header: string): ParsedHeader | undefined {
  if (header.length > SIGNATURE_HEADER_LENGTH_MAX) return undefined;
  let t: number | undefined;
  const v1: Buffer[] = [];
  for (const part of header.split(",")) {
    const eq = part.indexOf("=");
    if (eq <= 0) return undefined;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === "t") {
      if (t !== undefined || !T_PATTERN.test(value)) return undefined;
      t = Number(value);
    } else if (key === "v1") {
      if (!V1_PATTERN.test(value)) return undefined;
      if (v1.length === SIGNATURE_ENTRIES_MAX) return undefined;
      v1.push(Buffer.from(value, "hex"));
    } else if (!/^[a-z][a-z0-9]{0,7}$/.test(key)) {
      return undefined;
    }
  }
  if (t === undefined || v1.length === 0) return undefined;
  return { t, v1 };
}

/**
 * Accepts when the header is well formed, |now - t| <= tolerance, and any v1
 * matches any secret (each comparison in constant time). The timestamp is
 * checked before any HMAC is computed, and a mismatch says nothing about which
 * secret or entry came closest.
 */
export function verifySignature(
  header: string | undefined,
  body: string,
  secrets: readonly string[],
  nowSeconds: number,
  toleranceSeconds: number = SIGNATURE_TOLERANCE_SECONDS_DEFAULT,
): VerifyResult {
  if (header === undefined || header.trim() === "") return { ok: false, reason: "missing_signature" };
  const parsed = parseHeader(header);
  if (parsed === undefined) return { ok: false, reason: "malformed_signature" };
  if (Math.abs(nowSeconds - parsed.t) > toleranceSeconds) return { ok: false, reason: "timestamp_out_of_tolerance" };
  let matched = false;
  for (const secret of secrets) {
    const expected = Buffer.from(signatureV1(secret, body, parsed.t), "hex");
    for (const candidate of parsed.v1) {
      // Both are 32 bytes (the pattern fixes the length), as timingSafeEqual requires.
      if (candidate.length === expected.length && timingSafeEqual(candidate, expected)) matched = true;
    }
  }
  return matched ? { ok: true, t: parsed.t } : { ok: false, reason: "signature_mismatch" };
}
