import { test } from "node:test";
import assert from "node:assert/strict";
import { createAuth, hashToken } from "./auth.js";
import { createManualClock, createMemorySessions, createMemoryUsers } from "./fakes.js";
import { hashPassword } from "./password.js";

const FAST = { N: 1024, r: 8, p: 1 };

async function setup() {
  const users = createMemoryUsers();
  const sessions = createMemorySessions();
  const clock = createManualClock();
  users.create({ userId: "alice", username: "alice", passwordHash: await hashPassword("alice-password", FAST), roles: ["customer"], displayName: "Alice" }, clock.nowMs());
  const auth = createAuth({
    users,
    sessions,
    clock,
    sessionTtlMs: 60_000,
    loginFailuresMax: 3,
    loginLockoutMs: 300_000,
    dummyPasswordHash: await hashPassword("dummy-password", FAST),
  });
  return { auth, users, sessions, clock };
}

test("login returns a random token whose hash (only) is stored; authenticate finds the caller", async () => {
  const { auth, sessions, clock } = await setup();
  const r = await auth.login("alice", "alice-password");
  assert.ok(r.ok);
  assert.match(r.value.token, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(r.value.expiresAtMs, clock.nowMs() + 60_000);
  assert.equal(sessions.rows.has(r.value.token), false);
  assert.ok(sessions.rows.has(hashToken(r.value.token)));
  assert.deepEqual(auth.authenticate(r.value.token), { userId: "alice", roles: ["customer"] });
  assert.equal(auth.authenticate("A".repeat(43)), "unauthenticated");
  assert.equal(auth.authenticate("not a token"), "unauthenticated");
});

test("unknown user and wrong password fail the same way", async () => {
  const { auth } = await setup();
  const a = await auth.login("mallory", "whatever-pass");
  const b = await auth.login("alice", "wrong-password");
  assert.ok(!a.ok && !b.ok);
  assert.equal(a.reason, "invalid_credentials");
  assert.deepEqual([a.reason, a.message], [b.reason, b.message]);
});

test("N failures lock the login for the lockout period, even for the right password", async () => {
  const { auth, clock } = await setup();
  for (let i = 0; i < 3; i++) {
    const r = await auth.login("alice", `wrong-${i}`);
    assert.ok(!r.ok && r.reason === "invalid_credentials");
  }
  const locked = await auth.login("alice", "alice-password");
  assert.ok(!locked.ok);
  assert.equal(locked.reason, "login_locked");
  clock.advance(299_999);
  assert.equal((await auth.login("alice", "alice-password")).ok, false);
  clock.advance(1);
  assert.equal((await auth.login("alice", "alice-password")).ok, true);
});

test("a success resets the failure count", async () => {
  const { auth, users } = await setup();
  await auth.login("alice", "wrong-1");
  await auth.login("alice", "wrong-2");
  assert.equal(users.byId("alice")?.failedLogins, 2);
  assert.ok((await auth.login("alice", "alice-password")).ok);
  assert.equal(users.byId("alice")?.failedLogins, 0);
  await auth.login("alice", "wrong-3");
  await auth.login("alice", "wrong-4");
  assert.ok((await auth.login("alice", "alice-password")).ok, "two failures after a reset do not lock");
});

test("sessions expire after the TTL and logout revokes them", async () => {
  const { auth, clock } = await setup();
  const first = await auth.login("alice", "alice-password");
  const second = await auth.login("alice", "alice-password");
  assert.ok(first.ok && second.ok);
  clock.advance(59_999);
  assert.notEqual(typeof auth.authenticate(first.value.token), "string");
  clock.advance(1);
  assert.equal(auth.authenticate(first.value.token), "session_expired");
  assert.equal(auth.authenticate(first.value.token), "unauthenticated", "an expired session is deleted");

  const third = await auth.login("alice", "alice-password");
  assert.ok(third.ok);
  auth.logout(third.value.token);
  assert.equal(auth.authenticate(third.value.token), "unauthenticated");
});
