// Credit reports and the rules for what a well-formed one is. The data file
// is checked once, at start, with every problem reported together: a bureau
// that serves a half-valid file would make the gateway's risk rule decide on
// garbage.
import { AMOUNT_MINOR_MAX, parseCurrency } from "@paygate/money";
import type { Result } from "@paygate/vocab";

export interface CreditReport {
  readonly userId: string;
  /** 300..850. */
  readonly score: number;
  readonly openCreditMinor: bigint;
  readonly currency: string;
  /** 0..10000 basis points of open credit in use. */
  readonly utilisationBps: number;
  /** Payments 30+ days late in the last 24 months. */
  readonly delinquencies: number;
  readonly reportTimeMs: number;
}

// Failures are values, in the vocabulary's one Result shape.
export type { Result };

export const SCORE_MIN = 300;
export const SCORE_MAX = 850;
export const UTILISATION_BPS_MAX = 10_000;
export const DELINQUENCIES_MAX = 1_000;
/** A data file is small and hand-written; anything bigger is a mistake. */
export const REPORTS_MAX = 100_000;
// The gateway's user ids (the seed's and CreateUser's).
export const USER_ID_PATTERN = /^[a-z][a-z0-9_-]{0,63}$/;

export type ParsedReports =
  | { readonly ok: true; readonly reports: ReadonlyMap<string, CreditReport> }
  | { readonly ok: false; readonly problems: readonly string[] };

/**
 * Turns the parsed data file (`{ as_of, reports: [...] }`, snake_case keys as
 * written by people) into reports keyed by user id.
 */
export function parseReports(doc: unknown): ParsedReports {
  const problems: string[] = [];
  const root = isRecord(doc) ? doc : {};
  if (!isRecord(doc)) problems.push("the file must be a mapping with `as_of` and `reports`");
  const asOfMs = parseTime(root.as_of);
  if (asOfMs === undefined) problems.push('as_of: an ISO 8601 time, e.g. "2026-01-15T09:00:00Z"');
  const list = Array.isArray(root.reports) ? root.reports : [];
  if (!Array.isArray(root.reports) || list.length === 0) problems.push("reports: a non-empty list");
  if (list.length > REPORTS_MAX) problems.push(`reports: at most ${REPORTS_MAX} entries, got ${list.length}`);

  const reports = new Map<string, CreditReport>();
  for (const [i, raw] of list.slice(0, REPORTS_MAX).entries()) {
    const at = `reports[${i}]`;
    if (!isRecord(raw)) {
      problems.push(`${at}: a mapping`);
      continue;
    }
    const before = problems.length;
    const userId = typeof raw.user_id === "string" ? raw.user_id : "";
    if (!USER_ID_PATTERN.test(userId))
      problems.push(`${at}.user_id: must match ${USER_ID_PATTERN}, got ${JSON.stringify(raw.user_id)}`);
    else if (reports.has(userId)) problems.push(`${at}.user_id: ${userId} appears twice`);
    const score = intIn(raw.score, SCORE_MIN, SCORE_MAX);
    if (score === undefined) problems.push(`${at}.score: an integer in [${SCORE_MIN}, ${SCORE_MAX}]`);
    const openCreditMinor = minorAmount(raw.open_credit_minor);
    if (openCreditMinor === undefined) problems.push(`${at}.open_credit_minor: an integer in [0, ${AMOUNT_MINOR_MAX}]`);
    const currency = typeof raw.currency === "string" ? parseCurrency(raw.currency) : undefined;
    if (currency === undefined)
      problems.push(`${at}.currency: a 3-letter ISO code, got ${JSON.stringify(raw.currency)}`);
    const utilisationBps = intIn(raw.utilisation_bps, 0, UTILISATION_BPS_MAX);
    if (utilisationBps === undefined) problems.push(`${at}.utilisation_bps: an integer in [0, ${UTILISATION_BPS_MAX}]`);
    const delinquencies = intIn(raw.delinquencies, 0, DELINQUENCIES_MAX);
    if (delinquencies === undefined) problems.push(`${at}.delinquencies: an integer in [0, ${DELINQUENCIES_MAX}]`);
    const reportTimeMs = raw.report_time === undefined ? asOfMs : parseTime(raw.report_time);
    if (raw.report_time !== undefined && reportTimeMs === undefined)
      problems.push(`${at}.report_time: an ISO 8601 time`);
    const known = new Set([
      "user_id",
      "score",
      "open_credit_minor",
      "currency",
      "utilisation_bps",
      "delinquencies",
      "report_time",
    ]);
    for (const k of Object.keys(raw)) if (!known.has(k)) problems.push(`${at}: unknown field ${JSON.stringify(k)}`);
    if (problems.length > before) continue;
    reports.set(userId, {
      userId,
      score: score!,
      openCreditMinor: openCreditMinor!,
      currency: currency!,
      utilisationBps: utilisationBps!,
      delinquencies: delinquencies!,
      reportTimeMs: reportTimeMs!,
    });
  }
  return problems.length > 0 ? { ok: false, problems } : { ok: true, reports };
}

export interface Bureau {
  fetch(userId: string): Result<CreditReport, "invalid_argument" | "user_not_found">;
  readonly size: number;
}

export function createBureau(reports: ReadonlyMap<string, CreditReport>): Bureau {
  return {
    size: reports.size,
    fetch(userId) {
      if (!USER_ID_PATTERN.test(userId))
        return { ok: false, reason: "invalid_argument", message: "user_id must be a paygate user id" };
      const report = reports.get(userId);
      if (!report)
        return { ok: false, reason: "user_not_found", message: `no credit report for user ${JSON.stringify(userId)}` };
      return { ok: true, value: report };
    },
  };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function intIn(v: unknown, min: number, max: number): number | undefined {
  return typeof v === "number" && Number.isInteger(v) && v >= min && v <= max ? v : undefined;
}

function minorAmount(v: unknown): bigint | undefined {
  let n: bigint | undefined;
  if (typeof v === "number" && Number.isSafeInteger(v)) n = BigInt(v);
  else if (typeof v === "bigint") n = v;
  else if (typeof v === "string" && /^\d{1,20}$/.test(v)) n = BigInt(v);
  return n !== undefined && n >= 0n && n <= AMOUNT_MINOR_MAX ? n : undefined;
}

function parseTime(v: unknown): number | undefined {
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? undefined : v.getTime();
  if (typeof v !== "string" || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(v))
    return undefined;
  const ms = Date.parse(v);
  return Number.isNaN(ms) ? undefined : ms;
}
