// The settings every service reads the same way: log level, ops port, OTLP
// endpoint. Each service's config.ts calls this with its own env reader, so a
// bad value is one more problem in that service's single list.
import { DEFAULT_METRICS_PORT } from "./ops-server.js";
import { otlpTracesUrl } from "./tracing.js";

export const LOG_LEVELS: readonly string[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** The part of @paygate/config's EnvReader this needs. */
export interface SettingsReader {
  string(name: string, fallback?: string): string;
  int(name: string, fallback: number, options?: { min?: number; max?: number }): number;
  problem(text: string): void;
}

export interface ObservabilitySettings {
  /** LOG_LEVEL (pino), default info. */
  readonly logLevel: string;
  /** METRICS_PORT: plain-HTTP ops port (/metrics, /healthz, /readyz); 0 = any free port. */
  readonly metricsPort: number;
  /** OTEL_EXPORTER_OTLP_ENDPOINT: OTLP/HTTP collector base URL; "" = tracing off. */
  readonly otlpEndpoint: string;
}

export function readObservabilitySettings(r: SettingsReader): ObservabilitySettings {
  const logLevel = r.string("LOG_LEVEL", "info").toLowerCase();
  if (!LOG_LEVELS.includes(logLevel))
    r.problem(`LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(logLevel)}`);
  const metricsPort = r.int("METRICS_PORT", DEFAULT_METRICS_PORT, { min: 0, max: 65535 });
  const otlpEndpoint = r.string("OTEL_EXPORTER_OTLP_ENDPOINT", "").trim();
  if (otlpEndpoint !== "") {
    try {
      otlpTracesUrl(otlpEndpoint);
    } catch (e) {
      r.problem((e as Error).message);
    }
  }
  return { logLevel, metricsPort, otlpEndpoint };
}
