// Login, logout and session lookup. Tokens are 32 random bytes (base64url);
// only their sha256 is stored. Repeated failures lock a username for a while
// from the client that made them (its address and certificate), not for
// everyone: a stranger guessing passwords locks out only itself, never the
// customer. Failures from every replica count together (the store keeps them).
import { createHash, randomBytes } from "node:crypto";
import type { Caller } from "@paygate/vocab";
import { fail, ok, type Result } from "./model.js";
import { verifyPassword } from "./password.js";
import type { Clock, LoginFailures, Sessions, UserRecord, Users } from "./ports.js";

export interface AuthOptions {
  readonly users: Users;
  readonly sessions: Sessions;
  readonly clock: Clock;
  readonly sessionTtlMs: number;
  readonly loginFailuresMax: number;
  readonly loginLockoutMs: number;
  /**
   * A hash of a random password with the same cost as real ones: unknown
   * usernames pay the same scrypt as wrong passwords.
   */
  readonly dummyPasswordHash: string;
}

export interface Session {
  readonly token: string;
  readonly expiresAtMs: number;
  readonly user: UserRecord;
}

export interface Auth {
  /** `client` names who is asking (address and certificate identity): lockouts are per username and client. */
  login(username: string, password: string, client: string): Promise<Result<Session>>;
  logout(token: string): Promise<void>;
  authenticate(token: string): Promise<Caller | "session_expired" | "unauthenticated">;
}

const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;
// Longer inputs are never valid; refusing them early bounds the scrypt work.
const USERNAME_LENGTH_MAX = 64;
const PASSWORD_LENGTH_MAX = 1024;

export const hashToken = (token: string): string => createHash("sha256").update(token).digest("hex");

export function createAuth(o: AuthOptions): Auth {
  const { users, sessions, clock } = o;
  const invalid = () => fail("invalid_credentials", "unknown username or wrong password");

  async function login(username: string, password: string, client: string): Promise<Result<Session>> {
    if (username.length > USERNAME_LENGTH_MAX || password.length > PASSWORD_LENGTH_MAX) {
      await verifyPassword("", o.dummyPasswordHash);
      return invalid();
    }
    const user = await users.byUsername(username);
    if (!user) {
      await verifyPassword(password, o.dummyPasswordHash);
      return invalid();
    }
    const nowMs = clock.nowMs();
    const locked = (f: LoginFailures) =>
      fail("login_locked", "too many failed logins from this client; try again later", {
        retry_after_ms: String(f.lockedUntilMs - nowMs),
      });
    const before = await users.loginFailures(user.userId, client);
    if (before.lockedUntilMs > nowMs) return locked(before);
    const good = await verifyPassword(password, user.passwordHash);
    if (!good) {
      // Counted atomically in the store: concurrent attempts (on any replica) all count.
      const after = await users.recordLoginFailure(user.userId, client, nowMs, o.loginFailuresMax, o.loginLockoutMs);
      return after.lockedUntilMs > nowMs ? locked(after) : invalid();
    }
    // A lock that began while scrypt ran still holds.
    const now = await users.loginFailures(user.userId, client);
    if (now.lockedUntilMs > nowMs) return locked(now);
    if (now.failures !== 0) await users.clearLoginFailures(user.userId, client);
    const token = randomBytes(32).toString("base64url");
    const expiresAtMs = nowMs + o.sessionTtlMs;
    await sessions.create({ tokenHash: hashToken(token), userId: user.userId, expiresAtMs }, nowMs);
    return ok({ token, expiresAtMs, user });
  }

  async function logout(token: string): Promise<void> {
    if (TOKEN_PATTERN.test(token)) await sessions.revoke(hashToken(token));
  }

  async function authenticate(token: string): Promise<Caller | "session_expired" | "unauthenticated"> {
    if (!TOKEN_PATTERN.test(token)) return "unauthenticated";
    const tokenHash = hashToken(token);
    const session = await sessions.find(tokenHash);
    if (!session) return "unauthenticated";
    if (session.expiresAtMs <= clock.nowMs()) {
      await sessions.revoke(tokenHash);
      return "session_expired";
    }
    const user = await users.byId(session.userId);
    if (!user) return "unauthenticated";
    return { userId: user.userId, roles: user.roles };
  }

  return { login, logout, authenticate };
}
