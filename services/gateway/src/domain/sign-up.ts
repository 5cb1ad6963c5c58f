// A customer signs up (DESIGN.md §11): Register creates a customer with no
// accounts, under the same rules as an admin's CreateUser; then Login as
// usual. Public, so it is rate-limited per client (address and certificate,
// as login lockouts are): every attempt counts, valid or not, on every
// replica (the counter is in the store), so it can be used neither to flood
// the user table nor to enumerate usernames quickly.
import { fail, type Result } from "./model.js";
import { createUserRecord, type NewUserInput } from "./new-users.js";
import type { Clock, RateLimits, UserRecord, Users } from "./ports.js";

export interface SignUpOptions {
  readonly users: Users;
  readonly limits: RateLimits;
  readonly clock: Clock;
  readonly hashPassword: (password: string) => Promise<string>;
  /** Attempts per client per window (REGISTER_RATE_MAX / REGISTER_RATE_WINDOW_MS). */
  readonly attemptsMax: number;
  readonly windowMs: number;
}

export interface SignUp {
  /** `client` names who is asking (address and certificate identity). */
  register(input: NewUserInput, client: string): Promise<Result<UserRecord>>;
}

export const REGISTER_SCOPE = "register";
export const CUSTOMER_ROLES: readonly string[] = ["customer"];

/** A rate-limited use case's counters and their settings (sign-ups per client, link attempts per user). */
export interface RateLimited {
  readonly limits: RateLimits;
  readonly attemptsMax: number;
  readonly windowMs: number;
}

/**
 * Counts one attempt of `key` in `scope`: the rate_limited refusal when that
 * puts its counter past the maximum (undefined when it does not).
 */
export async function hitRateLimit(
  o: RateLimited,
  scope: string,
  key: string,
  nowMs: number,
  what: string,
): Promise<Result<never> | undefined> {
  const count = await o.limits.hit(scope, key, nowMs, o.windowMs);
  if (count.count <= o.attemptsMax) return undefined;
  return fail("rate_limited", `too many ${what}; try again later`, {
    retry_after_ms: String(Math.max(0, count.resetAtMs - nowMs)),
  });
}

export function createSignUp(o: SignUpOptions): SignUp {
  return {
    async register(input, client) {
      const nowMs = o.clock.nowMs();
      const limited = await hitRateLimit(o, REGISTER_SCOPE, client, nowMs, "sign-ups from this client");
      if (limited) return limited;
      return createUserRecord({ users: o.users, clock: o.clock, hashPassword: o.hashPassword }, input, CUSTOMER_ROLES);
    },
  };
}
