// The Redis adapter against a real redis-server (started by the testkit on a
// free port): the SET NX GET claim, compare-and-swap/delete, TTLs, and that a
// dead Redis makes commands fail (not wait) and a restarted one is used again.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { RedisServer } from "@paygate/testkit";
import { createRedisCache, redactUrl, type RedisCache } from "./redis-cache.js";

let redis: RedisServer;
let cache: RedisCache;
const warnings: string[] = [];
const logger = { info: () => {}, warn: (_f: object, msg: string) => void warnings.push(msg), error: () => {} };

async function until(what: string, cond: () => boolean | Promise<boolean>, attemptsMax = 200): Promise<void> {
  for (let i = 0; i < attemptsMax; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`gave up waiting for ${what}`);
}

before(async () => {
  redis = await RedisServer.start();
  // Generous: a busy test machine must not turn a slow reply into a failed assertion.
  cache = createRedisCache({ url: redis.url, logger, commandTimeoutMs: 5_000 });
  await until("the first connection", () => cache.ready);
});
after(async () => {
  await cache?.close();
  await redis?.close();
});

test("claim is SET NX: the first caller gets the key, later ones see its value", async () => {
  assert.equal(await cache.claim("idem:alice:k1", "first", 60_000), undefined);
  assert.equal(await cache.claim("idem:alice:k1", "second", 60_000), "first");
  assert.equal(await redis.get("idem:alice:k1"), "first");
  const pttl = Number(await redis.command("PTTL", "idem:alice:k1"));
  assert.ok(pttl > 0 && pttl <= 60_000, `PTTL ${pttl}`);
});

test("swap and release only act on the expected value", async () => {
  await cache.claim("idem:alice:k2", "mine", 60_000);
  assert.equal(await cache.swap("idem:alice:k2", "theirs", "new", 60_000), false);
  assert.equal(await cache.swap("idem:alice:k2", "mine", "new", 60_000), true);
  assert.equal(await redis.get("idem:alice:k2"), "new");
  await cache.release("idem:alice:k2", "mine");
  assert.equal(await redis.get("idem:alice:k2"), "new", "someone else's value stays");
  await cache.release("idem:alice:k2", "new");
  assert.equal(await redis.get("idem:alice:k2"), undefined);
  assert.equal(await cache.swap("idem:alice:k2", "new", "x", 60_000), false, "nothing to swap");
});

test("put overwrites with the given TTL", async () => {
  await cache.claim("idem:alice:k3", "claim", 1_000);
  await cache.put("idem:alice:k3", "done", 86_400_000);
  assert.equal(await redis.get("idem:alice:k3"), "done");
  assert.ok(Number(await redis.command("PTTL", "idem:alice:k3")) > 1_000);
});

test("Redis killed: commands reject instead of waiting; after a restart the cache works again", async () => {
  await redis.crash();
  await until("the client to notice", () => !cache.ready);
  await assert.rejects(cache.claim("idem:alice:k4", "v", 60_000));
  await assert.rejects(cache.put("idem:alice:k4", "v", 60_000));
  await assert.rejects(cache.release("idem:alice:k4", "v"));
  assert.ok(
    warnings.some((w) => w.includes("disconnected") || w.includes("unavailable")),
    warnings.join("\n"),
  );
  await redis.restart();
  await until("the reconnect", () => cache.ready);
  assert.equal(
    await cache.claim("idem:alice:k4", "v", 60_000),
    undefined,
    "the restarted Redis is empty (no persistence)",
  );
});

test("a password in REDIS_URL never reaches a log line", () => {
  assert.equal(redactUrl("redis://user:s3cret@redis:6379/0"), "redis://user:***@redis:6379/0");
  assert.equal(redactUrl("redis://redis:6379"), "redis://redis:6379");
});
