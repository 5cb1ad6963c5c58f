import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError } from "@paygate/config";
import { loadConfig } from "./config.js";

test("defaults: 127.0.0.1:8080, the demo merchant, the gateway on 50050, the checkout certificate", () => {
  const c = loadConfig({}, "/repo");
  assert.deepEqual(
    [c.host, c.port, c.dataDir, c.gatewayUrl, c.merchantUsername, c.merchantPassword, c.merchantAccountId, c.settlementIntervalMs],
    ["127.0.0.1", 8080, "/repo/data/checkout", "https://127.0.0.1:50050", "shop", "shop-demo-2026", "bank-b/2002", 60_000],
  );
  assert.deepEqual(c.tls, { caFile: "/repo/.certs/ca.crt", certFile: "/repo/.certs/checkout.crt", keyFile: "/repo/.certs/checkout.key" });
  assert.ok(Object.isFrozen(c));
});

test("every problem is reported together", () => {
  assert.throws(
    () => loadConfig({ GATEWAY_URL: "http://127.0.0.1:50050", CHECKOUT_MERCHANT_ACCOUNT: "2002", SETTLEMENT_INTERVAL_MS: "-1", CHECKOUT_PORT: "x" }, "/repo"),
    (e: unknown) => e instanceof ConfigError && e.problems.length === 4,
  );
});
