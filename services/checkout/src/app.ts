// Wiring shared by main.ts and the service tests: store -> gateway client ->
// use cases -> HTTP server. Nothing here reads the environment.
import type http from "node:http";
import { randomUUID } from "node:crypto";
import type { Interceptor } from "@connectrpc/connect";
import type { Logger } from "@paygate/rpc";
import { DEMO_CART, type Cart } from "./domain/cart.js";
import { createCheckout } from "./domain/checkout.js";
import { createSettlementJob, type SettlementJob } from "./domain/settlement.js";
import type { CheckoutConfig } from "./config.js";
import { createGatewayClient } from "./gateway-client.js";
import { startRegistration, type RegistrationLoop } from "./domain/webhook-registration.js";
import { createWebhookReceiver } from "./domain/webhooks.js";
import { createCheckoutServer } from "./http-server.js";
import { createWebhookServer, type WebhookServer } from "./webhook-server.js";
import { openCheckoutStore, type OpenedCheckoutStore } from "./store/checkout-store.js";

export interface CheckoutApp {
  readonly server: http.Server;
  readonly store: OpenedCheckoutStore;
  readonly settlement: SettlementJob;
  /** The webhook receiver, when configured (CHECKOUT_WEBHOOK_PORT). */
  readonly webhooks: WebhookServer | undefined;
  /** Binds (the shop, then the webhook receiver), starts the settlement schedule and the endpoint's registration; resolves with the shop's port. */
  listen(): Promise<number>;
  /** The webhook receiver's port once listening; undefined without one. */
  webhookPort(): number | undefined;
  /** Stops taking requests, lets in-flight ones finish (up to graceMs), stops the job, closes the store. */
  close(graceMs?: number): Promise<void>;
}

export interface CheckoutAppOptions {
  readonly cart?: Cart;
  /** On the gateway transport (tracing, client metrics). */
  readonly gatewayInterceptors?: Interceptor[];
}

export function createCheckoutApp(
  config: CheckoutConfig,
  logger: Logger,
  options: CheckoutAppOptions = {},
): CheckoutApp {
  const cart = options.cart ?? DEMO_CART;
  const store = openCheckoutStore({ dataDir: config.dataDir });
  const gateway = createGatewayClient({
    baseUrl: config.gatewayUrl,
    tls: config.tls,
    username: config.merchantUsername,
    password: config.merchantPassword,
    timeoutMs: config.gatewayTimeoutMs,
    logger,
    interceptors: options.gatewayInterceptors,
  });
  const checkout = createCheckout({
    store,
    gateway,
    cart,
    merchantAccountId: config.merchantAccountId,
    fingerprintSecret: store.fingerprintSecret(),
  });
  const settlement = createSettlementJob({
    store,
    gateway,
    newId: () => `stl-${randomUUID()}`,
    batchItemsMax: config.settlementBatchItemsMax,
    onError: (message, facts) => logger.warn(facts, message),
  });
  const server = createCheckoutServer({
    checkout,
    settlement,
    store,
    cart,
    merchantAccountId: config.merchantAccountId,
    settlementIntervalMs: config.settlementIntervalMs,
    backOffice: { username: config.merchantUsername, password: config.merchantPassword },
    logger,
  });
  const hook = config.webhook;
  const webhooks =
    hook &&
    createWebhookServer({
      receiver: createWebhookReceiver({ store, toleranceSeconds: hook.toleranceSeconds }),
      certFile: hook.certFile,
      keyFile: hook.keyFile,
      bodyMaxBytes: hook.bodyMaxBytes,
      logger,
    });
  let registration: RegistrationLoop | undefined;
  const listenOn = (s: http.Server, port: number, host: string) =>
    new Promise<number>((resolve, reject) => {
      s.once("error", reject);
      s.listen(port, host, () => {
        s.off("error", reject);
        const address = s.address();
        resolve(typeof address === "object" && address ? address.port : port);
      });
    });
  const closeGracefully = async (s: http.Server, graceMs: number) => {
    const closed = new Promise<void>((resolve) => s.close(() => resolve()));
    s.closeIdleConnections();
    const timer = setTimeout(() => s.closeAllConnections(), graceMs);
    await closed;
    clearTimeout(timer);
  };
  let boundWebhookPort: number | undefined;
  return {
    server,
    store,
    settlement,
    webhooks,
    webhookPort: () => boundWebhookPort,
    async listen() {
      const port = await listenOn(server, config.port, config.host);
      if (webhooks && hook) {
        boundWebhookPort = await listenOn(webhooks.server, hook.port, hook.host);
        logger.info(
          { host: hook.host, port: boundWebhookPort, url: hook.url, toleranceSeconds: hook.toleranceSeconds },
          "webhook receiver listening",
        );
        if (hook.url !== undefined) {
          const url = hook.url;
          // Beside the shop, never in its way: until it succeeds, polling and the settlement job are what the shop has.
          registration = startRegistration(
            { admin: gateway.webhooks, store, url, toleranceSeconds: hook.toleranceSeconds },
            {
              retryBaseMs: hook.registerRetryBaseMs,
              retryCapMs: hook.registerRetryCapMs,
              onRetry: (e, attempt, delayMs) =>
                logger.warn(
                  { err: e instanceof Error ? e.message : String(e), attempt, delayMs, url },
                  "webhook endpoint not registered yet; retrying",
                ),
            },
          );
          registration.done.then(
            (r) =>
              r && logger.info({ outcome: r.outcome, endpointId: r.endpointId, url }, "webhook endpoint registered"),
            (e: unknown) =>
              logger.error(
                { err: e instanceof Error ? e.message : String(e), url },
                "webhook endpoint registration stopped",
              ),
          );
        }
      }
      if (config.settlementIntervalMs > 0) settlement.start(config.settlementIntervalMs);
      return port;
    },
    async close(graceMs = 5_000) {
      registration?.stop();
      await Promise.all([
        closeGracefully(server, graceMs),
        webhooks?.server.listening ? closeGracefully(webhooks.server, graceMs) : undefined,
      ]);
      webhooks?.stopWatching();
      await registration?.done.catch(() => undefined);
      await settlement.stop();
      gateway.close();
      store.close();
    },
  };
}
