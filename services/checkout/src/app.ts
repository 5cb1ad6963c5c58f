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
import { createCheckoutServer } from "./http-server.js";
import { openCheckoutStore, type OpenedCheckoutStore } from "./store/checkout-store.js";

export interface CheckoutApp {
  readonly server: http.Server;
  readonly store: OpenedCheckoutStore;
  readonly settlement: SettlementJob;
  /** Binds, starts the settlement schedule; resolves with the port. */
  listen(): Promise<number>;
  /** Stops taking requests, lets in-flight ones finish (up to graceMs), stops the job, closes the store. */
  close(graceMs?: number): Promise<void>;
}

export interface CheckoutAppOptions {
  readonly cart?: Cart;
  /** On the gateway transport (tracing, client metrics). */
  readonly gatewayInterceptors?: Interceptor[];
}

export function createCheckoutApp(config: CheckoutConfig, logger: Logger, options: CheckoutAppOptions = {}): CheckoutApp {
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
  const checkout = createCheckout({ store, gateway, cart, merchantAccountId: config.merchantAccountId, fingerprintSecret: store.fingerprintSecret() });
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
  return {
    server,
    store,
    settlement,
    async listen() {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(config.port, config.host, () => {
          server.off("error", reject);
          resolve();
        });
      });
      if (config.settlementIntervalMs > 0) settlement.start(config.settlementIntervalMs);
      const address = server.address();
      return typeof address === "object" && address ? address.port : config.port;
    },
    async close(graceMs = 5_000) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => server.closeAllConnections(), graceMs);
      await closed;
      clearTimeout(timer);
      await settlement.stop();
      gateway.close();
      store.close();
    },
  };
}
