// Sign-up's rules and its rate limit, against in-memory ports.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createManualClock, createMemoryRateLimits, createMemoryUsers } from "../../test-support/fakes.js";
import type { Result } from "./model.js";
import { isCommonPassword } from "./new-users.js";
import { createSignUp } from "./sign-up.js";

const CLIENT = "10.0.0.7 spiffe://paygate.local/client/paycli";
const reasonOf = (r: Result<unknown>) => (r.ok ? "ok" : r.reason);

function setup(attemptsMax = 100) {
  const users = createMemoryUsers();
  const clock = createManualClock();
  const signUp = createSignUp({
    users,
    limits: createMemoryRateLimits(),
    clock,
    hashPassword: async (pw) => `hash:${pw}`,
    attemptsMax,
    windowMs: 60_000,
  });
  const register = (username: string, password = "a-long-enough-passphrase", displayName = "", client = CLIENT) =>
    signUp.register({ username, password, displayName }, client);
  return { users, clock, register };
}

test("sign-up creates a customer with no accounts, its password hashed, its display name defaulting to the username", async () => {
  const { users, register } = setup();
  const r = await register("dana", "a-long-enough-passphrase", "  Dana Newcomer ");
  assert.ok(r.ok);
  assert.deepEqual(r.value, {
    userId: "dana",
    username: "dana",
    passwordHash: "hash:a-long-enough-passphrase",
    roles: ["customer"],
    displayName: "Dana Newcomer",
  });
  assert.deepEqual(users.rows.get("dana")?.roles, ["customer"]);
  const dotted = await register("erin.e");
  assert.ok(dotted.ok && /^u-[0-9a-f]{16}$/.test(dotted.value.userId) && dotted.value.displayName === "erin.e");
});

test("each rule has its own reason: username shape, taken, password too short or too common, display name", async () => {
  const { register } = setup();
  assert.equal(reasonOf(await register("dana")), "ok");
  const cases: [string, Promise<Result<unknown>>][] = [
    ["invalid_username", register("Dana")],
    ["invalid_username", register("da")],
    ["invalid_username", register("1dana")],
    ["invalid_username", register("d".repeat(33))],
    ["username_taken", register("dana")],
    ["weak_password", register("frank", "short")],
    ["weak_password", register("frank", "🔑".repeat(9))],
    ["weak_password", register("frank", "x".repeat(1025))],
    ["common_password", register("frank", "Password123")],
    ["common_password", register("frank", "qwertyuiop")],
    ["common_password", register("frankfrank", "FrankFrank")],
    ["common_password", register("frank", "zzzzzzzzzzzz")],
    ["invalid_display_name", register("frank", undefined, "x".repeat(101))],
    ["invalid_display_name", register("frank", undefined, "Frank\x1b[2J")],
    ["invalid_display_name", register("frank", undefined, "Frank\u202eknarF")],
  ];
  for (const [want, p] of cases) assert.equal(reasonOf(await p), want);
  assert.equal(reasonOf(await register("frank", "🔑🗝️🔒🔓🔐🔑🗝️🔒🔓")), "ok", "ten characters, not ten UTF-16 units");
  assert.ok(!isCommonPassword("correct horse battery staple", "frank"));
});

test("concurrent sign-ups of one username: exactly one wins", async () => {
  const { register } = setup();
  const answers = await Promise.all(Array.from({ length: 5 }, (_, i) => register("gina", `gina-passphrase-${i}`)));
  assert.deepEqual(answers.map(reasonOf).sort(), [
    "ok",
    "username_taken",
    "username_taken",
    "username_taken",
    "username_taken",
  ]);
});

test("rate limit per client: every attempt counts (invalid ones too), past the maximum rate_limited says when to retry; other clients are not affected", async () => {
  const { clock, register } = setup(3);
  assert.equal(reasonOf(await register("Bad Name")), "invalid_username");
  assert.equal(reasonOf(await register("hana")), "ok");
  assert.equal(reasonOf(await register("hana")), "username_taken");
  const limited = await register("ivan");
  assert.equal(reasonOf(limited), "rate_limited");
  assert.ok(!limited.ok && Number(limited.metadata?.retry_after_ms) === 60_000);
  assert.equal(
    reasonOf(await register("ivan", undefined, "", "10.0.0.8 spiffe://paygate.local/client/paycli")),
    "ok",
    "another client",
  );
  clock.advance(60_000);
  assert.equal(reasonOf(await register("jack")), "ok", "a new window");
});
