import assert from "node:assert/strict";
import { test } from "node:test";
import { Gauge } from "prom-client";
import { createMetrics } from "./metrics.js";
import { recordingLogger } from "@paygate/testkit";
import { startOpsServer } from "./ops-server.js";

test("ops server over real HTTP: /metrics, /healthz, /readyz following isReady, 404 elsewhere", async (t) => {
  const m = createMetrics("bank-a");
  let ready = false;
  const { logger, lines } = recordingLogger();
  const ops = await startOpsServer({ host: "127.0.0.1", port: 0, registry: m.registry, isReady: () => ready, logger });
  t.after(() => ops.close());
  assert.ok(ops.port > 0);
  // The RPC port owns the "listening" line of the process contract; the ops port must not emit one.
  assert.deepEqual(
    lines.map((l) => l.msg),
    ["ops server started"],
  );
  assert.deepEqual(lines[0]?.obj, { metricsPort: ops.port, host: "127.0.0.1" });
  const base = `http://127.0.0.1:${ops.port}`;

  const metrics = await fetch(`${base}/metrics`);
  assert.equal(metrics.status, 200);
  assert.match(metrics.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  const body = await metrics.text();
  assert.match(body, /^# TYPE paygate_rpc_server_requests_total counter$/m);
  assert.match(body, /^process_resident_memory_bytes\{service="bank-a"\} \d+/m);

  const health = await fetch(`${base}/healthz`);
  assert.equal(health.status, 200);
  assert.equal(await health.text(), "ok\n");

  assert.equal((await fetch(`${base}/readyz`)).status, 503, "not ready before recovery");
  ready = true;
  const readyRes = await fetch(`${base}/readyz?verbose=1`);
  assert.equal(readyRes.status, 200);
  assert.equal(await readyRes.text(), "ready\n");
  ready = false;
  assert.equal((await fetch(`${base}/readyz`)).status, 503, "not ready once shutting down");

  assert.equal((await fetch(`${base}/`)).status, 404);
  assert.equal((await fetch(`${base}/metrics/extra`)).status, 404);
  assert.equal((await fetch(`${base}/metrics`, { method: "POST", body: "x" })).status, 405);
  const head = await fetch(`${base}/healthz`, { method: "HEAD" });
  assert.equal(head.status, 200);
});

test("ops server: a failing collector gives a 500 for that scrape and the port stays up", async (t) => {
  const m = createMetrics("gateway", { defaultMetrics: false });
  let broken = true;
  new Gauge({
    name: "paygate_test_probe",
    help: "test",
    registers: [m.registry],
    collect() {
      if (broken) throw new Error("database is locked");
      this.set(1);
    },
  });
  const { logger, lines } = recordingLogger();
  const ops = await startOpsServer({ host: "127.0.0.1", port: 0, registry: m.registry, isReady: () => true, logger });
  t.after(() => ops.close());
  assert.equal((await fetch(`http://127.0.0.1:${ops.port}/metrics`)).status, 500);
  assert.ok(lines.some((l) => l.level === "error" && JSON.stringify(l.obj).includes("database is locked")));
  broken = false;
  const ok = await fetch(`http://127.0.0.1:${ops.port}/metrics`);
  assert.equal(ok.status, 200);
  assert.match(await ok.text(), /^paygate_test_probe\{service="gateway"\} 1$/m);
});

test("ops server: binds the configured host only, and close() frees the port", async () => {
  const m = createMetrics("gateway", { defaultMetrics: false });
  const { logger } = recordingLogger();
  const ops = await startOpsServer({ host: "127.0.0.1", port: 0, registry: m.registry, isReady: () => true, logger });
  // Not listening on every interface: the same port on another loopback address is free.
  const other = await startOpsServer({
    host: "127.0.0.2",
    port: ops.port,
    registry: m.registry,
    isReady: () => true,
    logger,
  }).catch((e: NodeJS.ErrnoException) => e);
  if (other instanceof Error) {
    // Some sandboxes have no 127.0.0.2; then only EADDRNOTAVAIL is acceptable, never EADDRINUSE.
    assert.equal((other as NodeJS.ErrnoException).code, "EADDRNOTAVAIL");
  } else {
    await other.close();
  }
  await ops.close();
  await assert.rejects(fetch(`http://127.0.0.1:${ops.port}/healthz`));
  // A busy port is an error from start, not a silent success.
  const first = await startOpsServer({ host: "127.0.0.1", port: 0, registry: m.registry, isReady: () => true, logger });
  await assert.rejects(
    startOpsServer({ host: "127.0.0.1", port: first.port, registry: m.registry, isReady: () => true, logger }),
    /EADDRINUSE/,
  );
  await first.close();
});
