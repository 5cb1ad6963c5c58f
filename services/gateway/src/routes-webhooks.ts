// Proto <-> domain for WebhookService (signed-in customers and merchants). No
// rules here: the use cases check URLs, event types and ownership. A secret
// is in a response once and never in a log field.
import type { ConnectRouter } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  WebhookDeliveryStatus,
  WebhookEndpointStatus,
  WebhookService,
  type WebhookAttemptSchema,
  type WebhookDeliverySchema,
  type WebhookEndpointSchema,
} from "@paygate/proto/gateway";
import type { Webhooks } from "./domain/webhooks.js";
import type { DeliveryAttempt, WebhookDelivery, WebhookEndpoint } from "./domain/webhooks-ports.js";
import { callerOf, logFields, unwrap } from "./route-support.js";

const ENDPOINT_STATUS = { ENABLED: WebhookEndpointStatus.ENABLED, DISABLED: WebhookEndpointStatus.DISABLED } as const;
const DELIVERY_STATUS = {
  PENDING: WebhookDeliveryStatus.PENDING,
  DELIVERED: WebhookDeliveryStatus.DELIVERED,
  FAILED: WebhookDeliveryStatus.FAILED,
} as const;

export function toProtoEndpoint(e: WebhookEndpoint): MessageInitShape<typeof WebhookEndpointSchema> {
  return {
    endpointId: e.endpointId,
    url: e.url,
    eventTypes: [...e.eventTypes],
    status: ENDPOINT_STATUS[e.status],
    createdAt: timestampFromMs(e.createdAtMs),
  };
}

export function toProtoDelivery(d: WebhookDelivery): MessageInitShape<typeof WebhookDeliverySchema> {
  return {
    deliveryId: d.deliveryId,
    endpointId: d.endpointId,
    eventId: d.eventId,
    eventType: d.eventType,
    objectId: d.objectId,
    status: DELIVERY_STATUS[d.status],
    attempts: d.attempts,
    ...(d.status === "PENDING" ? { nextAttemptAt: timestampFromMs(d.nextAttemptAtMs) } : {}),
    lastStatusCode: d.lastStatusCode,
    lastError: d.lastError,
    createdAt: timestampFromMs(d.createdAtMs),
    ...(d.deliveredAtMs > 0 ? { deliveredAt: timestampFromMs(d.deliveredAtMs) } : {}),
  };
}

function toProtoAttempt(a: DeliveryAttempt): MessageInitShape<typeof WebhookAttemptSchema> {
  return {
    attempt: a.attempt,
    at: timestampFromMs(a.atMs),
    statusCode: a.statusCode,
    latencyMs: BigInt(a.latencyMs),
    error: a.error,
  };
}

/** Seconds -> ms for RollSecret, bounded before the multiplication (the use case checks the range). */
function overlapMs(seconds: bigint | undefined): number | undefined {
  if (seconds === undefined) return undefined;
  if (seconds < 0n || seconds > 1_000_000_000n) return -1;
  return Number(seconds) * 1000;
}

export function webhookRoutes(webhooks: Webhooks): (router: ConnectRouter) => void {
  return (router) => {
    router.service(WebhookService, {
      async createEndpoint(req, ctx) {
        const created = unwrap(
          await webhooks.createEndpoint(callerOf(ctx).userId, { url: req.url, eventTypes: req.eventTypes }),
        );
        logFields(ctx).endpointId = created.endpoint.endpointId;
        return { endpoint: toProtoEndpoint(created.endpoint), secret: created.secret };
      },
      async listEndpoints(_req, ctx) {
        return { endpoints: unwrap(await webhooks.listEndpoints(callerOf(ctx).userId)).map(toProtoEndpoint) };
      },
      async deleteEndpoint(req, ctx) {
        unwrap(await webhooks.deleteEndpoint(callerOf(ctx).userId, req.endpointId));
        logFields(ctx).endpointId = req.endpointId;
        return {};
      },
      async rollSecret(req, ctx) {
        const rolled = unwrap(
          await webhooks.rollSecret(callerOf(ctx).userId, req.endpointId, overlapMs(req.overlapSeconds)),
        );
        logFields(ctx).endpointId = req.endpointId;
        return { secret: rolled.secret, previousExpiresAt: timestampFromMs(rolled.previousExpiresAtMs) };
      },
      async listDeliveries(req, ctx) {
        const page = unwrap(
          await webhooks.listDeliveries(callerOf(ctx).userId, req.endpointId, req.pageSize, req.pageToken),
        );
        return { deliveries: page.deliveries.map(toProtoDelivery), nextPageToken: page.nextPageToken };
      },
      async getDelivery(req, ctx) {
        const d = unwrap(await webhooks.getDelivery(callerOf(ctx).userId, req.deliveryId));
        return { delivery: toProtoDelivery(d.delivery), attempts: d.attempts.map(toProtoAttempt) };
      },
      async redeliver(req, ctx) {
        const d = unwrap(await webhooks.redeliver(callerOf(ctx).userId, req.deliveryId));
        logFields(ctx).deliveryId = d.deliveryId;
        return { delivery: toProtoDelivery(d) };
      },
    });
  };
}
