// The card side of a test paygate: the credit bureau and the merchant's
// checkout as real processes from dist/, configured like `make up` does but
// on free ports in the test's temp dir. Stack.start({ bureau, checkout })
// uses these; tests that need only one of them (e.g. checkout against a fake
// gateway) call them directly.
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { tlsEnvFor } from "./certs.js";
import { freePort, ServiceProcess } from "./processes.js";

/** Reports for testSeed()'s users plus dave, whose score the risk rule declines. */
export const TEST_BUREAU_DATA = `
as_of: "2026-01-15T09:00:00Z"
reports:
  - { user_id: alice, score: 780, open_credit_minor: 1500000, currency: USD, utilisation_bps: 1200, delinquencies: 0 }
  - { user_id: bob, score: 690, open_credit_minor: 400000, currency: USD, utilisation_bps: 4100, delinquencies: 1 }
  - { user_id: carol, score: 720, open_credit_minor: 250000, currency: USD, utilisation_bps: 2500, delinquencies: 0 }
  - { user_id: shop, score: 700, open_credit_minor: 0, currency: USD, utilisation_bps: 0, delinquencies: 0 }
  - { user_id: dave, score: 480, open_credit_minor: 300000, currency: USD, utilisation_bps: 9600, delinquencies: 5 }
`;

export interface Started {
  readonly process: ServiceProcess;
  readonly url: string;
}

/** A credit bureau process (not started) serving `data` on a free port. */
export async function bureauProcess(options: {
  dir: string;
  certs: string;
  data?: string;
  env?: Record<string, string>;
}): Promise<Started> {
  const port = await freePort();
  const dataFile = join(options.dir, "credit-bureau.yaml");
  writeFileSync(dataFile, options.data ?? TEST_BUREAU_DATA);
  const process = new ServiceProcess({
    name: "credit-bureau",
    bundle: "credit-bureau",
    env: {
      CREDIT_BUREAU_PORT: String(port),
      CREDIT_BUREAU_DATA_FILE: dataFile,
      METRICS_PORT: "0",
      ...tlsEnvFor(options.certs, "credit-bureau"),
      LOG_LEVEL: "info",
      ...options.env,
    },
  });
  return { process, url: `https://127.0.0.1:${port}` };
}

export interface CheckoutProcessOptions {
  readonly dir: string;
  readonly certs: string;
  readonly gatewayUrl: string;
  readonly merchant: { readonly username: string; readonly password: string; readonly accountId: string };
  /** 0 (the default here) = settle only on POST /settle, so tests decide when. */
  readonly settlementIntervalMs?: number;
  readonly env?: Record<string, string>;
}

/** A checkout process (not started) on a free port, logged in to gatewayUrl as the merchant. */
export async function checkoutProcess(options: CheckoutProcessOptions): Promise<Started> {
  const port = await freePort();
  const process = new ServiceProcess({
    name: "checkout",
    bundle: "checkout",
    env: {
      CHECKOUT_PORT: String(port),
      CHECKOUT_DATA_DIR: join(options.dir, "checkout"),
      GATEWAY_URL: options.gatewayUrl,
      ...tlsEnvFor(options.certs, "checkout"),
      CHECKOUT_MERCHANT_USERNAME: options.merchant.username,
      CHECKOUT_MERCHANT_PASSWORD: options.merchant.password,
      CHECKOUT_MERCHANT_ACCOUNT: options.merchant.accountId,
      SETTLEMENT_INTERVAL_MS: String(options.settlementIntervalMs ?? 0),
      METRICS_PORT: "0",
      LOG_LEVEL: "info",
      ...options.env,
    },
  });
  return { process, url: `http://127.0.0.1:${port}` };
}

/** A card as AdminService.IssueCard returned it (number and CVC shown once). */
export interface IssuedTestCard {
  readonly number: string;
  readonly expMonth: number;
  readonly expYear: number;
  readonly cvc: string;
}

/**
 * A CardService.Authorize request for testSeed()'s merchant ("shop", paid into
 * bank-b/2003) with a fresh idempotency key and order reference; `over`
 * replaces any field (e.g. another currency or merchant account).
 */
export function authorizeRequest(card: IssuedTestCard, amountMinor: bigint, over: Record<string, unknown> = {}) {
  return {
    idempotencyKey: randomUUID(),
    card: {
      number: card.number,
      expMonth: card.expMonth,
      expYear: card.expYear,
      cvc: card.cvc,
      cardholderName: "Test Holder",
    },
    amountMinor,
    currency: "USD",
    merchantReference: `order-${randomUUID().slice(0, 8)}`,
    merchantAccountId: "bank-b/2003",
    ...over,
  };
}
