// Users, login failures and sessions on SQLite. Writes go through group
// commit (durable before they resolve); reads see what is committed.
import type { LoginFailures, SessionRecord, Sessions, UserRecord, Users } from "../domain/ports.js";
import { num, type Db } from "./db.js";
import type { GroupCommit } from "./group-commit.js";

interface UserRow {
  user_id: string;
  username: string;
  password_hash: string;
  roles: string;
  display_name: string;
}

const toUser = (r: UserRow): UserRecord => ({
  userId: r.user_id,
  username: r.username,
  passwordHash: r.password_hash,
  roles: r.roles.split(",").filter(Boolean),
  displayName: r.display_name,
});

const NO_FAILURES: LoginFailures = { failures: 0, lockedUntilMs: 0 };

export function createSqliteUsers(db: Db, group: GroupCommit): Users {
  const q = {
    byUsername: db.prepare("SELECT * FROM users WHERE username = ?"),
    byId: db.prepare("SELECT * FROM users WHERE user_id = ?"),
    insert: db.prepare(`INSERT INTO users (user_id, username, password_hash, roles, display_name, created_at)
      VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`),
    failures: db.prepare("SELECT failures, locked_until FROM login_failures WHERE user_id = ? AND client = ?"),
    // One statement: concurrent failures all count; at the maximum the pair locks and the count restarts.
    fail: db.prepare(`INSERT INTO login_failures (user_id, client, failures, locked_until) VALUES (@user, @client, 1, 0)
      ON CONFLICT (user_id, client) DO UPDATE SET failures = failures + 1
      RETURNING failures, locked_until`),
    lock: db.prepare(
      "UPDATE login_failures SET failures = 0, locked_until = @until WHERE user_id = @user AND client = @client RETURNING failures, locked_until",
    ),
    clear: db.prepare("DELETE FROM login_failures WHERE user_id = ? AND client = ?"),
  };
  const toFailures = (r: { failures: bigint; locked_until: bigint } | undefined): LoginFailures =>
    r ? { failures: num(r.failures), lockedUntilMs: num(r.locked_until) } : NO_FAILURES;
  return {
    async byUsername(username) {
      const r = q.byUsername.get(username) as UserRow | undefined;
      return r ? toUser(r) : undefined;
    },
    async byId(userId) {
      const r = q.byId.get(userId) as UserRow | undefined;
      return r ? toUser(r) : undefined;
    },
    create: (user, nowMs) =>
      group.enqueue(() => {
        if (
          q.insert.run(user.userId, user.username, user.passwordHash, user.roles.join(","), user.displayName, nowMs)
            .changes === 1
        )
          return true;
        // A re-run after a lost batch finds its own row.
        const r = q.byId.get(user.userId) as UserRow | undefined;
        return r !== undefined && r.username === user.username && r.password_hash === user.passwordHash;
      }),
    loginFailures: async (userId, client) =>
      toFailures(q.failures.get(userId, client) as { failures: bigint; locked_until: bigint } | undefined),
    recordLoginFailure: (userId, client, nowMs, failuresMax, lockMs) =>
      group.enqueue(() => {
        const p = { user: userId, client };
        const after = toFailures(q.fail.get(p) as { failures: bigint; locked_until: bigint });
        return after.failures >= failuresMax
          ? toFailures(q.lock.get({ ...p, until: nowMs + lockMs }) as { failures: bigint; locked_until: bigint })
          : after;
      }),
    clearLoginFailures: (userId, client) => group.enqueue(() => void q.clear.run(userId, client)),
  };
}

export function createSqliteSessions(db: Db, group: GroupCommit): Sessions {
  const q = {
    insert: db.prepare(
      "INSERT INTO sessions (token_hash, user_id, expires_at, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (token_hash) DO NOTHING",
    ),
    find: db.prepare("SELECT * FROM sessions WHERE token_hash = ?"),
    revoke: db.prepare("DELETE FROM sessions WHERE token_hash = ?"),
    purge: db.prepare(
      "DELETE FROM sessions WHERE token_hash IN (SELECT token_hash FROM sessions WHERE expires_at <= ? LIMIT ?)",
    ),
  };
  return {
    create: (s, nowMs) => group.enqueue(() => void q.insert.run(s.tokenHash, s.userId, s.expiresAtMs, nowMs)),
    async find(tokenHash): Promise<SessionRecord | undefined> {
      const r = q.find.get(tokenHash) as { token_hash: string; user_id: string; expires_at: bigint } | undefined;
      return r ? { tokenHash: r.token_hash, userId: r.user_id, expiresAtMs: num(r.expires_at) } : undefined;
    },
    revoke: (tokenHash) => group.enqueue(() => void q.revoke.run(tokenHash)),
    purgeExpired: (nowMs, limit) => group.enqueue(() => q.purge.run(nowMs, limit).changes),
  };
}
