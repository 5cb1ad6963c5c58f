// The other half of the supervisor contract the ops port serves: Kubernetes
// (or `make up`, or a test) sends SIGTERM and waits; the process withdraws
// readiness, drains, and exits 0 — or exits 1 so an unclean stop is visible.
import type { OpsLogger } from "./ops-server.js";

export const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = ["SIGTERM", "SIGINT"];

/** Where signals come from: `process`, or an EventEmitter in tests. */
export interface SignalSource {
  on(signal: NodeJS.Signals, listener: (signal: NodeJS.Signals) => void): unknown;
  off(signal: NodeJS.Signals, listener: (signal: NodeJS.Signals) => void): unknown;
}

/** Seams for tests; all default to the real process. */
export interface ShutdownSignalOptions {
  readonly signals?: readonly NodeJS.Signals[];
  readonly process?: SignalSource;
  readonly exit?: (code: number) => void;
}

/**
 * On the first of SIGTERM/SIGINT: logs "shutting down", runs `stop` once, then
 * logs "stopped" and exits 0, or logs "unclean shutdown" and exits 1 if `stop`
 * throws. Later signals are ignored while `stop` runs (a second Ctrl-C must not
 * cut a drain short). `stop` is called synchronously, so its first statement
 * (typically `ready = false`) takes effect before anything else is awaited.
 * Returns a function that removes the handlers.
 */
export function onShutdownSignals(
  logger: OpsLogger,
  stop: (signal: NodeJS.Signals) => Promise<void>,
  options: ShutdownSignalOptions = {},
): () => void {
  const target = options.process ?? process;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const signals = options.signals ?? SHUTDOWN_SIGNALS;
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    let stopped: Promise<void>;
    try {
      stopped = stop(signal);
    } catch (e) {
      // A non-async `stop` that throws is as unclean as one that rejects.
      stopped = Promise.reject(e);
    }
    stopped.then(
      () => {
        logger.info({}, "stopped");
        exit(0);
      },
      (e: unknown) => {
        logger.error({ err: e instanceof Error ? e.message : String(e) }, "unclean shutdown");
        exit(1);
      },
    );
  };
  for (const s of signals) target.on(s, onSignal);
  return () => {
    for (const s of signals) target.off(s, onSignal);
  };
}
