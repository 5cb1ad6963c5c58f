// What the benchmark runs: the seed (users and accounts sized for load), and
// for each scenario how one request is built. Shared by the orchestrator
// (bench/run.ts), which checks balances afterwards, and the load generator
// (bench/load-generator.ts), which sends the requests.
import { TEST_PASSWORD_SUFFIX } from "@paygate/testkit";

export const BENCH_BANKS = ["bank-a", "bank-b", "bank-c"] as const;
/** bank-c sits behind the delay proxy; only the slow-bank scenario uses it. */
export const SLOW_BANK = "bank-c";

export const SCENARIOS = [
  "echo",
  "cross-bank",
  "same-bank",
  "hot-credit",
  "hot-debit",
  "duplicate-storm",
  "slow-bank",
  "card",
] as const;
export type Scenario = (typeof SCENARIOS)[number];

export const SCENARIO_TITLES: Record<Scenario, string> = {
  echo: "echo ceiling (bare Connect RPC, same client)",
  "cross-bank": "cross-bank uniform",
  "same-bank": "same-bank",
  "hot-credit": "hot account (every transfer credits one merchant account)",
  "hot-debit": "hot debit (one payer, many payees)",
  "duplicate-storm": "duplicate-key storm",
  "slow-bank": "cross-bank to a bank at +5 ms",
  card: "card authorize",
};

export const USERS = {
  admin: "admin",
  payerA: "payer-a",
  payerB: "payer-b",
  payerC: "payer-c",
  whale: "whale",
  storm: "storm",
  drain: "drain",
  shop: "shop",
  cardholder: "cardholder",
} as const;

export const password = (user: string) => `${user}${TEST_PASSWORD_SUFFIX}`;

export interface AccountPlan {
  readonly perBank: number;
  readonly openingMinor: bigint;
  /** The hot-debit correctness check: a payer that can afford exactly this many 1-unit transfers. */
  readonly drainCount: number;
}

export const accounts = (plan: AccountPlan) => ({
  a: Array.from({ length: plan.perBank }, (_, i) => `bank-a/${1_000_000 + i}`),
  b: Array.from({ length: plan.perBank }, (_, i) => `bank-b/${2_000_000 + i}`),
  c: Array.from({ length: Math.min(plan.perBank, 50) }, (_, i) => `bank-c/${3_000_000 + i}`),
  whale: "bank-a/5000000",
  storm: "bank-a/6000000",
  drain: "bank-a/7000000",
  merchant: "bank-b/9000000",
  /** Card settlements land here, apart from the hot-credit account, so each check sees only its own money. */
  cardMerchant: "bank-b/9000001",
  cardholder: Array.from({ length: 20 }, (_, i) => `bank-a/${8_000_000 + i}`),
});
export type Accounts = ReturnType<typeof accounts>;

export function benchSeed(plan: AccountPlan): string {
  const acc = accounts(plan);
  const roles: Record<string, string> = { admin: "admin", shop: "merchant" };
  const row = (id: string, owner: string, opening: bigint) =>
    `  - { id: ${id}, owner: ${owner}, currency: USD, opening_minor: ${opening} }`;
  return [
    `banks: [${BENCH_BANKS.join(", ")}]`,
    "users:",
    ...Object.values(USERS).map(
      (u) => `  - { id: ${u}, username: ${u}, password: ${password(u)}, roles: [${roles[u] ?? "customer"}] }`,
    ),
    "accounts:",
    ...acc.a.map((id) => row(id, USERS.payerA, plan.openingMinor)),
    ...acc.b.map((id) => row(id, USERS.payerB, plan.openingMinor)),
    ...acc.c.map((id) => row(id, USERS.payerC, plan.openingMinor)),
    row(acc.whale, USERS.whale, plan.openingMinor),
    row(acc.storm, USERS.storm, plan.openingMinor),
    row(acc.drain, USERS.drain, BigInt(plan.drainCount)),
    row(acc.merchant, USERS.shop, 0n),
    row(acc.cardMerchant, USERS.shop, 0n),
    ...acc.cardholder.map((id) => row(id, USERS.cardholder, plan.openingMinor)),
  ].join("\n");
}

/** The credit bureau's data file for the card scenario: a cardholder the risk rule approves. */
export function bureauReports(): string {
  return [
    `as_of: "${new Date().toISOString().slice(0, 19)}Z"`,
    "reports:",
    `  - { user_id: ${USERS.cardholder}, score: 820, open_credit_minor: 100000000, currency: USD, utilisation_bps: 500, delinquencies: 0 }`,
  ].join("\n");
}

export interface TransferShape {
  readonly user: string;
  readonly from: string;
  readonly to: string;
}

const pick = <T>(xs: readonly T[], r: number): T => xs[Math.floor(r * xs.length) % xs.length]!;

/**
 * The i-th transfer of a scenario. `r1`/`r2` are uniform in [0, 1); passing
 * them in keeps this function pure (and the choice reproducible with a seeded source).
 */
export function transferShape(scenario: Scenario, acc: Accounts, i: number, r1: number, r2: number): TransferShape {
  switch (scenario) {
    case "echo":
    case "cross-bank":
      return i % 2 === 0
        ? { user: USERS.payerA, from: pick(acc.a, r1), to: pick(acc.b, r2) }
        : { user: USERS.payerB, from: pick(acc.b, r1), to: pick(acc.a, r2) };
    case "same-bank": {
      const from = Math.floor(r1 * acc.a.length) % acc.a.length;
      // A different account at the same bank: shift by 1..n-1.
      const to = (from + 1 + (Math.floor(r2 * (acc.a.length - 1)) % (acc.a.length - 1))) % acc.a.length;
      return { user: USERS.payerA, from: acc.a[from]!, to: acc.a[to]! };
    }
    case "hot-credit":
      return { user: USERS.payerA, from: pick(acc.a, r1), to: acc.merchant };
    case "hot-debit":
      return { user: USERS.whale, from: acc.whale, to: pick(acc.b, r2) };
    case "duplicate-storm":
      return { user: USERS.storm, from: acc.storm, to: pick(acc.b, r2) };
    case "slow-bank":
      return { user: USERS.payerA, from: pick(acc.a, r1), to: pick(acc.c, r2) };
    case "card":
      throw new Error("card is not a transfer scenario");
  }
}
