// Login, logout and session lookup. Tokens are 32 random bytes (base64url);
// only their sha256 is stored. Repeated failures lock a username for a while.
import { createHash, randomBytes } from "node:crypto";
import type { Caller } from "@paygate/rpc";
import { fail, ok, type Result } from "./model.js";
import { verifyPassword } from "./password.js";
import type { Clock, Sessions, UserRecord, Users } from "./ports.js";

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
  login(username: string, password: string): Promise<Result<Session>>;
  logout(token: string): void;
  authenticate(token: string): Caller | "session_expired" | "unauthenticated";
}

const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;
// Longer inputs are never valid; refusing them early bounds the scrypt work.
const USERNAME_LENGTH_MAX = 64;
const PASSWORD_LENGTH_MAX = 1024;

export const hashToken = (token: string): string => createHash("sha256").update(token).digest("hex");

export function createAuth(o: AuthOptions): Auth {
  const { users, sessions, clock } = o;
  const invalid = () => fail("invalid_credentials", "unknown username or wrong password");

  async function login(username: string, password: string): Promise<Result<Session>> {
    if (username.length > USERNAME_LENGTH_MAX || password.length > PASSWORD_LENGTH_MAX) {
      await verifyPassword("", o.dummyPasswordHash);
      return invalid();
    }
    const user = users.byUsername(username);
    if (!user) {
      await verifyPassword(password, o.dummyPasswordHash);
      return invalid();
    }
    const nowMs = clock.nowMs();
    const locked = (u: UserRecord) => fail("login_locked", "too many failed logins; try again later", { retry_after_ms: String(u.lockedUntilMs - nowMs) });
    if (user.lockedUntilMs > nowMs) return locked(user);
    const good = await verifyPassword(password, user.passwordHash);
    // Concurrent attempts may have counted failures while scrypt ran: read again.
    const fresh = users.byId(user.userId) ?? user;
    if (fresh.lockedUntilMs > nowMs) return locked(fresh);
    if (!good) {
      const failures = fresh.failedLogins + 1;
      if (failures >= o.loginFailuresMax) users.setLoginState(fresh.userId, 0, nowMs + o.loginLockoutMs);
      else users.setLoginState(fresh.userId, failures, 0);
      return invalid();
    }
    if (fresh.failedLogins !== 0 || fresh.lockedUntilMs !== 0) users.setLoginState(fresh.userId, 0, 0);
    const token = randomBytes(32).toString("base64url");
    const expiresAtMs = nowMs + o.sessionTtlMs;
    sessions.create({ tokenHash: hashToken(token), userId: fresh.userId, expiresAtMs }, nowMs);
    return ok({ token, expiresAtMs, user: fresh });
  }

  function logout(token: string): void {
    if (TOKEN_PATTERN.test(token)) sessions.revoke(hashToken(token));
  }

  function authenticate(token: string): Caller | "session_expired" | "unauthenticated" {
    if (!TOKEN_PATTERN.test(token)) return "unauthenticated";
    const tokenHash = hashToken(token);
    const session = sessions.find(tokenHash);
    if (!session) return "unauthenticated";
    if (session.expiresAtMs <= clock.nowMs()) {
      sessions.revoke(tokenHash);
      return "session_expired";
    }
    const user = users.byId(session.userId);
    if (!user) return "unauthenticated";
    return { userId: user.userId, roles: user.roles };
  }

  return { login, logout, authenticate };
}
