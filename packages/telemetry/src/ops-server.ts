// The ops port: plain HTTP, no client certificate, because Prometheus and the
// kubelet's probes are not paygate peers. It serves only read-only facts
// (metrics, liveness, readiness), never an RPC, so it needs no authentication;
// the Helm chart's NetworkPolicy decides who may reach it.
import http from "node:http";
import type { Registry } from "prom-client";
import { listen } from "./listen.js";

/** Default METRICS_PORT (OpenTelemetry's Prometheus-exporter port). */
export const DEFAULT_METRICS_PORT = 9464;

/** The subset of a pino logger this needs. */
export interface OpsLogger {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface OpsServerOptions {
  /** Bind address: the same HOST the RPC server binds (127.0.0.1 on a laptop, 0.0.0.0 in a pod). */
  readonly host: string;
  /** METRICS_PORT; 0 picks a free port (tests). */
  readonly port: number;
  readonly registry: Registry;
  /** True once recovery is done and the RPC server listens; false again once shutdown starts. */
  readonly isReady: () => boolean;
  readonly logger: OpsLogger;
}

export interface OpsServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const { registry, isReady, logger } = options;
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0];
    const send = (status: number, contentType: string, body: string) => {
      res.writeHead(status, { "content-type": contentType, "cache-control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : body);
    };
    if (req.method !== "GET" && req.method !== "HEAD")
      return send(path === "/metrics" || path === "/healthz" || path === "/readyz" ? 405 : 404, "text/plain", "");
    switch (path) {
      case "/metrics":
        registry.metrics().then(
          (text) => send(200, registry.contentType, text),
          (e: unknown) => {
            // A failing probe (collect callback) must not take the port down; Prometheus marks the scrape failed.
            logger.error({ err: e instanceof Error ? e.message : String(e) }, "metrics collection failed");
            send(500, "text/plain", "metrics collection failed\n");
          },
        );
        return;
      case "/healthz":
        return send(200, "text/plain", "ok\n");
      case "/readyz":
        return isReady() ? send(200, "text/plain", "ready\n") : send(503, "text/plain", "not ready\n");
      default:
        return send(404, "text/plain", "not found\n");
    }
  });
  // Slow or idle scrapers must not hold sockets forever.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  const port = await listen(server, options.port, options.host);
  // Not "listening": the process contract reserves that message for the RPC port.
  logger.info({ metricsPort: port, host: options.host }, "ops server started");
  return {
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeIdleConnections();
      }),
  };
}
