import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError } from "@paygate/config";
import { loadConfig } from "./config.js";

const base = { cwd: "/work", homeDir: "/home/ann" };
const noFile = () => undefined;

test("defaults: ~/.paycli, the local gateway, certificates under .certs, documented retry settings", () => {
  const c = loadConfig({ ...base, flags: {}, env: {}, readFile: noFile });
  assert.equal(c.home, "/home/ann/.paycli");
  assert.equal(c.sessionFile, "/home/ann/.paycli/session.json");
  assert.equal(c.queueFile, "/home/ann/.paycli/queue.db");
  assert.equal(c.gatewayUrl, "https://127.0.0.1:50050");
  assert.deepEqual(c.tls, {
    caFile: "/work/.certs/ca.crt",
    certFile: "/work/.certs/paycli.crt",
    keyFile: "/work/.certs/paycli.key",
  });
  assert.deepEqual(c.queue.backoff, { baseMs: 5000, capMs: 300_000 });
  assert.equal(c.queue.attemptsMax, 1000);
  assert.equal(c.timeoutMs, 10_000);
  assert.equal(c.faultPoint, undefined);
  assert.deepEqual(c.sources, { gateway: "default", ca: "default", cert: "default", keyFile: "default" });
});

test("a flag beats the environment, which beats config.json, which beats the default", () => {
  let asked = "";
  const file = JSON.stringify({
    gateway: "https://file:1",
    ca: "certs/ca.crt",
    cert: "/abs/c.crt",
    backoffBaseMs: 7,
    attemptsMax: 9,
  });
  const c = loadConfig({
    ...base,
    flags: { gateway: "https://flag:3" },
    env: { PAYCLI_HOME: "state", PAYGATE_URL: "https://env:2", PAYGATE_CERT: "env.crt", PAYCLI_ATTEMPTS_MAX: "11" },
    readFile: (p) => ((asked = p), file),
  });
  assert.equal(asked, "/work/state/config.json");
  assert.equal(c.gatewayUrl, "https://flag:3");
  assert.equal(c.tls.caFile, "/work/state/certs/ca.crt"); // file paths are relative to PAYCLI_HOME
  assert.equal(c.tls.certFile, "/work/env.crt"); // env paths are relative to the current directory
  assert.equal(c.queue.backoff.baseMs, 7);
  assert.equal(c.queue.attemptsMax, 11);
  assert.deepEqual(c.sources, { gateway: "flag", ca: "file", cert: "env", keyFile: "default" });
});

test("every problem is reported at once", () => {
  const err = (() => {
    try {
      loadConfig({
        ...base,
        flags: { gateway: "http://plain:1" },
        env: { PAYCLI_BACKOFF_BASE_MS: "soon", PAYCLI_BACKOFF_CAP_MS: "0", PAYCLI_FAULTPOINT: "nowhere" },
        readFile: () => JSON.stringify({ gateway: "https://x", colour: "red" }),
      });
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  assert.ok(err instanceof ConfigError);
  const text = err.problems.join("\n");
  for (const needle of ["https://", "PAYCLI_BACKOFF_BASE_MS", "PAYCLI_BACKOFF_CAP_MS", "PAYCLI_FAULTPOINT", "colour"])
    assert.ok(text.includes(needle), `missing ${needle} in\n${text}`);
  assert.throws(() => loadConfig({ ...base, flags: {}, env: {}, readFile: () => "{not json" }), /not valid JSON/);
});

test("the test-only crash points are recognised", () => {
  const c = loadConfig({
    ...base,
    flags: {},
    env: { PAYCLI_FAULTPOINT: "after_send_before_record" },
    readFile: noFile,
  });
  assert.equal(c.faultPoint, "after_send_before_record");
});
