// Loads config/seed.yaml's users and account directory once, at first start.
// Afterwards the database is the truth and the file is not read again.
import { SeedError, type Seed } from "@paygate/seed";
import { isPasswordHash } from "../domain/password.js";
import { getMeta, setMeta, type Db } from "./db.js";

const SEEDED_KEY = "seed_loaded_at";

export interface SeedReport {
  readonly loaded: boolean;
  readonly users: number;
  readonly accounts: number;
}

export async function loadSeedOnce(db: Db, seed: Seed, hashPassword: (password: string) => Promise<string>, nowMs: number): Promise<SeedReport> {
  if (getMeta(db, SEEDED_KEY) !== undefined) return { loaded: false, users: 0, accounts: 0 };
  const hashes: string[] = [];
  // One at a time: each scrypt takes ~16 MiB.
  for (const u of seed.users) {
    if (u.passwordHash !== undefined) {
      if (!isPasswordHash(u.passwordHash)) throw new SeedError(`seed: user ${u.id} has a password_hash that is not "scrypt$N$r$p$salt$hash"`);
      hashes.push(u.passwordHash);
    } else {
      hashes.push(await hashPassword(u.password ?? ""));
    }
  }
  const insertUser = db.prepare(`INSERT INTO users (user_id, username, password_hash, roles, display_name, created_at)
    VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`);
  const insertAccount = db.prepare("INSERT INTO accounts (account_id, bank, owner_user_id, currency, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING");
  return db.transaction((): SeedReport => {
    if (getMeta(db, SEEDED_KEY) !== undefined) return { loaded: false, users: 0, accounts: 0 };
    let users = 0;
    let accounts = 0;
    for (const [i, u] of seed.users.entries()) users += insertUser.run(u.id, u.username, hashes[i] ?? "", u.roles.join(","), u.displayName, nowMs).changes;
    for (const a of seed.accounts) accounts += insertAccount.run(a.id, a.bank, a.owner, a.currency, nowMs).changes;
    setMeta(db, SEEDED_KEY, String(nowMs));
    return { loaded: true, users, accounts };
  })();
}
