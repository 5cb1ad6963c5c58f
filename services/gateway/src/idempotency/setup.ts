// Wiring for main.ts: with REDIS_URL the coordinator's transfer is wrapped by
// the Redis fast path; without it the coordinator (and its log) is used as is.
import type { GatewayConfig } from "../config.js";
import type { Coordinator, EventLogger } from "../domain/coordinator.js";
import type { Directory } from "../domain/ports.js";
import { withIdempotencyFastPath, type FastPathMetrics } from "./fast-path.js";
import { createRedisCache } from "./redis-cache.js";

export interface IdempotencyWiring {
  readonly coordinator: Coordinator;
  close(): Promise<void>;
}

export function setupIdempotency(
  config: Pick<GatewayConfig, "redisUrl" | "idempotencyTtlMs" | "redisCommandTimeoutMs" | "replica">,
  deps: {
    readonly coordinator: Coordinator;
    readonly directory: Directory;
    readonly logger: EventLogger;
    readonly metrics?: FastPathMetrics;
    readonly sharedLog?: boolean;
  },
): IdempotencyWiring {
  if (config.redisUrl === undefined) return { coordinator: deps.coordinator, close: async () => {} };
  const cache = createRedisCache({
    url: config.redisUrl,
    logger: deps.logger,
    commandTimeoutMs: config.redisCommandTimeoutMs,
    connectionName: `paygate-${config.replica}`,
  });
  const coordinator = withIdempotencyFastPath({
    inner: deps.coordinator,
    cache,
    directory: deps.directory,
    replica: config.replica,
    ttlMs: config.idempotencyTtlMs,
    sharedLog: deps.sharedLog ?? false,
    logger: deps.logger,
    ...(deps.metrics ? { metrics: deps.metrics } : {}),
  });
  return { coordinator, close: () => cache.close() };
}
