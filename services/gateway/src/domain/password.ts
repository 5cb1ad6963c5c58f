// scrypt password hashes as "scrypt$N$r$p$salt$hash" (salt and hash base64url).
// Async scrypt runs on libuv's pool, so logins do not stall the event loop.
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from "node:crypto";

export interface ScryptParams {
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

/** ~16 MiB and tens of milliseconds per hash on a small VM. */
export const DEFAULT_SCRYPT: ScryptParams = { N: 16384, r: 8, p: 1 };
const KEY_LENGTH = 32;
const SALT_LENGTH = 16;
// Bounds on parameters read from a stored hash: a hostile seed file must not
// make one login allocate gigabytes.
const N_MAX = 1 << 20;
const R_MAX = 32;
const P_MAX = 16;

function scryptAsync(password: string, salt: Buffer, params: ScryptParams, keyLength = KEY_LENGTH): Promise<Buffer> {
  const options: ScryptOptions = {
    N: params.N,
    r: params.r,
    p: params.p,
    maxmem: 256 * params.N * params.r + 1024 * 1024,
  };
  return new Promise((resolve, reject) =>
    scrypt(password.normalize("NFC"), salt, keyLength, options, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

export async function hashPassword(password: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const salt = randomBytes(SALT_LENGTH);
  const key = await scryptAsync(password, salt, params);
  return `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString("base64url")}$${key.toString("base64url")}`;
}

interface ParsedHash {
  readonly params: ScryptParams;
  readonly salt: Buffer;
  readonly key: Buffer;
}

export function parsePasswordHash(stored: string): ParsedHash | undefined {
  const m = /^scrypt\$(\d{1,8})\$(\d{1,3})\$(\d{1,3})\$([A-Za-z0-9_-]{8,})\$([A-Za-z0-9_-]{16,})$/.exec(stored);
  if (!m) return undefined;
  const N = Number(m[1]);
  const r = Number(m[2]);
  const p = Number(m[3]);
  if (N < 2 || N > N_MAX || (N & (N - 1)) !== 0 || r < 1 || r > R_MAX || p < 1 || p > P_MAX) return undefined;
  return { params: { N, r, p }, salt: Buffer.from(m[4] ?? "", "base64url"), key: Buffer.from(m[5] ?? "", "base64url") };
}

export function isPasswordHash(stored: string): boolean {
  return parsePasswordHash(stored) !== undefined;
}

/** False for a wrong password and for a malformed stored hash. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parsed = parsePasswordHash(stored);
  if (!parsed || parsed.key.length < 16 || parsed.key.length > 64) return false;
  const key = await scryptAsync(password, parsed.salt, parsed.params, parsed.key.length);
  return timingSafeEqual(key, parsed.key);
}
