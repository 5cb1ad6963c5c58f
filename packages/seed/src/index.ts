// The shared setup file (config/seed.yaml): banks, users and accounts with
// opening balances. Each bank loads only its own accounts at first start; the
// gateway loads users and the account directory. After that, each service's
// own database is the truth and the file is not read again.
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { parseCurrency, AMOUNT_MINOR_MAX } from "@paygate/money";

export type SeedRole = "customer" | "merchant" | "admin";

export interface SeedUser {
  readonly id: string;
  readonly username: string;
  /** Demo password (hashed at load) or an scrypt hash from hashPassword. */
  readonly password?: string;
  readonly passwordHash?: string;
  readonly roles: readonly SeedRole[];
  readonly displayName: string;
}

export interface SeedAccount {
  readonly id: string;
  readonly bank: string;
  readonly owner: string;
  readonly currency: string;
  readonly openingMinor: bigint;
}

export interface Seed {
  readonly banks: readonly string[];
  readonly users: readonly SeedUser[];
  readonly accounts: readonly SeedAccount[];
}

export class SeedError extends Error {
  override name = "SeedError";
}

export const ACCOUNT_ID_PATTERN = /^([a-z][a-z0-9-]{0,30})\/(\d{1,12})$/;
export const USER_ID_PATTERN = /^[a-z][a-z0-9_-]{0,63}$/;
const ROLES: readonly SeedRole[] = ["customer", "merchant", "admin"];

export function loadSeedFile(path: string): Seed {
  return parseSeed(readFileSync(path, "utf8"), path);
}

export function parseSeed(text: string, source = "seed"): Seed {
  const doc = parse(text) as unknown;
  const problems: string[] = [];
  const obj = (doc ?? {}) as Record<string, unknown>;
  const banks = Array.isArray(obj.banks) ? obj.banks.map(String) : [];
  if (banks.length === 0) problems.push("banks: at least one bank name");
  for (const b of banks) if (!/^[a-z][a-z0-9-]{0,30}$/.test(b)) problems.push(`banks: bad name ${JSON.stringify(b)}`);
  const users: SeedUser[] = [];
  for (const [i, u] of (Array.isArray(obj.users) ? obj.users : []).entries()) {
    const r = u as Record<string, unknown>;
    const id = String(r.id ?? "");
    const roles = (Array.isArray(r.roles) ? r.roles : []).map(String);
    if (!USER_ID_PATTERN.test(id)) problems.push(`users[${i}].id: bad id ${JSON.stringify(id)}`);
    if (roles.length === 0 || roles.some((x) => !ROLES.includes(x as SeedRole))) problems.push(`users[${i}].roles: one or more of ${ROLES.join(", ")}`);
    if (r.password === undefined && r.password_hash === undefined) problems.push(`users[${i}]: password or password_hash`);
    users.push({
      id,
      username: String(r.username ?? id),
      ...(r.password !== undefined ? { password: String(r.password) } : {}),
      ...(r.password_hash !== undefined ? { passwordHash: String(r.password_hash) } : {}),
      roles: roles as SeedRole[],
      displayName: String(r.display_name ?? r.username ?? id),
    });
  }
  const userIds = new Set(users.map((u) => u.id));
  const accounts: SeedAccount[] = [];
  const seen = new Set<string>();
  for (const [i, a] of (Array.isArray(obj.accounts) ? obj.accounts : []).entries()) {
    const r = a as Record<string, unknown>;
    const id = String(r.id ?? "");
    const m = ACCOUNT_ID_PATTERN.exec(id);
    const bank = m?.[1] ?? "";
    if (!m) problems.push(`accounts[${i}].id: expected "<bank>/<number>", got ${JSON.stringify(id)}`);
    else if (!banks.includes(bank)) problems.push(`accounts[${i}].id: bank ${bank} is not in banks`);
    if (seen.has(id)) problems.push(`accounts[${i}].id: duplicate ${id}`);
    seen.add(id);
    const owner = String(r.owner ?? "");
    if (!userIds.has(owner)) problems.push(`accounts[${i}].owner: unknown user ${JSON.stringify(owner)}`);
    const currency = String(r.currency ?? "");
    if (!parseCurrency(currency)) problems.push(`accounts[${i}].currency: three capital letters, got ${JSON.stringify(currency)}`);
    const opening = String(r.opening_minor ?? "0");
    let openingMinor = 0n;
    if (!/^\d+$/.test(opening) || BigInt(opening) > AMOUNT_MINOR_MAX) problems.push(`accounts[${i}].opening_minor: a whole number of minor units >= 0`);
    else openingMinor = BigInt(opening);
    accounts.push({ id, bank, owner, currency, openingMinor });
  }
  if (problems.length > 0) throw new SeedError(`${source}: invalid seed:\n  - ${problems.join("\n  - ")}`);
  return { banks, users, accounts };
}
