// The account directory on SQLite: which bank holds an account, who owns it,
// its currency. The bank stays the truth for balances.
import type { DirectoryAccount } from "../domain/model.js";
import type { Directory } from "../domain/ports.js";
import type { Db } from "./db.js";
import type { GroupCommit } from "./group-commit.js";

interface AccountRow {
  account_id: string;
  bank: string;
  owner_user_id: string;
  currency: string;
}

const toAccount = (r: AccountRow): DirectoryAccount => ({
  accountId: r.account_id,
  bank: r.bank,
  ownerUserId: r.owner_user_id,
  currency: r.currency,
});

/** An owner's accounts listed at most; GetBalance fans out to banks per account. */
export const ACCOUNTS_PER_OWNER_MAX = 1000;
/** Found rows are kept (only unlinking removes one, and drops it here too); bounded so memory stays flat. */
const FOUND_CACHE_MAX = 50_000;

export function createSqliteDirectory(db: Db, group: GroupCommit): Directory {
  const q = {
    find: db.prepare("SELECT * FROM accounts WHERE account_id = ?"),
    owned: db.prepare("SELECT * FROM accounts WHERE owner_user_id = ? ORDER BY account_id LIMIT ?"),
    insert: db.prepare(
      "INSERT INTO accounts (account_id, bank, owner_user_id, currency, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    ),
    remove: db.prepare("DELETE FROM accounts WHERE account_id = ? RETURNING *"),
  };
  // Every transfer looks up two accounts; only hits are kept (an unknown id may be opened later).
  const found = new Map<string, DirectoryAccount>();
  return {
    async find(accountId) {
      const cached = found.get(accountId);
      if (cached) return cached;
      const r = q.find.get(accountId) as AccountRow | undefined;
      if (!r) return undefined;
      if (found.size >= FOUND_CACHE_MAX) found.clear();
      const a = toAccount(r);
      found.set(accountId, a);
      return a;
    },
    ownedBy: async (userId) => (q.owned.all(userId, ACCOUNTS_PER_OWNER_MAX) as AccountRow[]).map(toAccount),
    add: (a, nowMs) =>
      group.enqueue(() => {
        const added = q.insert.run(a.accountId, a.bank, a.ownerUserId, a.currency, nowMs).changes === 1;
        if (added) found.delete(a.accountId);
        return added;
      }),
    // One replica: this process's cache is the only one to drop.
    remove: (accountId) =>
      group.enqueue(() => {
        found.delete(accountId);
        const r = q.remove.get(accountId) as AccountRow | undefined;
        return r ? toAccount(r) : undefined;
      }),
  };
}
