// The embedded store: one SQLite file on the replica's own volume, WAL with
// synchronous=FULL, every write group-committed (DESIGN.md §3). One replica
// only: nothing else can see the file, so nothing is shared.
import { assert } from "@paygate/money";
import type { GatewayStore, SeedData, SeedReport } from "../domain/ports.js";
import { createSqliteCardStore } from "./cards-store.js";
import { createSqliteCoordinatorLog } from "./coordinator-log.js";
import { getMeta, openDb, setMeta, type Db } from "./db.js";
import { createSqliteDirectory } from "./directory.js";
import { createGroupCommit } from "./group-commit.js";
import { createSqliteLeases } from "./leases.js";
import { createSqliteRateLimits } from "./rate-limits.js";
import { createSqliteSessions, createSqliteUsers } from "./users.js";
import { createSqliteWebhookStore } from "./webhooks-store.js";

const SEEDED_KEY = "seed_loaded_at";

export type SqliteStore = GatewayStore & { readonly db: Db };

export function createSqliteStore(file: string, options: { readonly maxPageCount?: number } = {}): SqliteStore {
  const db = openDb(file, options);
  const group = createGroupCommit(db);
  const log = createSqliteCoordinatorLog(db, group);
  const listeners: (() => void)[] = [];
  const insertUser = db.prepare(`INSERT INTO users (user_id, username, password_hash, roles, display_name, created_at)
    VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`);
  const insertAccount = db.prepare(
    "INSERT INTO accounts (account_id, bank, owner_user_id, currency, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
  );
  let closed = false;

  const seedOnce = db.transaction((seed: SeedData, nowMs: number): SeedReport => {
    if (getMeta(db, SEEDED_KEY) !== undefined) return { loaded: false, users: 0, accounts: 0 };
    let users = 0;
    let accounts = 0;
    for (const u of seed.users)
      users += insertUser.run(u.userId, u.username, u.passwordHash, u.roles.join(","), u.displayName, nowMs).changes;
    for (const a of seed.accounts)
      accounts += insertAccount.run(a.accountId, a.bank, a.ownerUserId, a.currency, nowMs).changes;
    setMeta(db, SEEDED_KEY, String(nowMs));
    return { loaded: true, users, accounts };
  });

  return {
    kind: "sqlite",
    shared: false,
    db,
    log,
    directory: createSqliteDirectory(db, group),
    users: createSqliteUsers(db, group),
    sessions: createSqliteSessions(db, group),
    cards: createSqliteCardStore(db, group),
    leases: createSqliteLeases(db, group),
    limits: createSqliteRateLimits(db, group),
    webhooks: createSqliteWebhookStore(db, group),
    seeded: async () => getMeta(db, SEEDED_KEY) !== undefined,
    seedOnce: async (seed, nowMs) => {
      group.flush();
      return seedOnce(seed, nowMs);
    },
    // Only this process writes the file: its own coordinator's feed is the whole story.
    onDecided: (listener) => void listeners.push(listener),
    healthy: () => !closed,
    async close() {
      if (closed) return;
      group.flush(); // queued acknowledgements
      assert(group.queued === 0, "nothing queued after the last flush");
      closed = true;
      db.close();
    },
  };
}
