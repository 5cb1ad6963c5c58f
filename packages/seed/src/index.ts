// The shared setup file (config/seed.yaml): banks, users and accounts with
// opening balances. Each bank loads only its own accounts at first start; the
// gateway loads users and the account directory. After that, each service's
// own database is the truth and the file is not read again.
//
// An account may belong to no gateway user yet (no `owner`): the bank knows
// its holder (`holder`, the name) and may have given the holder a
// `link_code`, with which they link it to the user they sign up as
// (DESIGN.md §11). The gateway leaves such accounts out of its directory; the
// bank keeps only a hash of the code.
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { parseCurrency, AMOUNT_MINOR_MAX } from "@paygate/money";
import { ACCOUNT_ID_PATTERN, checkHolderNameShape, normalizeLinkCode } from "@paygate/vocab";

// The seed names accounts by the same rule as every request does (group 1 is the bank).
export { ACCOUNT_ID_PATTERN };

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
  /** The gateway user it belongs to; "" = nobody yet (a holder who may link it). */
  readonly owner: string;
  readonly currency: string;
  readonly openingMinor: bigint;
  /** The holder's name as the bank knows it ("" = not recorded). */
  readonly holder: string;
  /** The code the bank gave the holder for linking (only for an account without owner). */
  readonly linkCode?: string;
}

export interface Seed {
  readonly banks: readonly string[];
  readonly users: readonly SeedUser[];
  readonly accounts: readonly SeedAccount[];
}

export class SeedError extends Error {
  override name = "SeedError";
}

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
    if (roles.length === 0 || roles.some((x) => !ROLES.includes(x as SeedRole)))
      problems.push(`users[${i}].roles: one or more of ${ROLES.join(", ")}`);
    if (r.password === undefined && r.password_hash === undefined)
      problems.push(`users[${i}]: password or password_hash`);
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
    const holder = r.holder === undefined ? "" : String(r.holder);
    const linkCode = r.link_code === undefined ? undefined : String(r.link_code);
    if (owner !== "" && !userIds.has(owner))
      problems.push(`accounts[${i}].owner: unknown user ${JSON.stringify(owner)}`);
    if (owner === "" && holder === "")
      problems.push(`accounts[${i}]: an owner (a user id) or, for an account nobody has linked yet, a holder name`);
    if (holder !== "") {
      const problem = checkHolderNameShape(holder);
      if (problem) problems.push(`accounts[${i}].holder: ${problem.replace("holder_name ", "")}`);
    }
    if (linkCode !== undefined) {
      if (owner !== "")
        problems.push(`accounts[${i}].link_code: only for an account without an owner (it is how the holder links it)`);
      if (holder === "")
        problems.push(`accounts[${i}].link_code: needs the holder's name (holder), which linking checks too`);
      if (normalizeLinkCode(linkCode) === undefined)
        problems.push(`accounts[${i}].link_code: 8 to 32 letters and digits (dashes and spaces allowed)`);
    }
    const currency = String(r.currency ?? "");
    if (!parseCurrency(currency))
      problems.push(`accounts[${i}].currency: three capital letters, got ${JSON.stringify(currency)}`);
    const opening = String(r.opening_minor ?? "0");
    let openingMinor = 0n;
    if (!/^\d+$/.test(opening) || BigInt(opening) > AMOUNT_MINOR_MAX)
      problems.push(`accounts[${i}].opening_minor: a whole number of minor units >= 0`);
    else openingMinor = BigInt(opening);
    accounts.push({ id, bank, owner, currency, openingMinor, holder, ...(linkCode !== undefined ? { linkCode } : {}) });
  }
  if (problems.length > 0) throw new SeedError(`${source}: invalid seed:\n  - ${problems.join("\n  - ")}`);
  return { banks, users, accounts };
}
