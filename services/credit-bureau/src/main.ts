// The credit bureau process: config -> data file -> mTLS server -> "listening".
// The only place that reads process.env.
import { loadConfigOrExit } from "@paygate/config";
import { createAccessInterceptor, createLogger, createLoggingInterceptor, startRpcServer } from "@paygate/rpc";
import {
  createMetrics,
  createMetricsInterceptor,
  createTraceServerInterceptor,
  onServiceShutdown,
  runMain,
  startProbes,
  startTracing,
  traceLogFields,
} from "@paygate/telemetry";
import { loadConfig } from "./config.js";
import { createBureau } from "./domain/report.js";
import { bureauAccessTable } from "./access.js";
import { bureauRoutes } from "./routes.js";
import { loadReportFile, ReportFileError } from "./store/report-file.js";

const SHUTDOWN_GRACE_MS = 5_000;

async function main(): Promise<void> {
  const config = loadConfigOrExit(loadConfig, process.env);
  const log = createLogger("credit-bureau", config.logLevel, { mixin: traceLogFields });
  const tracing = startTracing({ service: "credit-bureau", endpoint: config.otlpEndpoint });
  const metrics = createMetrics("credit-bureau");
  let reports;
  try {
    reports = loadReportFile(config.dataFile);
  } catch (e) {
    // A bad data file is a configuration error: same exit code, every problem listed.
    if (e instanceof ReportFileError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const bureau = createBureau(reports);
  const ops = await startProbes(config, metrics.registry, log);

  const server = await startRpcServer({
    host: config.host,
    port: config.port,
    tls: config.tls,
    routes: bureauRoutes(bureau),
    // Trace outermost so the log line carries the trace id; metrics outside access control so refusals count.
    interceptors: [
      createTraceServerInterceptor(tracing.tracer),
      createLoggingInterceptor(log),
      createMetricsInterceptor(metrics),
      createAccessInterceptor(bureauAccessTable),
    ],
    logger: log,
    readMaxBytes: 64 * 1024,
  });
  ops.markReady();
  log.info(
    {
      host: config.host,
      port: server.port,
      metricsPort: ops.port,
      dataFile: config.dataFile,
      reports: bureau.size,
      tracing: tracing.enabled,
    },
    "listening",
  );

  onServiceShutdown(log, ops, { drain: () => server.close(SHUTDOWN_GRACE_MS), tracing });
}

runMain("credit-bureau", main);
