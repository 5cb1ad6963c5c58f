// What every service's main.ts does around its own work: the ops port with the
// readiness it reports (not ready before the RPC server listens, nor once
// shutdown starts), the stop on SIGTERM/SIGINT in that order, and the exit
// on a failed start.
import type { Registry } from "prom-client";
import { startOpsServer, type OpsLogger, type OpsServer } from "./ops-server.js";
import { onShutdownSignals } from "./shutdown.js";

/** A service's ops port and the readiness it answers /readyz with. */
export interface Probes extends OpsServer {
  markReady(): void;
  markUnready(): void;
}

/** The HOST and METRICS_PORT settings every service's config has. */
export interface OpsAddress {
  readonly host: string;
  readonly metricsPort: number;
}

/**
 * Starts the ops port, not ready until `markReady()`. `healthy` is also asked
 * once ready (the gateway's store): ready means both.
 */
export function startProbes(
  address: OpsAddress,
  registry: Registry,
  logger: OpsLogger,
  healthy: () => boolean = () => true,
): Promise<Probes> {
  let ready = false;
  return startOpsServer({
    host: address.host,
    port: address.metricsPort,
    registry,
    isReady: () => ready && healthy(),
    logger,
  }).then((ops) => ({
    port: ops.port,
    close: () => ops.close(),
    markReady: () => {
      ready = true;
    },
    markUnready: () => {
      ready = false;
    },
  }));
}

/** What a service stops on SIGTERM/SIGINT, besides its ops port. */
export interface ServiceStop {
  /** Stops taking and finishing work: the RPC (or HTTP) server first, then the service's loops. */
  readonly drain: () => Promise<void>;
  /** After the ops port (its probes may read what this closes): the store. */
  readonly release?: () => void | Promise<void>;
  readonly tracing: { shutdown(): Promise<void> };
}

/**
 * On SIGTERM/SIGINT (onShutdownSignals: "shutting down", then "stopped" and
 * exit 0, or "unclean shutdown" and exit 1): readiness goes first, so load
 * balancers stop sending, then the drain, the ops port, the release and
 * last tracing, which flushes the spans of all that.
 */
export function onServiceShutdown(logger: OpsLogger, probes: Probes, stop: ServiceStop): () => void {
  return onShutdownSignals(logger, async () => {
    probes.markUnready();
    await stop.drain();
    await probes.close();
    await stop.release?.();
    await stop.tracing.shutdown();
  });
}

/** Runs a service's main: a failed start is written to stderr ("<service>: failed to start: ...") and exits 1. */
export function runMain(service: string, main: () => Promise<void>): void {
  main().catch((e: unknown) => {
    process.stderr.write(`${service}: failed to start: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
}
