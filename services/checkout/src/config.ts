// The checkout's one typed, frozen configuration. main.ts passes process.env
// in; every problem is reported at once.
import { resolve } from "node:path";
import { createEnvReader, type Env, type EnvReader } from "@paygate/config";
import type { TlsFiles } from "@paygate/rpc";
import { readObservabilitySettings } from "@paygate/telemetry";
import { isAccountId } from "@paygate/vocab";

export interface CheckoutConfig {
  readonly host: string;
  /** 0 = any free port (the "listening" log line says which). */
  readonly port: number;
  readonly dataDir: string;
  readonly gatewayUrl: string;
  /** Client certificate for the mTLS hop to the gateway. */
  readonly tls: TlsFiles;
  readonly gatewayTimeoutMs: number;
  readonly merchantUsername: string;
  readonly merchantPassword: string;
  /** The merchant's own account the settlements pay into. */
  readonly merchantAccountId: string;
  /** 0 = settle only on demand (POST /settle). */
  readonly settlementIntervalMs: number;
  readonly settlementBatchItemsMax: number;
  readonly logLevel: string;
  /** Plain-HTTP ops port: /metrics, /healthz, /readyz (0 = any free port). */
  readonly metricsPort: number;
  /** OTLP/HTTP endpoint; empty = tracing off. */
  readonly otlpEndpoint: string;
  /** The receiver of the gateway's webhooks (POST /webhooks/paygate over HTTPS); undefined = no receiver. */
  readonly webhook: WebhookConfig | undefined;
}

export interface WebhookConfig {
  readonly host: string;
  /** 0 = any free port (the "webhook receiver listening" log line says which). */
  readonly port: number;
  /** The receiver's server certificate (by default the checkout's own, whose SANs name 127.0.0.1 and localhost). */
  readonly certFile: string;
  readonly keyFile: string;
  /** Where the gateway reaches this receiver; set = register the endpoint at start-up. */
  readonly url: string | undefined;
  /** The replay window: |now - t| allowed, in seconds. */
  readonly toleranceSeconds: number;
  readonly bodyMaxBytes: number;
  /** Registration retries: base delay, doubling up to the cap. */
  readonly registerRetryBaseMs: number;
  readonly registerRetryCapMs: number;
}

const DAY_MS = 86_400_000;

export function loadConfig(env: Env, cwd = process.cwd()): CheckoutConfig {
  const r = createEnvReader("checkout", env);
  const host = r.string("CHECKOUT_HOST", "127.0.0.1");
  const port = r.int("CHECKOUT_PORT", 8080, { min: 0, max: 65535 });
  const dataDir = resolve(cwd, r.string("CHECKOUT_DATA_DIR", "data/checkout"));
  const gatewayUrl = r.string("GATEWAY_URL", "https://127.0.0.1:50050");
  let https = false;
  try {
    https = new URL(gatewayUrl).protocol === "https:";
  } catch {
    https = false;
  }
  if (!https)
    r.problem(`GATEWAY_URL needs an https:// URL (the gateway hop is mTLS), got ${JSON.stringify(gatewayUrl)}`);
  const tls: TlsFiles = {
    caFile: resolve(cwd, r.string("TLS_CA_FILE", ".certs/ca.crt")),
    certFile: resolve(cwd, r.string("TLS_CERT_FILE", ".certs/checkout.crt")),
    keyFile: resolve(cwd, r.string("TLS_KEY_FILE", ".certs/checkout.key")),
  };
  const gatewayTimeoutMs = r.int("GATEWAY_TIMEOUT_MS", 15_000, { min: 1, max: 600_000 });
  const merchantUsername = r.string("CHECKOUT_MERCHANT_USERNAME", "shop");
  // The demo seed's password (config/seed.yaml); set the variable anywhere real.
  const merchantPassword = r.string("CHECKOUT_MERCHANT_PASSWORD", "shop-demo-2026");
  const merchantAccountId = r.string("CHECKOUT_MERCHANT_ACCOUNT", "bank-b/2002");
  if (!isAccountId(merchantAccountId))
    r.problem(`CHECKOUT_MERCHANT_ACCOUNT must look like bank-b/2002, got ${JSON.stringify(merchantAccountId)}`);
  const settlementIntervalMs = r.int("SETTLEMENT_INTERVAL_MS", 60_000, { min: 0, max: DAY_MS });
  const settlementBatchItemsMax = r.int("SETTLEMENT_BATCH_ITEMS_MAX", 500, { min: 1, max: 10_000 });
  const { logLevel, metricsPort, otlpEndpoint } = readObservabilitySettings(r);
  const webhook = readWebhookConfig(r, host, tls, cwd);
  return r.finish({
    host,
    port,
    dataDir,
    gatewayUrl,
    tls,
    gatewayTimeoutMs,
    merchantUsername,
    merchantPassword,
    merchantAccountId,
    settlementIntervalMs,
    settlementBatchItemsMax,
    logLevel,
    metricsPort,
    otlpEndpoint,
    webhook,
  });
}

function readWebhookConfig(r: EnvReader, host: string, tls: TlsFiles, cwd: string): WebhookConfig | undefined {
  const portText = r.optional("CHECKOUT_WEBHOOK_PORT");
  const url = r.optional("CHECKOUT_WEBHOOK_URL");
  if (portText === undefined) {
    if (url !== undefined) r.problem("CHECKOUT_WEBHOOK_URL needs CHECKOUT_WEBHOOK_PORT (the receiver it points at)");
    return undefined;
  }
  const port = r.int("CHECKOUT_WEBHOOK_PORT", 0, { min: 0, max: 65535 });
  if (url !== undefined) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(url);
    } catch {
      parsed = undefined;
    }
    if (!parsed || parsed.protocol !== "https:" || parsed.username !== "" || parsed.password !== "") {
      r.problem(`CHECKOUT_WEBHOOK_URL needs an https:// URL without credentials, got ${JSON.stringify(url)}`);
    } else if (parsed.pathname !== "/webhooks/paygate") {
      r.problem(
        `CHECKOUT_WEBHOOK_URL must end in /webhooks/paygate (the receiver's route), got ${JSON.stringify(url)}`,
      );
    }
  }
  return {
    host: r.string("CHECKOUT_WEBHOOK_HOST", host),
    port,
    certFile: resolve(cwd, r.optional("CHECKOUT_WEBHOOK_CERT_FILE") ?? tls.certFile),
    keyFile: resolve(cwd, r.optional("CHECKOUT_WEBHOOK_KEY_FILE") ?? tls.keyFile),
    url,
    toleranceSeconds: r.int("CHECKOUT_WEBHOOK_TOLERANCE_S", 300, { min: 1, max: 3600 }),
    bodyMaxBytes: r.int("CHECKOUT_WEBHOOK_BODY_MAX_BYTES", 1_048_576, { min: 1024, max: 16_777_216 }),
    registerRetryBaseMs: r.int("CHECKOUT_WEBHOOK_REGISTER_RETRY_MS", 1_000, { min: 10, max: 600_000 }),
    registerRetryCapMs: r.int("CHECKOUT_WEBHOOK_REGISTER_RETRY_MAX_MS", 60_000, { min: 10, max: 3_600_000 }),
  };
}
