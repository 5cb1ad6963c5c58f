import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError } from "@paygate/config";
import { loadConfig } from "./config.js";

test("defaults: 127.0.0.1:8080, the demo merchant, the gateway on 50050, the checkout certificate", () => {
  const c = loadConfig({}, "/repo");
  assert.deepEqual(
    [
      c.host,
      c.port,
      c.dataDir,
      c.gatewayUrl,
      c.merchantUsername,
      c.merchantPassword,
      c.merchantAccountId,
      c.settlementIntervalMs,
    ],
    [
      "127.0.0.1",
      8080,
      "/repo/data/checkout",
      "https://127.0.0.1:50050",
      "shop",
      "shop-demo-2026",
      "bank-b/2002",
      60_000,
    ],
  );
  assert.deepEqual(c.tls, {
    caFile: "/repo/.certs/ca.crt",
    certFile: "/repo/.certs/checkout.crt",
    keyFile: "/repo/.certs/checkout.key",
  });
  assert.ok(Object.isFrozen(c));
});

test("every problem is reported together", () => {
  assert.throws(
    () =>
      loadConfig(
        {
          GATEWAY_URL: "http://127.0.0.1:50050",
          CHECKOUT_MERCHANT_ACCOUNT: "2002",
          SETTLEMENT_INTERVAL_MS: "-1",
          CHECKOUT_PORT: "x",
        },
        "/repo",
      ),
    (e: unknown) => e instanceof ConfigError && e.problems.length === 4,
  );
});

test("webhooks: off without CHECKOUT_WEBHOOK_PORT; with it, the checkout's own certificate and a 300 s window by default; the URL is checked", () => {
  assert.equal(loadConfig({}, "/repo").webhook, undefined);
  const c = loadConfig(
    { CHECKOUT_WEBHOOK_PORT: "8443", CHECKOUT_WEBHOOK_URL: "https://127.0.0.1:8443/webhooks/paygate" },
    "/repo",
  );
  assert.deepEqual(
    [
      c.webhook?.host,
      c.webhook?.port,
      c.webhook?.certFile,
      c.webhook?.keyFile,
      c.webhook?.url,
      c.webhook?.toleranceSeconds,
    ],
    [
      "127.0.0.1",
      8443,
      "/repo/.certs/checkout.crt",
      "/repo/.certs/checkout.key",
      "https://127.0.0.1:8443/webhooks/paygate",
      300,
    ],
  );
  const own = loadConfig(
    {
      CHECKOUT_WEBHOOK_PORT: "0",
      CHECKOUT_WEBHOOK_CERT_FILE: "/tls/tls.crt",
      CHECKOUT_WEBHOOK_KEY_FILE: "/tls/tls.key",
      CHECKOUT_WEBHOOK_TOLERANCE_S: "60",
    },
    "/repo",
  );
  assert.deepEqual(
    [own.webhook?.certFile, own.webhook?.keyFile, own.webhook?.url, own.webhook?.toleranceSeconds],
    ["/tls/tls.crt", "/tls/tls.key", undefined, 60],
  );
  for (const url of [
    "http://127.0.0.1:8443/webhooks/paygate",
    "https://u:p@127.0.0.1:8443/webhooks/paygate",
    "https://127.0.0.1:8443/elsewhere",
    "nonsense",
  ]) {
    assert.throws(
      () => loadConfig({ CHECKOUT_WEBHOOK_PORT: "8443", CHECKOUT_WEBHOOK_URL: url }, "/repo"),
      ConfigError,
      url,
    );
  }
  assert.throws(
    () => loadConfig({ CHECKOUT_WEBHOOK_URL: "https://127.0.0.1:8443/webhooks/paygate" }, "/repo"),
    ConfigError,
    "a URL without a receiver",
  );
});
