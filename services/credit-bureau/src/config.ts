// The credit bureau's one typed, frozen configuration. main.ts passes
// process.env in; every problem is reported at once.
import { resolve } from "node:path";
import { createEnvReader, type Env } from "@paygate/config";
import type { TlsFiles } from "@paygate/rpc";
import { readObservabilitySettings } from "@paygate/telemetry";

export interface BureauConfig {
  readonly host: string;
  /** 0 = any free port (the "listening" log line says which). */
  readonly port: number;
  /** Reports, read once at start (YAML or JSON). */
  readonly dataFile: string;
  readonly tls: TlsFiles;
  readonly logLevel: string;
  /** Plain-HTTP ops port: /metrics, /healthz, /readyz (0 = any free port). */
  readonly metricsPort: number;
  /** OTLP/HTTP endpoint; empty = tracing off. */
  readonly otlpEndpoint: string;
}

export function loadConfig(env: Env, cwd = process.cwd()): BureauConfig {
  const r = createEnvReader("credit-bureau", env);
  const host = r.string("CREDIT_BUREAU_HOST", "127.0.0.1");
  const port = r.int("CREDIT_BUREAU_PORT", 8081, { min: 0, max: 65535 });
  const dataFile = resolve(cwd, r.string("CREDIT_BUREAU_DATA_FILE", "config/credit-bureau.yaml"));
  const tls: TlsFiles = {
    caFile: resolve(cwd, r.string("TLS_CA_FILE", ".certs/ca.crt")),
    certFile: resolve(cwd, r.string("TLS_CERT_FILE", ".certs/credit-bureau.crt")),
    keyFile: resolve(cwd, r.string("TLS_KEY_FILE", ".certs/credit-bureau.key")),
  };
  const { logLevel, metricsPort, otlpEndpoint } = readObservabilitySettings(r);
  return r.finish({ host, port, dataFile, tls, logLevel, metricsPort, otlpEndpoint });
}
