import { pino, type Logger } from "pino";

export type { Logger };

export interface LoggerOptions {
  /** Fields merged into every line, e.g. telemetry's traceLogFields (traceId/spanId of the active span). */
  readonly mixin?: () => object;
}

/** JSON lines on stdout, one logger per service process. */
export function createLogger(service: string, level = "info", options: LoggerOptions = {}): Logger {
  return pino({
    level,
    ...(options.mixin && { mixin: options.mixin }),
    base: { service },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    // Belt and braces: these names must never reach a log line.
    redact: {
      paths: [
        "password",
        "*.password",
        "sessionToken",
        "*.sessionToken",
        "authorization",
        "pan",
        "*.pan",
        "cvc",
        "*.cvc",
      ],
      censor: "[redacted]",
    },
  });
}
