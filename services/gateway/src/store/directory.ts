// The account directory on SQLite: which bank holds an account, who owns it,
// its currency. The bank stays the truth for balances.
import type { DirectoryAccount } from "../domain/model.js";
import type { Directory } from "../domain/ports.js";
import type { Db } from "./db.js";

interface AccountRow {
  account_id: string;
  bank: string;
  owner_user_id: string;
  currency: string;
}

const toAccount = (r: AccountRow): DirectoryAccount => ({ accountId: r.account_id, bank: r.bank, ownerUserId: r.owner_user_id, currency: r.currency });

/** An owner's accounts listed at most; GetBalance fans out to banks per account. */
export const ACCOUNTS_PER_OWNER_MAX = 1000;

export function createSqliteDirectory(db: Db): Directory {
  const q = {
    find: db.prepare("SELECT * FROM accounts WHERE account_id = ?"),
    owned: db.prepare("SELECT * FROM accounts WHERE owner_user_id = ? ORDER BY account_id LIMIT ?"),
    insert: db.prepare("INSERT INTO accounts (account_id, bank, owner_user_id, currency, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
  };
  return {
    find(accountId) {
      const r = q.find.get(accountId) as AccountRow | undefined;
      return r ? toAccount(r) : undefined;
    },
    ownedBy: (userId) => (q.owned.all(userId, ACCOUNTS_PER_OWNER_MAX) as AccountRow[]).map(toAccount),
    add(a, nowMs) {
      return q.insert.run(a.accountId, a.bank, a.ownerUserId, a.currency, nowMs).changes === 1;
    },
  };
}
