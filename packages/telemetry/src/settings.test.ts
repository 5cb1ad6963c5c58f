import { test } from "node:test";
import assert from "node:assert/strict";
import { createEnvReader, ConfigError } from "@paygate/config";
import { DEFAULT_METRICS_PORT } from "./ops-server.js";
import { readObservabilitySettings } from "./settings.js";

test("observability settings: defaults, and every bad value is one more problem in the service's list", () => {
  const ok = createEnvReader("svc", {});
  assert.deepEqual(readObservabilitySettings(ok), {
    logLevel: "info",
    metricsPort: DEFAULT_METRICS_PORT,
    otlpEndpoint: "",
  });
  const set = createEnvReader("svc", {
    LOG_LEVEL: "DEBUG",
    METRICS_PORT: "0",
    OTEL_EXPORTER_OTLP_ENDPOINT: " http://127.0.0.1:4318 ",
  });
  assert.deepEqual(readObservabilitySettings(set), {
    logLevel: "debug",
    metricsPort: 0,
    otlpEndpoint: "http://127.0.0.1:4318",
  });

  const bad = createEnvReader("svc", {
    LOG_LEVEL: "loud",
    METRICS_PORT: "70000",
    OTEL_EXPORTER_OTLP_ENDPOINT: "not a url",
  });
  readObservabilitySettings(bad);
  assert.throws(
    () => bad.finish({}),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.problems.length === 3 &&
      /LOG_LEVEL/.test(e.problems.join()) &&
      /METRICS_PORT/.test(e.problems.join()),
  );
});
