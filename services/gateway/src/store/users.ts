// Users and sessions on SQLite.
import type { SessionRecord, Sessions, UserRecord, Users } from "../domain/ports.js";
import { num, type Db } from "./db.js";

interface UserRow {
  user_id: string;
  username: string;
  password_hash: string;
  roles: string;
  display_name: string;
  failed_logins: bigint;
  locked_until: bigint;
}

const toUser = (r: UserRow): UserRecord => ({
  userId: r.user_id,
  username: r.username,
  passwordHash: r.password_hash,
  roles: r.roles.split(",").filter(Boolean),
  displayName: r.display_name,
  failedLogins: num(r.failed_logins),
  lockedUntilMs: num(r.locked_until),
});

export function createSqliteUsers(db: Db): Users {
  const q = {
    byUsername: db.prepare("SELECT * FROM users WHERE username = ?"),
    byId: db.prepare("SELECT * FROM users WHERE user_id = ?"),
    insert: db.prepare(`INSERT INTO users (user_id, username, password_hash, roles, display_name, created_at)
      VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`),
    loginState: db.prepare("UPDATE users SET failed_logins = ?, locked_until = ? WHERE user_id = ?"),
  };
  return {
    byUsername(username) {
      const r = q.byUsername.get(username) as UserRow | undefined;
      return r ? toUser(r) : undefined;
    },
    byId(userId) {
      const r = q.byId.get(userId) as UserRow | undefined;
      return r ? toUser(r) : undefined;
    },
    create(user, nowMs) {
      return q.insert.run(user.userId, user.username, user.passwordHash, user.roles.join(","), user.displayName, nowMs).changes === 1;
    },
    setLoginState(userId, failedLogins, lockedUntilMs) {
      q.loginState.run(failedLogins, lockedUntilMs, userId);
    },
  };
}

export function createSqliteSessions(db: Db): Sessions {
  const q = {
    insert: db.prepare("INSERT INTO sessions (token_hash, user_id, expires_at, created_at) VALUES (?, ?, ?, ?)"),
    find: db.prepare("SELECT * FROM sessions WHERE token_hash = ?"),
    revoke: db.prepare("DELETE FROM sessions WHERE token_hash = ?"),
    purge: db.prepare("DELETE FROM sessions WHERE token_hash IN (SELECT token_hash FROM sessions WHERE expires_at <= ? LIMIT ?)"),
  };
  return {
    create(s, nowMs) {
      q.insert.run(s.tokenHash, s.userId, s.expiresAtMs, nowMs);
    },
    find(tokenHash): SessionRecord | undefined {
      const r = q.find.get(tokenHash) as { token_hash: string; user_id: string; expires_at: bigint } | undefined;
      return r ? { tokenHash: r.token_hash, userId: r.user_id, expiresAtMs: num(r.expires_at) } : undefined;
    },
    revoke(tokenHash) {
      q.revoke.run(tokenHash);
    },
    purgeExpired: (nowMs, limit) => q.purge.run(nowMs, limit).changes,
  };
}
