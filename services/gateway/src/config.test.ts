import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError } from "@paygate/config";
import { loadConfig } from "./config.js";

test("defaults match the documented contract", () => {
  const c = loadConfig({}, "/srv");
  assert.equal(c.replica, "gateway-0");
  assert.equal(c.host, "127.0.0.1");
  assert.equal(c.port, 50050);
  assert.equal(c.dbFile, "/srv/data/gateway/gateway.db");
  assert.equal(c.seedFile, "/srv/config/seed.yaml");
  assert.deepEqual([...c.banks], [["bank-a", "https://127.0.0.1:50051"], ["bank-b", "https://127.0.0.1:50052"]]);
  assert.deepEqual(c.tls, { caFile: "/srv/.certs/ca.crt", certFile: "/srv/.certs/gateway.crt", keyFile: "/srv/.certs/gateway.key" });
  assert.deepEqual(
    [c.prepareTimeoutMs, c.commitTimeoutMs, c.redriveIntervalMs, c.redriveBackoffMaxMs, c.sessionTtlMs, c.loginFailuresMax, c.loginLockoutMs],
    [10_000, 5_000, 1_000, 30_000, 3_600_000, 5, 300_000],
  );
  assert.equal(c.faultPoints.size, 0);
  assert.ok(Object.isFrozen(c));
});

test("port 0 and armed fault points are accepted", () => {
  const c = loadConfig({ GATEWAY_PORT: "0", PAYGATE_FAULTPOINTS: "gateway.after_commit_logged", GATEWAY_REPLICA: "gateway-2" });
  assert.equal(c.port, 0);
  assert.equal(c.replica, "gateway-2");
  assert.ok(c.faultPoints.has("gateway.after_commit_logged"));
});

test("every problem is reported at once", () => {
  assert.throws(
    () =>
      loadConfig({
        GATEWAY_REPLICA: "Gateway:0",
        GATEWAY_PORT: "70000",
        BANKS: "bank-a=http://127.0.0.1:1,=x",
        PREPARE_TIMEOUT_MS: "0",
        REDRIVE_INTERVAL_MS: "5000",
        REDRIVE_BACKOFF_MAX_MS: "1000",
        LOG_LEVEL: "loud",
        PAYGATE_FAULTPOINTS: "gateway.after_commit_logged,gateway.typo",
      }),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      for (const frag of ["GATEWAY_REPLICA", "GATEWAY_PORT", "https://", "name=value", "PREPARE_TIMEOUT_MS", "REDRIVE_BACKOFF_MAX_MS", "LOG_LEVEL", "gateway.typo"]) {
        assert.ok(e.message.includes(frag), `missing ${frag} in ${e.message}`);
      }
      return true;
    },
  );
});
