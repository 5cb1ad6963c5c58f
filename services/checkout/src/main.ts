// The merchant's checkout process: config -> store -> HTTP server ->
// "listening". The only place that reads process.env.
import { loadConfigOrExit } from "@paygate/config";
import { createLogger } from "@paygate/rpc";
import {
  createClientMetricsInterceptor,
  createMetrics,
  createTraceClientInterceptor,
  onServiceShutdown,
  runMain,
  startProbes,
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
  const ops = await startProbes(config, metrics.registry, log);
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
  ops.markReady();
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

  onServiceShutdown(log, ops, { drain: () => app.close(SHUTDOWN_GRACE_MS), tracing });
}

runMain("checkout", main);
