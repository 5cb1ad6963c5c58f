// The link half of the ledger on SQLite (DESIGN.md §11): holders, code
// hashes and failed attempts (account_links), plus the one write linking
// makes to an account, its owner. Statements are prepared once; inside
// LedgerStore.transactLinks they share the ledger's transaction.
import type Database from "better-sqlite3";
import type { AccountLink, LinkTx } from "../domain/links.js";

interface LinkRow {
  account_id: string;
  holder_name: string;
  code_hash: string;
  code_used_by: string;
  failures: bigint;
  locked: bigint;
  updated_at_ms: bigint;
}

export class LinkStoreError extends Error {
  override name = "LinkStoreError";
}

export function createLinkQueries(db: Database.Database): Omit<LinkTx, "account"> {
  const q = {
    link: db.prepare<[string], LinkRow>("SELECT * FROM account_links WHERE account_id = ?"),
    save: db.prepare(`INSERT INTO account_links (account_id, holder_name, code_hash, code_used_by, failures, locked, updated_at_ms)
      VALUES (@accountId, @holderName, @codeHash, @codeUsedBy, @failures, @locked, @updatedAtMs)
      ON CONFLICT (account_id) DO UPDATE SET holder_name = excluded.holder_name, code_hash = excluded.code_hash, code_used_by = excluded.code_used_by,
        failures = excluded.failures, locked = excluded.locked, updated_at_ms = excluded.updated_at_ms`),
    setOwner: db.prepare<[string, string]>("UPDATE accounts SET owner_user_id = ? WHERE account_id = ?"),
  };
  return {
    link(accountId): AccountLink | undefined {
      const r = q.link.get(accountId);
      return r
        ? {
            accountId: r.account_id,
            holderName: r.holder_name,
            codeHash: r.code_hash,
            codeUsedBy: r.code_used_by,
            failures: Number(r.failures),
            locked: r.locked === 1n,
            updatedAtMs: Number(r.updated_at_ms),
          }
        : undefined;
    },
    saveLink(l) {
      q.save.run({ ...l, locked: l.locked ? 1 : 0 });
    },
    setAccountOwner(accountId, ownerUserId) {
      if (q.setOwner.run(ownerUserId, accountId).changes !== 1)
        throw new LinkStoreError(`no account ${accountId} to give to ${JSON.stringify(ownerUserId)}`);
    },
  };
}
