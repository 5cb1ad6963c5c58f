import { test } from "node:test";
import assert from "node:assert/strict";
import { percentile, summarize } from "./stats.js";

test("nearest-rank percentiles of 1..100", () => {
  const xs = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(xs, 50), 50);
  assert.equal(percentile(xs, 90), 90);
  assert.equal(percentile(xs, 99), 99);
  assert.equal(percentile(xs, 100), 100);
  assert.equal(percentile([7], 99), 7);
  assert.ok(Number.isNaN(percentile([], 50)));
});

test("summarize sorts numerically, not as strings", () => {
  const s = summarize([10, 9, 100, 2, 1]);
  assert.equal(s.count, 5);
  assert.equal(s.p50Ms, 9);
  assert.equal(s.maxMs, 100);
  assert.equal(s.meanMs, 24.4);
});
