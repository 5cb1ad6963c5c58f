// The services `make up` and `make up-ha` both run on this machine, as the
// supervisor starts them: the two banks, the credit bureau and the checkout,
// with the settings every paygate process shares (certificates from .certs/,
// the seed file, the log level). The gateway differs between the two (one on
// SQLite; replicas on PostgreSQL behind a front door): each script builds its
// own from `gatewayEnv`.
import { resolve } from "node:path";

/** As the chart's gateway.nodeOptions: a laptop-sized heap. */
export const GATEWAY_NODE_OPTIONS = "--max-semi-space-size=4 --max-old-space-size=192";

/**
 * @param {{ root: string, data: string, coordinatorUrls: readonly string[] }} o
 *   data: where each service keeps its files; coordinatorUrls: where banks ask GetDecision (every gateway replica).
 */
export function localServices({ root, data, coordinatorUrls }) {
  const certs = resolve(root, ".certs");
  const tls = (name) => ({
    TLS_CA_FILE: `${certs}/ca.crt`,
    TLS_CERT_FILE: `${certs}/${name}.crt`,
    TLS_KEY_FILE: `${certs}/${name}.key`,
  });
  const common = { SEED_FILE: resolve(root, "config/seed.yaml"), LOG_LEVEL: process.env.LOG_LEVEL ?? "info" };
  const banks = ["a", "b"].map((x, i) => ({
    name: `bank-${x}`,
    bundle: "bank",
    env: {
      ...common,
      ...tls(`bank-${x}`),
      COORDINATOR_URL: coordinatorUrls.join(","),
      BANK_NAME: `bank-${x}`,
      BANK_PORT: String(50051 + i),
      BANK_DATA_DIR: `${data}/bank-${x}`,
      METRICS_PORT: String(9465 + i),
    },
  }));
  const edge = [
    {
      name: "bureau",
      bundle: "credit-bureau",
      env: {
        ...common,
        ...tls("credit-bureau"),
        CREDIT_BUREAU_PORT: "8081",
        CREDIT_BUREAU_DATA_FILE: resolve(root, "config/credit-bureau.yaml"),
        METRICS_PORT: "9467",
      },
    },
    {
      name: "checkout",
      bundle: "checkout",
      env: {
        ...common,
        ...tls("checkout"),
        CHECKOUT_PORT: "8080",
        CHECKOUT_DATA_DIR: `${data}/checkout`,
        CHECKOUT_MERCHANT_ACCOUNT: "bank-b/2002",
        METRICS_PORT: "9468",
        CHECKOUT_WEBHOOK_PORT: "8443",
        CHECKOUT_WEBHOOK_URL: "https://127.0.0.1:8443/webhooks/paygate",
      },
    },
  ];
  /** A gateway's settings apart from its port, data and store: certificates, seed, webhooks to this machine's checkout. */
  const gatewayEnv = {
    ...common,
    ...tls("gateway"),
    // Webhooks to the checkout's receiver on this machine (and any local test receiver): loopback is allowed here only.
    WEBHOOK_ALLOW_LOOPBACK: "true",
    WEBHOOK_ALLOWED_HOSTS: "127.0.0.1,localhost",
    NODE_OPTIONS: GATEWAY_NODE_OPTIONS,
  };
  return { banks, edge, gatewayEnv };
}
