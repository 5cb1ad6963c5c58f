import { pino, type Logger } from "pino";

export type { Logger };

/** JSON lines on stdout, one logger per service process. */
export function createLogger(service: string, level = "info"): Logger {
  return pino({
    level,
    base: { service },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    // Belt and braces: these names must never reach a log line.
    redact: { paths: ["password", "*.password", "sessionToken", "*.sessionToken", "authorization", "pan", "*.pan", "cvc", "*.cvc"], censor: "[redacted]" },
  });
}
