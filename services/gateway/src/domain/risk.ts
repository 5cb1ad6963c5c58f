// The card risk rule: the credit bureau's score, stricter for large amounts,
// and a per-card ceiling on what is authorized per UTC day. Pure: the caller
// supplies today's spend, read atomically with recording the decision.
import type { CardDeclineReason } from "@paygate/vocab";

export interface RiskConfig {
  /** Below this score every authorization is declined. */
  readonly scoreMin: number;
  /** Amounts at or above this need `reviewScoreMin`. */
  readonly reviewAmountMinor: bigint;
  readonly reviewScoreMin: number;
  /** Per card and UTC day: the sum of authorized amounts may not exceed this. */
  readonly dailySpendMaxMinor: bigint;
}

export interface RiskInput {
  readonly score: number;
  readonly amountMinor: bigint;
  /** What the card already has authorized today (approved, captured or being placed). */
  readonly spentTodayMinor: bigint;
}

export interface RiskDecision {
  readonly score: number;
  readonly approved: boolean;
  /** The rule that decided, recorded with the authorization, e.g. "score>=600" or "daily_limit". */
  readonly rule: string;
  /** Set when declined. */
  readonly reason?: Extract<CardDeclineReason, "risk_declined" | "spend_limit_exceeded">;
}

const DAY_MS = 86_400_000;

/** Start of the UTC day containing nowMs. */
export function utcDayStartMs(nowMs: number): number {
  return nowMs - (((nowMs % DAY_MS) + DAY_MS) % DAY_MS);
}

export function evaluateRisk(cfg: RiskConfig, input: RiskInput): RiskDecision {
  const { score } = input;
  if (score < cfg.scoreMin) return { score, approved: false, rule: `score<${cfg.scoreMin}`, reason: "risk_declined" };
  const large = input.amountMinor >= cfg.reviewAmountMinor;
  if (large && score < cfg.reviewScoreMin) {
    return {
      score,
      approved: false,
      rule: `amount>=${cfg.reviewAmountMinor}:score<${cfg.reviewScoreMin}`,
      reason: "risk_declined",
    };
  }
  if (input.spentTodayMinor + input.amountMinor > cfg.dailySpendMaxMinor)
    return { score, approved: false, rule: "daily_limit", reason: "spend_limit_exceeded" };
  return {
    score,
    approved: true,
    rule: large ? `amount>=${cfg.reviewAmountMinor}:score>=${cfg.reviewScoreMin}` : `score>=${cfg.scoreMin}`,
  };
}

/** No report for the card holder: nothing to base credit on. */
export function noReportDecision(): RiskDecision {
  return { score: 0, approved: false, rule: "no_credit_report", reason: "risk_declined" };
}
