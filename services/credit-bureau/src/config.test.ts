import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError } from "@paygate/config";
import { loadConfig } from "./config.js";

test("defaults: 127.0.0.1:8081, the shipped data file, the credit-bureau certificate", () => {
  const c = loadConfig({}, "/repo");
  assert.equal(c.host, "127.0.0.1");
  assert.equal(c.port, 8081);
  assert.equal(c.dataFile, "/repo/config/credit-bureau.yaml");
  assert.deepEqual(c.tls, {
    caFile: "/repo/.certs/ca.crt",
    certFile: "/repo/.certs/credit-bureau.crt",
    keyFile: "/repo/.certs/credit-bureau.key",
  });
  assert.ok(Object.isFrozen(c));
});

test("every problem is reported together", () => {
  assert.throws(
    () => loadConfig({ CREDIT_BUREAU_PORT: "99999", LOG_LEVEL: "loud" }, "/repo"),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.problems.length === 2 &&
      /CREDIT_BUREAU_PORT/.test(e.message) &&
      /LOG_LEVEL/.test(e.message),
  );
});
