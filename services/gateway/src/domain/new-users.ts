// The rules for a new user, whoever creates it: a customer signing up
// (Register) or an admin (CreateUser). One set of rules, one reason each
// (DESIGN.md §11): username shape, username taken, password too short, too
// common, display name too long or unprintable.
import { randomBytes } from "node:crypto";
import { findControlCharacter } from "@paygate/vocab";
import { COMMON_PASSWORDS } from "./common-passwords.js";
import { fail, ok, type Result } from "./model.js";
import type { Clock, UserRecord, Users } from "./ports.js";

export const USERNAME_PATTERN = /^[a-z][a-z0-9_.-]{2,31}$/;
const USER_ID_PATTERN = /^[a-z][a-z0-9_-]{0,63}$/;
export const PASSWORD_LENGTH_MIN = 10;
/** Longer inputs are never valid; refusing them early bounds the scrypt work. */
export const PASSWORD_LENGTH_MAX = 1024;
export const DISPLAY_NAME_LENGTH_MAX = 100;

export interface NewUserInput {
  readonly username: string;
  readonly password: string;
  readonly displayName: string;
}

/** Why a password is too common: on the list, the username itself, or one character repeated. */
export function isCommonPassword(password: string, username: string): boolean {
  const p = password.normalize("NFKC").toLowerCase();
  return COMMON_PASSWORDS.has(p) || p === username.toLowerCase() || new Set(p).size === 1;
}

/** Checks the input; the display name as it will be stored (empty: the username). */
export function checkNewUser(input: NewUserInput): Result<{ readonly displayName: string }> {
  if (!USERNAME_PATTERN.test(input.username)) {
    return fail("invalid_username", "username must be 3-32 of a-z, 0-9, _ . - and start with a letter", {
      field: "username",
    });
  }
  const length = [...input.password].length;
  if (length < PASSWORD_LENGTH_MIN)
    return fail("weak_password", `password must be at least ${PASSWORD_LENGTH_MIN} characters`, {
      field: "password",
      min_length: String(PASSWORD_LENGTH_MIN),
    });
  if (input.password.length > PASSWORD_LENGTH_MAX)
    return fail("weak_password", `password must be at most ${PASSWORD_LENGTH_MAX} characters`, { field: "password" });
  if (isCommonPassword(input.password, input.username))
    return fail(
      "common_password",
      "this password is too common (it is on a list of leaked passwords): choose another",
      { field: "password" },
    );
  const displayName = input.displayName.trim() || input.username;
  if ([...displayName].length > DISPLAY_NAME_LENGTH_MAX || findControlCharacter(displayName) !== -1) {
    return fail(
      "invalid_display_name",
      `display_name must be at most ${DISPLAY_NAME_LENGTH_MAX} printable characters`,
      { field: "display_name" },
    );
  }
  return ok({ displayName });
}

export interface NewUserDeps {
  readonly users: Users;
  readonly clock: Clock;
  readonly hashPassword: (password: string) => Promise<string>;
}

const taken = (username: string) => fail("username_taken", `username ${username} is taken`, { field: "username" });

/** Checks, hashes the password, and stores the user under a free id (the username when it can be one). */
export async function createUserRecord(
  d: NewUserDeps,
  input: NewUserInput,
  roles: readonly string[],
): Promise<Result<UserRecord>> {
  const checked = checkNewUser(input);
  if (!checked.ok) return checked;
  if (await d.users.byUsername(input.username)) return taken(input.username);
  const passwordHash = await d.hashPassword(input.password);
  // The username doubles as the id when it can (seed users look the same); otherwise a random one.
  const candidates = [
    USER_ID_PATTERN.test(input.username) ? input.username : undefined,
    `u-${randomBytes(8).toString("hex")}`,
  ];
  for (const userId of candidates) {
    if (!userId) continue;
    const user: UserRecord = {
      userId,
      username: input.username,
      passwordHash,
      roles: [...new Set(roles)],
      displayName: checked.value.displayName,
    };
    if (await d.users.create(user, d.clock.nowMs())) return ok(user);
    // Lost a race for the username while hashing?
    if (await d.users.byUsername(input.username)) return taken(input.username);
  }
  return fail("username_taken", "could not allocate a user id", { field: "username" });
}
