// The merchant's checkout process: config -> store -> HTTP server ->
// "listening". The only place that reads process.env.
import { loadConfigOrExit } from "@paygate/config";
import { createLogger } from "@paygate/rpc";
import {
  createClientMetricsInterceptor,
  createMetrics,
  createTraceClientInterceptor,
  onShutdownSignals,
  startOpsServer,
  startTracing,
  traceLogFields,
} from "@paygate/telemetry";
import { createCheckoutApp } from "./app.js";
import { loadConfig } from "./config.js";

const SHUTDOWN_GRACE_MS = 5_000;

async function main(): Promise<void> {
  const config = loadConfigOrExit(loadConfig, process.env);
  const log = createLogger("checkout", config.logLevel, { mixin: traceLogFields });
  const tracing = startTracing({ service: "checkout", endpoint: config.otlpEndpoint });
  const metrics = createMetrics("checkout");
  let ready = false;
  const ops = await startOpsServer({
    host: config.host,
    port: config.metricsPort,
    registry: metrics.registry,
    isReady: () => ready,
    logger: log,
  });
  const app = createCheckoutApp(config, log, {
    // Each Authorize/SettleBatch starts (or joins) a trace the gateway and the banks continue.
    gatewayInterceptors: [
      createTraceClientInterceptor(tracing.tracer),
      createClientMetricsInterceptor(metrics, "gateway"),
    ],
  });
  // Recovery is implicit: unanswered settlement batches are rows in the store,
  // resent with their own keys on the next run; an attempt left pending is
  // resent with its key when the shopper submits again.
  const open = app.store.openSettlements(1000).length;
  if (open > 0) log.info({ openSettlements: open }, "unanswered settlement batches found; the next run resends them");
  const port = await app.listen();
  ready = true;
  log.info(
    {
      host: config.host,
      port,
      webhookPort: app.webhookPort(),
      metricsPort: ops.port,
      tracing: tracing.enabled,
      url: `http://${config.host}:${port}/payment.html`,
      gatewayUrl: config.gatewayUrl,
      merchantAccountId: config.merchantAccountId,
      settlementIntervalMs: config.settlementIntervalMs,
    },
    "listening",
  );

  onShutdownSignals(log, async () => {
    ready = false;
    await app.close(SHUTDOWN_GRACE_MS);
    await ops.close();
    await tracing.shutdown();
  });
}

main().catch((e: unknown) => {
  process.stderr.write(`checkout: failed to start: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
