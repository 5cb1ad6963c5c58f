import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffCeilingMs, createSeededRandom, fullJitterDelayMs } from "./backoff.js";

const policy = { baseMs: 5000, capMs: 300_000 };

test("the ceiling doubles from the base and stops at the cap", () => {
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 7].map((a) => backoffCeilingMs(a, policy)),
    [5000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000],
  );
  // Far past any exponent a double can hold: still the cap, never Infinity or NaN.
  assert.equal(backoffCeilingMs(1000, policy), 300_000);
  assert.equal(backoffCeilingMs(51, { baseMs: 1, capMs: Number.MAX_SAFE_INTEGER }), 2 ** 51);
});

test("a bad attempt number is a programmer error", () => {
  assert.throws(() => backoffCeilingMs(-1, policy), /attempt/);
  assert.throws(() => backoffCeilingMs(1.5, policy), /attempt/);
});

test("full jitter: the extremes of random() map to 0 and to the ceiling", () => {
  assert.equal(
    fullJitterDelayMs(3, policy, () => 0),
    0,
  );
  assert.equal(
    fullJitterDelayMs(3, policy, () => 0.9999999999),
    40_000,
  );
  assert.equal(
    fullJitterDelayMs(30, policy, () => 0.9999999999),
    300_000,
  );
  assert.equal(
    fullJitterDelayMs(1, policy, () => 0.5),
    5000,
  );
  assert.throws(() => fullJitterDelayMs(1, policy, () => 1), /random/);
});

test("full jitter: seeded draws stay in [0, min(cap, base*2^attempt)] and spread over the range", () => {
  const seed = 20260501;
  const random = createSeededRandom(seed);
  for (let attempt = 0; attempt < 12; attempt++) {
    const ceiling = backoffCeilingMs(attempt, policy);
    let low = 0;
    let high = 0;
    for (let i = 0; i < 500; i++) {
      const d = fullJitterDelayMs(attempt, policy, random);
      assert.ok(
        Number.isInteger(d) && d >= 0 && d <= ceiling,
        `seed ${seed} attempt ${attempt}: ${d} outside [0, ${ceiling}]`,
      );
      if (d < ceiling / 4) low++;
      if (d > (ceiling * 3) / 4) high++;
    }
    // Full jitter, not "ceiling minus a little": both ends of the range get used.
    assert.ok(low > 50 && high > 50, `seed ${seed} attempt ${attempt}: draws not spread (low ${low}, high ${high})`);
  }
});

test("the seeded generator replays the same sequence for the same seed", () => {
  const a = createSeededRandom(7);
  const b = createSeededRandom(7);
  const c = createSeededRandom(8);
  const sa = [a(), a(), a()];
  assert.deepEqual(sa, [b(), b(), b()]);
  assert.notDeepEqual(sa, [c(), c(), c()]);
  for (const v of sa) assert.ok(v >= 0 && v < 1);
});
