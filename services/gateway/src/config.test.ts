import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError } from "@paygate/config";
import { loadConfig } from "./config.js";

test("defaults match the documented contract", () => {
  const c = loadConfig({}, "/srv");
  assert.equal(c.replica, "gateway-0");
  assert.equal(c.host, "127.0.0.1");
  assert.equal(c.port, 50050);
  assert.deepEqual(
    c.store,
    { kind: "sqlite", file: "/srv/data/gateway/gateway.db" },
    "SQLite unless DATABASE_URL is set",
  );
  assert.equal(c.seedFile, "/srv/config/seed.yaml");
  assert.deepEqual(
    [...c.banks],
    [
      ["bank-a", "https://127.0.0.1:50051"],
      ["bank-b", "https://127.0.0.1:50052"],
    ],
  );
  assert.deepEqual(c.tls, {
    caFile: "/srv/.certs/ca.crt",
    certFile: "/srv/.certs/gateway.crt",
    keyFile: "/srv/.certs/gateway.key",
  });
  assert.deepEqual(
    [
      c.prepareTimeoutMs,
      c.commitTimeoutMs,
      c.redriveIntervalMs,
      c.redriveBackoffMaxMs,
      c.sessionTtlMs,
      c.loginFailuresMax,
      c.loginLockoutMs,
    ],
    [10_000, 5_000, 1_000, 30_000, 3_600_000, 5, 300_000],
  );
  assert.deepEqual(
    [c.registerRateMax, c.registerRateWindowMs, c.linkRateMax, c.linkRateWindowMs],
    [10, 600_000, 10, 600_000],
    "sign-up and link rate limits",
  );
  assert.equal(c.faultPoints.size, 0);
  assert.ok(Object.isFrozen(c));
});

test("sign-up and link rate limits are read, and bounded", () => {
  const c = loadConfig({
    REGISTER_RATE_MAX: "3",
    REGISTER_RATE_WINDOW_MS: "1000",
    LINK_RATE_MAX: "4",
    LINK_RATE_WINDOW_MS: "2000",
    PAYGATE_FAULTPOINTS: "gateway.after_link_verified",
  });
  assert.deepEqual(
    [c.registerRateMax, c.registerRateWindowMs, c.linkRateMax, c.linkRateWindowMs],
    [3, 1_000, 4, 2_000],
  );
  assert.ok(c.faultPoints.has("gateway.after_link_verified"));
  assert.throws(() => loadConfig({ REGISTER_RATE_MAX: "0" }), /REGISTER_RATE_MAX/);
});

test("port 0 and armed fault points are accepted", () => {
  const c = loadConfig({
    GATEWAY_PORT: "0",
    PAYGATE_FAULTPOINTS: "gateway.after_commit_logged",
    GATEWAY_REPLICA: "gateway-2",
  });
  assert.equal(c.port, 0);
  assert.equal(c.replica, "gateway-2");
  assert.ok(c.faultPoints.has("gateway.after_commit_logged"));
});

test("every problem is reported at once", () => {
  assertProblems(
    {
      GATEWAY_REPLICA: "Gateway:0",
      GATEWAY_PORT: "70000",
      BANKS: "bank-a=http://127.0.0.1:1,=x",
      PREPARE_TIMEOUT_MS: "0",
      REDRIVE_INTERVAL_MS: "5000",
      REDRIVE_BACKOFF_MAX_MS: "1000",
      LOG_LEVEL: "loud",
      PAYGATE_FAULTPOINTS: "gateway.after_commit_logged,gateway.typo",
    },
    [
      "GATEWAY_REPLICA",
      "GATEWAY_PORT",
      "https://",
      "name=value",
      "PREPARE_TIMEOUT_MS",
      "REDRIVE_BACKOFF_MAX_MS",
      "LOG_LEVEL",
      "gateway.typo",
    ],
  );
});

test("DATABASE_URL selects the shared PostgreSQL store, with the lease and pool defaults", () => {
  const c = loadConfig(
    {
      DATABASE_URL: "postgres://paygate@db:5432/paygate",
      DATABASE_PASSWORD_FILE: "secrets/pg",
      CARD_SECRET_FILE: "secrets/card-key",
    },
    "/srv",
  );
  assert.deepEqual(c.store, {
    kind: "postgres",
    url: "postgres://paygate@db:5432/paygate",
    passwordFile: "/srv/secrets/pg",
    poolMax: 8,
    driver: "pg",
    leaseMs: 3_000,
    heartbeatIntervalMs: 1_000,
    statementTimeoutMs: 5_000,
  });
  assert.equal(c.cards.cardSecretFile, "/srv/secrets/card-key");
});

test("store problems are reported together, and a bad DATABASE_URL is never echoed (it may carry a password)", () => {
  assert.throws(
    () =>
      loadConfig({
        DATABASE_URL: "mysql://u:hunter2@db/x",
        DATABASE_DRIVER: "odbc",
        GATEWAY_LEASE_MS: "1000",
        GATEWAY_HEARTBEAT_INTERVAL_MS: "600",
      }),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      // Replicas must share the card-number key too.
      for (const frag of ["DATABASE_URL", "DATABASE_DRIVER", "GATEWAY_HEARTBEAT_INTERVAL_MS", "CARD_SECRET_FILE"])
        assert.ok(e.message.includes(frag), `missing ${frag} in ${e.message}`);
      assert.ok(!e.message.includes("hunter2"), e.message);
      return true;
    },
  );
  assert.throws(
    () => loadConfig({ DATABASE_PASSWORD_FILE: "/run/pg" }),
    (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.startsWith("DATABASE_PASSWORD_FILE")),
  );
});

test("webhooks: nothing allowed and no loopback by default; the CA defaults to the gateway's; bad values are reported together", () => {
  const d = loadConfig({}, "/srv").webhooks;
  assert.deepEqual(d, {
    allowedHosts: [],
    allowLoopback: false,
    timeoutMs: 5_000,
    pollMs: 250,
    retryBaseMs: 10_000,
    retryMaxMs: 3_600_000,
    giveUpMs: 3 * 86_400_000,
    concurrency: 8,
    caFile: "/srv/.certs/ca.crt",
  });
  const c = loadConfig(
    {
      WEBHOOK_ALLOWED_HOSTS: "Hooks.Shop.example, *.merchants.example,127.0.0.1,[::1],localhost",
      WEBHOOK_ALLOW_LOOPBACK: "true",
      WEBHOOK_CA_FILE: "ca/hooks.pem",
      TLS_CA_FILE: "x.crt",
    },
    "/srv",
  ).webhooks;
  assert.deepEqual(c.allowedHosts, ["hooks.shop.example", "*.merchants.example", "127.0.0.1", "::1", "localhost"]);
  assert.equal(c.allowLoopback, true);
  assert.equal(c.caFile, "/srv/ca/hooks.pem");
  assert.equal(
    loadConfig({ TLS_CA_FILE: "other/ca.crt" }, "/srv").webhooks.caFile,
    "/srv/other/ca.crt",
    "follows TLS_CA_FILE",
  );
  assertProblems(
    {
      WEBHOOK_ALLOWED_HOSTS: "https://x.example/,*,a..b",
      WEBHOOK_ALLOW_LOOPBACK: "maybe",
      WEBHOOK_TIMEOUT_MS: "0",
      WEBHOOK_POLL_MS: "x",
      WEBHOOK_RETRY_BASE_MS: "60000",
      WEBHOOK_RETRY_MAX_MS: "1000",
      WEBHOOK_GIVE_UP_MS: "0",
      WEBHOOK_CONCURRENCY: "0",
    },
    [
      '"https://x.example/"',
      '"*"',
      '"a..b"',
      "WEBHOOK_ALLOW_LOOPBACK",
      "WEBHOOK_TIMEOUT_MS",
      "WEBHOOK_POLL_MS",
      "WEBHOOK_RETRY_MAX_MS must be >=",
      "WEBHOOK_GIVE_UP_MS",
      "WEBHOOK_CONCURRENCY",
    ],
  );
});

/** loadConfig refuses `env`, naming every fragment in one ConfigError. */
function assertProblems(env: Record<string, string>, fragments: readonly string[]): void {
  assert.throws(
    () => loadConfig(env),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      for (const frag of fragments) assert.ok(e.message.includes(frag), `missing ${frag} in ${e.message}`);
      return true;
    },
  );
}
