import { test } from "node:test";
import assert from "node:assert/strict";
import { createSqliteStore } from "../store/sqlite-store.js";
import { createAuth, hashToken, type Auth } from "./auth.js";
import {
  createManualClock,
  createMemorySessions,
  createMemoryUsers,
  type ManualClock,
} from "../../test-support/fakes.js";
import { hashPassword } from "./password.js";
import type { Sessions, Users } from "./ports.js";

const FAST = { N: 1024, r: 8, p: 1 };
/** Who is asking: address and certificate identity, as routes.ts names a client. */
const CLIENT_A = "10.0.0.7 paycli";
const CLIENT_B = "10.0.0.9 paycli";

interface Harness {
  auth: Auth;
  users: Users;
  sessions: Sessions;
  clock: ManualClock;
  /** Another replica on the same users and sessions. */
  replica(): Promise<Auth>;
}

async function setup(
  store: { users: Users; sessions: Sessions } = { users: createMemoryUsers(), sessions: createMemorySessions() },
): Promise<Harness> {
  const { users, sessions } = store;
  const clock = createManualClock();
  assert.ok(
    await users.create(
      {
        userId: "alice",
        username: "alice",
        passwordHash: await hashPassword("alice-password", FAST),
        roles: ["customer"],
        displayName: "Alice",
      },
      clock.nowMs(),
    ),
  );
  const make = async () =>
    createAuth({
      users,
      sessions,
      clock,
      sessionTtlMs: 60_000,
      loginFailuresMax: 3,
      loginLockoutMs: 300_000,
      dummyPasswordHash: await hashPassword("dummy-password", FAST),
    });
  return { auth: await make(), users, sessions, clock, replica: make };
}

/** The same rules on the SQLite store (one statement counts a failure). */
function sqliteSetup(): Promise<Harness> {
  const store = createSqliteStore(":memory:");
  return setup(store);
}

const failuresOf = async (h: Harness, client: string) => (await h.users.loginFailures("alice", client)).failures;
const loginReason = async (auth: Auth, password: string, client: string) => {
  const r = await auth.login("alice", password, client);
  return r.ok ? "ok" : r.reason;
};

test("login returns a random token whose hash (only) is stored; authenticate finds the caller", async () => {
  const { auth, sessions, clock } = await setup();
  const memory = sessions as ReturnType<typeof createMemorySessions>;
  const r = await auth.login("alice", "alice-password", CLIENT_A);
  assert.ok(r.ok);
  assert.match(r.value.token, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(r.value.expiresAtMs, clock.nowMs() + 60_000);
  assert.equal(memory.rows.has(r.value.token), false);
  assert.ok(memory.rows.has(hashToken(r.value.token)));
  assert.deepEqual(await auth.authenticate(r.value.token), { userId: "alice", roles: ["customer"] });
  assert.equal(await auth.authenticate("A".repeat(43)), "unauthenticated");
  assert.equal(await auth.authenticate("not a token"), "unauthenticated");
});

test("unknown user and wrong password fail the same way", async () => {
  const { auth } = await setup();
  const a = await auth.login("mallory", "whatever-pass", CLIENT_A);
  const b = await auth.login("alice", "wrong-password", CLIENT_A);
  assert.ok(!a.ok && !b.ok);
  assert.equal(a.reason, "invalid_credentials");
  assert.deepEqual([a.reason, a.message], [b.reason, b.message]);
});

test("N failures lock the login for the lockout period, even for the right password", async () => {
  const { auth, clock } = await setup();
  for (let i = 0; i < 2; i++) assert.equal(await loginReason(auth, `wrong-${i}`, CLIENT_A), "invalid_credentials");
  // The failure that reaches the maximum already answers with the lock.
  assert.equal(await loginReason(auth, "wrong-2", CLIENT_A), "login_locked");
  const locked = await auth.login("alice", "alice-password", CLIENT_A);
  assert.ok(!locked.ok);
  assert.equal(locked.reason, "login_locked");
  assert.equal(locked.metadata?.retry_after_ms, "300000");
  clock.advance(299_999);
  assert.equal((await auth.login("alice", "alice-password", CLIENT_A)).ok, false);
  clock.advance(1);
  assert.equal((await auth.login("alice", "alice-password", CLIENT_A)).ok, true);
});

test("a success resets the failure count", async () => {
  const h = await setup();
  await h.auth.login("alice", "wrong-1", CLIENT_A);
  await h.auth.login("alice", "wrong-2", CLIENT_A);
  assert.equal(await failuresOf(h, CLIENT_A), 2);
  assert.ok((await h.auth.login("alice", "alice-password", CLIENT_A)).ok);
  assert.equal(await failuresOf(h, CLIENT_A), 0);
  await h.auth.login("alice", "wrong-3", CLIENT_A);
  await h.auth.login("alice", "wrong-4", CLIENT_A);
  assert.ok((await h.auth.login("alice", "alice-password", CLIENT_A)).ok, "two failures after a reset do not lock");
});

test("sessions expire after the TTL and logout revokes them", async () => {
  const { auth, clock } = await setup();
  const first = await auth.login("alice", "alice-password", CLIENT_A);
  const second = await auth.login("alice", "alice-password", CLIENT_A);
  assert.ok(first.ok && second.ok);
  clock.advance(59_999);
  assert.notEqual(typeof (await auth.authenticate(first.value.token)), "string");
  clock.advance(1);
  assert.equal(await auth.authenticate(first.value.token), "session_expired");
  assert.equal(await auth.authenticate(first.value.token), "unauthenticated", "an expired session is deleted");

  const third = await auth.login("alice", "alice-password", CLIENT_A);
  assert.ok(third.ok);
  await auth.logout(third.value.token);
  assert.equal(await auth.authenticate(third.value.token), "unauthenticated");
});

// ---- issue 13 #8: the lockout costs the attacker, not the customer -------------

for (const [store, make] of [
  ["memory", () => setup()],
  ["sqlite", sqliteSetup],
] as const) {
  test(`lockout (${store}): failures from client A lock (alice, A) only; alice still logs in from client B`, async () => {
    const h = await make();
    for (let i = 0; i < 3; i++) await h.auth.login("alice", `guess-${i}`, CLIENT_A);
    assert.equal(
      await loginReason(h.auth, "alice-password", CLIENT_A),
      "login_locked",
      "the guessing client is locked",
    );
    // Before the fix the lock was on the username: the customer was locked out too.
    assert.equal(await loginReason(h.auth, "alice-password", CLIENT_B), "ok");
    assert.equal(await failuresOf(h, CLIENT_B), 0);
    // B's own failures count apart from A's.
    await h.auth.login("alice", "typo-1", CLIENT_B);
    await h.auth.login("alice", "typo-2", CLIENT_B);
    assert.equal(await failuresOf(h, CLIENT_B), 2);
    assert.equal(await loginReason(h.auth, "alice-password", CLIENT_B), "ok", "two failures do not lock B");
    assert.ok((await h.users.loginFailures("alice", CLIENT_A)).lockedUntilMs > h.clock.nowMs(), "A stays locked");
  });

  test(`lockout (${store}): concurrent failures all count, on every replica`, async () => {
    const h = await make();
    const other = await h.replica();
    // Five wrong guesses at once, spread over two replicas of one store.
    const reasons = await Promise.all(
      [h.auth, other, h.auth, other, h.auth].map((auth, i) => loginReason(auth, `guess-${i}`, CLIENT_A)),
    );
    assert.equal(reasons.filter((r) => r === "invalid_credentials").length, 2, reasons.join());
    assert.equal(reasons.filter((r) => r === "login_locked").length, 3, reasons.join());
    assert.equal(
      await loginReason(other, "alice-password", CLIENT_A),
      "login_locked",
      "every guess counted, whichever replica took it",
    );
    assert.equal(await loginReason(h.auth, "alice-password", CLIENT_A), "login_locked");
    assert.equal(await loginReason(other, "alice-password", CLIENT_B), "ok");
  });
}
