// REDIS_URL and IDEMPOTENCY_TTL as config.ts reads them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError } from "@paygate/config";
import { loadConfig, parseDurationMs } from "../config.js";

test("without REDIS_URL there is no fast path; the TTL defaults to 24 h", () => {
  const c = loadConfig({}, "/srv");
  assert.equal(c.redisUrl, undefined);
  assert.equal(c.idempotencyTtlMs, 24 * 3_600_000);
  assert.equal(c.redisCommandTimeoutMs, 200);
});

test("REDIS_URL and IDEMPOTENCY_TTL are read", () => {
  const c = loadConfig({ REDIS_URL: "redis://redis:6379/0", IDEMPOTENCY_TTL: "7d" }, "/srv");
  assert.equal(c.redisUrl, "redis://redis:6379/0");
  assert.equal(c.idempotencyTtlMs, 7 * 24 * 3_600_000);
});

test("durations: units, bare milliseconds, and garbage", () => {
  assert.equal(parseDurationMs("90m"), 5_400_000);
  assert.equal(parseDurationMs("30s"), 30_000);
  assert.equal(parseDurationMs("500ms"), 500);
  assert.equal(parseDurationMs("86400000"), 86_400_000);
  for (const bad of ["", "1.5h", "-1h", "24 hours", "h"]) assert.equal(parseDurationMs(bad), undefined, bad);
});

test("a bad REDIS_URL and a bad TTL are reported together", () => {
  assert.throws(
    () => loadConfig({ REDIS_URL: "localhost:6379", IDEMPOTENCY_TTL: "500ms" }),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.problems.some((p) => p.startsWith("REDIS_URL")) &&
      e.problems.some((p) => p.startsWith("IDEMPOTENCY_TTL")),
  );
});
