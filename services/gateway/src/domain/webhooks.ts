// Webhook endpoints and their delivery log, as a signed-in user manages them
// (DESIGN.md §12). A user registers an HTTPS endpoint for some event types and
// gets its signing secret once; rolls it with an overlap so the receiver can
// switch without losing a delivery; reads what was sent and how each attempt
// went; asks for a delivery again. Everything is the caller's own: another
// user's endpoint or delivery answers exactly like one that does not exist,
// so ids cannot be probed. The sending itself is webhook-dispatcher.ts.
import { fail, ok, type Result } from "./model.js";
import type { Clock } from "./ports.js";
import { checkWebhookUrl, type WebhookUrlPolicy } from "./webhook-urls.js";
import {
  isWebhookEventType,
  WEBHOOK_EVENT_TYPES,
  type DeliveryAttempt,
  type WebhookDelivery,
  type WebhookEndpoint,
  type WebhookEventType,
  type WebhookStore,
} from "./webhooks-ports.js";

export const ENDPOINTS_PER_USER_MAX = 16;
export const SECRET_PREFIX = "whsec_";
const SECRET_BYTES = 32;
const ID_BYTES = 12;
const HOUR_MS = 3_600_000;
export const ROLL_OVERLAP_DEFAULT_MS = 24 * HOUR_MS;
export const ROLL_OVERLAP_MAX_MS = 7 * 24 * HOUR_MS;
export const DELIVERY_PAGE_DEFAULT = 50;
export const DELIVERY_PAGE_MAX = 200;

export interface WebhooksOptions {
  readonly store: WebhookStore;
  readonly clock: Clock;
  /** Cryptographic randomness (node:crypto's randomBytes in main.ts). */
  readonly randomBytes: (n: number) => Uint8Array;
  readonly urlPolicy: WebhookUrlPolicy;
  readonly endpointsMax?: number;
}

export interface CreateEndpointInput {
  readonly url: string;
  readonly eventTypes: readonly string[];
}

export interface CreatedEndpoint {
  readonly endpoint: WebhookEndpoint;
  /** Shown once. */
  readonly secret: string;
}

export interface RolledSecret {
  readonly secret: string;
  readonly previousExpiresAtMs: number;
}

export interface DeliveryPage {
  readonly deliveries: readonly WebhookDelivery[];
  /** "" when there is no older delivery. */
  readonly nextPageToken: string;
}

export interface DeliveryWithAttempts {
  readonly delivery: WebhookDelivery;
  readonly attempts: readonly DeliveryAttempt[];
}

export interface Webhooks {
  createEndpoint(callerUserId: string, input: CreateEndpointInput): Promise<Result<CreatedEndpoint>>;
  listEndpoints(callerUserId: string): Promise<Result<WebhookEndpoint[]>>;
  deleteEndpoint(callerUserId: string, endpointId: string): Promise<Result<{ endpointId: string }>>;
  /** `overlapMs` undefined: the default overlap (24 h); 0: the previous secret stops signing now. */
  rollSecret(callerUserId: string, endpointId: string, overlapMs: number | undefined): Promise<Result<RolledSecret>>;
  listDeliveries(
    callerUserId: string,
    endpointId: string,
    pageSize: number,
    pageToken: string,
  ): Promise<Result<DeliveryPage>>;
  getDelivery(callerUserId: string, deliveryId: string): Promise<Result<DeliveryWithAttempts>>;
  /** A delivered or failed delivery becomes due now; a pending one is answered as it is. */
  redeliver(callerUserId: string, deliveryId: string): Promise<Result<WebhookDelivery>>;
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

export function newEndpointId(randomBytes: (n: number) => Uint8Array): string {
  return `we_${hex(randomBytes(ID_BYTES))}`;
}

export function newDeliveryId(randomBytes: (n: number) => Uint8Array): string {
  return `wd_${hex(randomBytes(ID_BYTES))}`;
}

/** "whsec_" + base64url(32 random bytes): 43 characters after the prefix. */
export function newWebhookSecret(randomBytes: (n: number) => Uint8Array): string {
  const bytes = randomBytes(SECRET_BYTES);
  if (bytes.length !== SECRET_BYTES) throw new Error(`randomBytes gave ${bytes.length} bytes, wanted ${SECRET_BYTES}`);
  return SECRET_PREFIX + Buffer.from(bytes).toString("base64url");
}

/** Known types, at least one, each once, in the canonical order. */
export function checkEventTypes(types: readonly string[]): Result<WebhookEventType[]> {
  const field = { field: "event_types" };
  if (types.length === 0)
    return fail(
      "invalid_event_type",
      `event_types must name at least one of: ${WEBHOOK_EVENT_TYPES.join(", ")}`,
      field,
    );
  if (types.length > WEBHOOK_EVENT_TYPES.length * 4) return fail("invalid_event_type", "too many event_types", field);
  for (const t of types) {
    if (!isWebhookEventType(t))
      return fail(
        "invalid_event_type",
        `unknown event type ${JSON.stringify(t.slice(0, 64))}; known: ${WEBHOOK_EVENT_TYPES.join(", ")}`,
        field,
      );
  }
  return ok(WEBHOOK_EVENT_TYPES.filter((t) => types.includes(t)));
}

const ENDPOINT_NOT_FOUND = (endpointId: string) =>
  fail("endpoint_not_found", `no endpoint ${JSON.stringify(endpointId.slice(0, 64))}`, {
    endpoint_id: endpointId.slice(0, 64),
  });
const DELIVERY_NOT_FOUND = (deliveryId: string) =>
  fail("delivery_not_found", `no delivery ${JSON.stringify(deliveryId.slice(0, 64))}`, {
    delivery_id: deliveryId.slice(0, 64),
  });

export function createWebhooks(o: WebhooksOptions): Webhooks {
  const { store, clock } = o;
  const endpointsMax = o.endpointsMax ?? ENDPOINTS_PER_USER_MAX;

  /** The caller's endpoint, or undefined for an unknown one and another user's alike. */
  async function ownEndpoint(callerUserId: string, endpointId: string): Promise<WebhookEndpoint | undefined> {
    if (endpointId === "" || endpointId.length > 64) return undefined;
    const e = await store.endpointById(endpointId);
    return e?.ownerUserId === callerUserId ? e : undefined;
  }

  async function ownDelivery(callerUserId: string, deliveryId: string): Promise<WebhookDelivery | undefined> {
    if (deliveryId === "" || deliveryId.length > 64) return undefined;
    const d = await store.deliveryById(deliveryId);
    if (!d) return undefined;
    return (await ownEndpoint(callerUserId, d.endpointId)) ? d : undefined;
  }

  return {
    async createEndpoint(callerUserId, input) {
      const url = checkWebhookUrl(input.url, o.urlPolicy);
      if (!url.ok) return url;
      const types = checkEventTypes(input.eventTypes);
      if (!types.ok) return types;
      // A race of two creates may pass this together and end one over: the limit bounds abuse, not an invariant.
      if ((await store.endpointsOf(callerUserId)).length >= endpointsMax) {
        return fail("too_many_endpoints", `at most ${endpointsMax} webhook endpoints per user; delete one first`, {
          max: String(endpointsMax),
        });
      }
      const nowMs = clock.nowMs();
      const endpoint: WebhookEndpoint = {
        endpointId: newEndpointId(o.randomBytes),
        ownerUserId: callerUserId,
        url: url.value,
        eventTypes: types.value,
        status: "ENABLED",
        createdAtMs: nowMs,
      };
      const secret = newWebhookSecret(o.randomBytes);
      await store.createEndpoint(endpoint, {
        endpointId: endpoint.endpointId,
        secret,
        createdAtMs: nowMs,
        expiresAtMs: undefined,
      });
      return ok({ endpoint, secret });
    },

    async listEndpoints(callerUserId) {
      const all = await store.endpointsOf(callerUserId);
      return ok([...all].sort((a, b) => a.createdAtMs - b.createdAtMs || a.endpointId.localeCompare(b.endpointId)));
    },

    async deleteEndpoint(callerUserId, endpointId) {
      if (!(await ownEndpoint(callerUserId, endpointId))) return ENDPOINT_NOT_FOUND(endpointId);
      // Deleted meanwhile (another call, another replica): the same answer as unknown.
      if (!(await store.deleteEndpoint(endpointId))) return ENDPOINT_NOT_FOUND(endpointId);
      return ok({ endpointId });
    },

    async rollSecret(callerUserId, endpointId, overlapMs) {
      const overlap = overlapMs ?? ROLL_OVERLAP_DEFAULT_MS;
      if (!Number.isSafeInteger(overlap) || overlap < 0 || overlap > ROLL_OVERLAP_MAX_MS) {
        return fail("invalid_argument", `overlap must be from 0 to ${ROLL_OVERLAP_MAX_MS / 1000} seconds (7 days)`, {
          field: "overlap_seconds",
        });
      }
      if (!(await ownEndpoint(callerUserId, endpointId))) return ENDPOINT_NOT_FOUND(endpointId);
      const nowMs = clock.nowMs();
      const secret = newWebhookSecret(o.randomBytes);
      const previousExpiresAtMs = nowMs + overlap;
      await store.rollSecret(
        endpointId,
        { endpointId, secret, createdAtMs: nowMs, expiresAtMs: undefined },
        previousExpiresAtMs,
        nowMs,
      );
      return ok({ secret, previousExpiresAtMs });
    },

    async listDeliveries(callerUserId, endpointId, pageSize, pageToken) {
      if (!Number.isSafeInteger(pageSize) || pageSize < 0 || pageSize > DELIVERY_PAGE_MAX) {
        return fail(
          "invalid_argument",
          `page_size must be from 0 (the default, ${DELIVERY_PAGE_DEFAULT}) to ${DELIVERY_PAGE_MAX}`,
          { field: "page_size" },
        );
      }
      let beforeSeq: bigint | undefined;
      if (pageToken !== "") {
        if (!/^[1-9][0-9]{0,18}$/.test(pageToken))
          return fail("invalid_argument", "page_token is not one this service gave", { field: "page_token" });
        beforeSeq = BigInt(pageToken);
      }
      if (!(await ownEndpoint(callerUserId, endpointId))) return ENDPOINT_NOT_FOUND(endpointId);
      const limit = pageSize === 0 ? DELIVERY_PAGE_DEFAULT : pageSize;
      // One more than asked tells whether an older page exists.
      const rows = await store.deliveriesOf(endpointId, limit + 1, beforeSeq);
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return ok({ deliveries: page, nextPageToken: rows.length > limit && last ? String(last.eventSeq) : "" });
    },

    async getDelivery(callerUserId, deliveryId) {
      const delivery = await ownDelivery(callerUserId, deliveryId);
      if (!delivery) return DELIVERY_NOT_FOUND(deliveryId);
      const attempts = await store.attemptsOf(deliveryId);
      return ok({ delivery, attempts: [...attempts].sort((a, b) => a.attempt - b.attempt) });
    },

    async redeliver(callerUserId, deliveryId) {
      const delivery = await ownDelivery(callerUserId, deliveryId);
      if (!delivery) return DELIVERY_NOT_FOUND(deliveryId);
      if (delivery.status !== "PENDING") await store.redeliver(deliveryId, clock.nowMs());
      const now = await store.deliveryById(deliveryId);
      return now ? ok(now) : DELIVERY_NOT_FOUND(deliveryId);
    },
  };
}
