// session.json: the bearer token is a password-equivalent until it expires, so
// the file is created 0600 (in a 0700 directory) and replaced atomically — a
// crash mid-write leaves the old session or the new one, never half of each.
import {
  chmodSync,
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";

export interface CachedAccount {
  readonly accountId: string;
  readonly currency: string;
  readonly bank: string;
}

export interface Session {
  readonly gatewayUrl: string;
  readonly token: string;
  readonly userId: string;
  readonly username: string;
  readonly roles: readonly string[];
  /** ISO 8601. */
  readonly expiresAt: string;
  /** The user's accounts as last seen, so `pay` can pick --from while the gateway is down. */
  readonly accounts: readonly CachedAccount[];
  readonly accountsSeenAt: string | null;
}

export interface SessionStore {
  readonly file: string;
  /** undefined when logged out; throws on a corrupt file (the user should see it, not lose it silently). */
  load(): Session | undefined;
  save(session: Session): void;
  clear(): void;
}

export function createSessionStore(file: string): SessionStore {
  return {
    file,
    load() {
      if (!existsSync(file)) return undefined;
      const parsed: unknown = JSON.parse(readFileSync(file, "utf8"));
      return checkSession(parsed, file);
    },
    save(session) {
      mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
      const tmp = `${file}.${process.pid}.tmp`;
      const fd = openSync(tmp, "w", 0o600);
      try {
        writeSync(fd, `${JSON.stringify(session, null, 2)}\n`);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      // openSync's mode is filtered by the umask; make sure, not hopeful.
      chmodSync(tmp, 0o600);
      renameSync(tmp, file);
    },
    clear() {
      rmSync(file, { force: true });
    },
  };
}

function checkSession(v: unknown, file: string): Session {
  const o = v as Record<string, unknown>;
  const str = (k: string) => typeof o?.[k] === "string";
  if (
    typeof v !== "object" ||
    v === null ||
    !str("token") ||
    !str("userId") ||
    !str("username") ||
    !str("expiresAt") ||
    !str("gatewayUrl") ||
    !Array.isArray(o.roles)
  ) {
    throw new Error(`${file} is not a paycli session file; delete it and run \`paycli login\``);
  }
  const accounts = Array.isArray(o.accounts) ? (o.accounts as CachedAccount[]) : [];
  return {
    ...(o as unknown as Session),
    accounts,
    accountsSeenAt: typeof o.accountsSeenAt === "string" ? o.accountsSeenAt : null,
  };
}
