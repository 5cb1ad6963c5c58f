import { test } from "node:test";
import assert from "node:assert/strict";
import { evaluateRisk, utcDayStartMs, type RiskConfig } from "./risk.js";

const CFG: RiskConfig = {
  scoreMin: 600,
  reviewAmountMinor: 50_000n,
  reviewScoreMin: 700,
  dailySpendMaxMinor: 500_000n,
};
const decide = (score: number, amountMinor: bigint, spentTodayMinor = 0n) =>
  evaluateRisk(CFG, { score, amountMinor, spentTodayMinor });

test("score thresholds: below the minimum declines; large amounts need the review score", () => {
  assert.deepEqual(decide(599, 100n), { score: 599, approved: false, rule: "score<600", reason: "risk_declined" });
  assert.deepEqual(decide(600, 100n), { score: 600, approved: true, rule: "score>=600" });
  assert.deepEqual(decide(699, 49_999n), { score: 699, approved: true, rule: "score>=600" });
  assert.deepEqual(decide(699, 50_000n), {
    score: 699,
    approved: false,
    rule: "amount>=50000:score<700",
    reason: "risk_declined",
  });
  assert.deepEqual(decide(700, 50_000n), { score: 700, approved: true, rule: "amount>=50000:score>=700" });
});

test("the daily limit counts what is already authorized today, up to and including the maximum", () => {
  assert.equal(decide(800, 100_000n, 400_000n).approved, true, "exactly the maximum");
  assert.deepEqual(decide(800, 100_001n, 400_000n), {
    score: 800,
    approved: false,
    rule: "daily_limit",
    reason: "spend_limit_exceeded",
  });
  assert.deepEqual(decide(800, 500_001n), {
    score: 800,
    approved: false,
    rule: "daily_limit",
    reason: "spend_limit_exceeded",
  });
  // A bad score is the reason even when the limit is also exceeded.
  assert.equal(decide(500, 600_000n).reason, "risk_declined");
});

test("the UTC day starts at midnight UTC", () => {
  const t = Date.UTC(2026, 0, 15, 23, 59, 59, 999);
  assert.equal(utcDayStartMs(t), Date.UTC(2026, 0, 15));
  assert.equal(utcDayStartMs(Date.UTC(2026, 0, 16)), Date.UTC(2026, 0, 16));
});
