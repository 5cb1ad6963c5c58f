// The checkout's side of the gateway's webhooks (docs/WEBHOOKS.md): a
// delivery is verified (signature and timestamp, against every secret the
// shop holds), read into the changes it makes to orders, and stored with its
// event id in one transaction, so a redelivery changes nothing and a crash
// either applied it (and recorded the id) or did neither (and the gateway's
// retry applies it). No HTTP, no SQL here: the server hands over the header
// and the raw body; the store applies the changes.
//
// What each event means for an order (found by its auth code):
//   authorization.expired  -> the authorization is EXPIRED; an unsettled order will never be captured
//   authorization.voided   -> the same, VOIDED
//   capture.succeeded      -> captured, with the captured amount
//   capture.failed         -> the capture failed (its reason noted); the settlement job retries as before
//   refund.succeeded       -> the refunded amount (a total, so order and repeats do not matter)
//   settlement.completed   -> each item, as a capture success or failure
// Any other type is acknowledged and ignored (a newer gateway may send more).
import { verifySignature, type VerifyFailure } from "@paygate/webhook-signature";
import type { AuthStatus, OrderChange, ReceivedEvent, WebhookInbox } from "./ports.js";

/** What the checkout subscribes to when it registers its endpoint. */
export const CONSUMED_EVENT_TYPES = [
  "authorization.expired",
  "authorization.voided",
  "capture.succeeded",
  "capture.failed",
  "refund.succeeded",
  "settlement.completed",
] as const;

export type WebhookRefusal = VerifyFailure | "malformed_event";

export type ReceiveOutcome =
  /** Applied now: `ordersChanged` orders of this shop changed (0 for an event about none of them). */
  | { readonly kind: "stored"; readonly eventId: string; readonly type: string; readonly ordersChanged: number }
  /** Seen before: acknowledged, nothing changes. */
  | { readonly kind: "duplicate"; readonly eventId: string; readonly type: string }
  | { readonly kind: "refused"; readonly reason: WebhookRefusal; readonly message: string };

const EVENT_ID = /^evt_[0-9a-f]{24}$/;
const AUTH_CODE = /^[A-Z0-9]{6}$/;
const MINOR = /^(0|[1-9][0-9]{0,18})$/;
const AUTH_STATUSES: readonly AuthStatus[] = ["APPROVED", "DECLINED", "CAPTURED", "VOIDED", "EXPIRED"];
/** An event type is a short dotted name; anything else is not an event. */
const EVENT_TYPE = /^[a-z][a-z_]{0,40}(\.[a-z][a-z_]{0,40}){1,3}$/;
/** settlement.completed carries every item of a batch; the gateway's batches are bounded far below this. */
const SETTLEMENT_ITEMS_MAX = 10_000;

class Malformed extends Error {}

type Json = Record<string, unknown>;

function object(v: unknown, what: string): Json {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Malformed(`${what} is not an object`);
  return v as Json;
}

function text(o: Json, key: string, what: string): string {
  const v = o[key];
  if (typeof v !== "string") throw new Malformed(`${what}.${key} is not a string`);
  return v;
}

function minor(o: Json, key: string, what: string): bigint {
  const v = text(o, key, what);
  if (!MINOR.test(v)) throw new Malformed(`${what}.${key} is not a decimal amount of minor units`);
  return BigInt(v);
}

function authCode(o: Json, key: string, what: string): string {
  const v = text(o, key, what);
  if (!AUTH_CODE.test(v)) throw new Malformed(`${what}.${key} is not an auth code`);
  return v;
}

/** The authorization as it now is, carried by authorization.*, capture.* and refund.* events. */
function authorizationSnapshot(
  v: unknown,
  what: string,
): { authCode: string; status: AuthStatus; refundedMinor: bigint } {
  const a = object(v, what);
  const status = text(a, "status", what);
  if (!(AUTH_STATUSES as readonly string[]).includes(status))
    throw new Malformed(`${what}.status is not an authorization status`);
  return {
    authCode: authCode(a, "auth_code", what),
    status: status as AuthStatus,
    refundedMinor: minor(a, "refunded_minor", what),
  };
}

/** The envelope every event has: { id, type, created_at, object_id, data }. */
function envelope(body: string): ReceivedEvent & { readonly data: Json } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new Malformed("the body is not JSON");
  }
  const e = object(parsed, "the event");
  const eventId = text(e, "id", "event");
  if (!EVENT_ID.test(eventId)) throw new Malformed("event.id is not an event id");
  const type = text(e, "type", "event");
  if (!EVENT_TYPE.test(type)) throw new Malformed("event.type is not an event type");
  const objectId = text(e, "object_id", "event");
  if (objectId.length === 0 || objectId.length > 200) throw new Malformed("event.object_id is empty or too long");
  const createdAtMs = Date.parse(text(e, "created_at", "event"));
  if (!Number.isFinite(createdAtMs)) throw new Malformed("event.created_at is not a time");
  return { eventId, type, objectId, createdAtMs, data: object(e.data, "event.data") };
}

/** The changes one event makes to the shop's orders (by auth code); [] for a type the shop does not act on. */
export function orderChangesOf(type: string, data: Json): OrderChange[] {
  switch (type) {
    case "authorization.expired":
    case "authorization.voided": {
      const a = authorizationSnapshot(data, "data");
      return [
        { authCode: a.authCode, authStatus: a.status, closed: type === "authorization.expired" ? "expired" : "voided" },
      ];
    }
    case "capture.succeeded": {
      const a = authorizationSnapshot(data.authorization, "data.authorization");
      const code = authCode(data, "auth_code", "data");
      if (code !== a.authCode) throw new Malformed("data.auth_code and data.authorization.auth_code differ");
      return [{ authCode: code, authStatus: a.status, capturedMinor: minor(data, "captured_minor", "data") }];
    }
    case "capture.failed": {
      const a = authorizationSnapshot(data.authorization, "data.authorization");
      const code = authCode(data, "auth_code", "data");
      if (code !== a.authCode) throw new Malformed("data.auth_code and data.authorization.auth_code differ");
      return [
        { authCode: code, authStatus: a.status, captureFailedReason: text(data, "reason", "data") || "capture_failed" },
      ];
    }
    case "refund.succeeded": {
      const a = authorizationSnapshot(data.authorization, "data.authorization");
      return [{ authCode: a.authCode, authStatus: a.status, refundedMinor: a.refundedMinor }];
    }
    case "settlement.completed": {
      const items = data.items;
      if (!Array.isArray(items) || items.length > SETTLEMENT_ITEMS_MAX)
        throw new Malformed("data.items is not a list of settlement items");
      return items.map((raw, i): OrderChange => {
        const item = object(raw, `data.items[${i}]`);
        const code = authCode(item, "auth_code", `data.items[${i}]`);
        const status = text(item, "status", `data.items[${i}]`);
        if (status === "CAPTURED")
          return { authCode: code, capturedMinor: minor(item, "captured_minor", `data.items[${i}]`) };
        if (status === "FAILED")
          return { authCode: code, captureFailedReason: text(item, "reason", `data.items[${i}]`) || "capture_failed" };
        throw new Malformed(`data.items[${i}].status is neither CAPTURED nor FAILED`);
      });
    }
    default:
      return [];
  }
}

export interface WebhookReceiverDeps {
  readonly store: WebhookInbox;
  /** |now - t| allowed, in seconds (the replay window). */
  readonly toleranceSeconds: number;
  readonly clock?: () => number;
}

export interface WebhookReceiver {
  /** `signature` is the Paygate-Signature header; `body` the raw body, exactly as received. A store failure throws. */
  receive(signature: string | undefined, body: string): ReceiveOutcome;
}

export function createWebhookReceiver(deps: WebhookReceiverDeps): WebhookReceiver {
  const clock = deps.clock ?? Date.now;
  return {
    receive(signature, body) {
      const nowMs = clock();
      // Before anything in the body is believed: an unsigned body is not read.
      const verdict = verifySignature(
        signature,
        body,
        deps.store.webhookSecrets(nowMs),
        Math.floor(nowMs / 1000),
        deps.toleranceSeconds,
      );
      if (!verdict.ok) return { kind: "refused", reason: verdict.reason, message: refusalMessage(verdict.reason) };
      let event: ReturnType<typeof envelope>;
      let changes: OrderChange[];
      try {
        event = envelope(body);
        changes = orderChangesOf(event.type, event.data);
      } catch (e) {
        if (e instanceof Malformed) return { kind: "refused", reason: "malformed_event", message: e.message };
        throw e;
      }
      const { eventId, type, objectId, createdAtMs } = event;
      const r = deps.store.applyWebhookEvent({ eventId, type, objectId, createdAtMs }, changes, nowMs);
      return r.duplicate
        ? { kind: "duplicate", eventId, type }
        : { kind: "stored", eventId, type, ordersChanged: r.ordersChanged };
    },
  };
}

function refusalMessage(reason: VerifyFailure): string {
  switch (reason) {
    case "missing_signature":
      return "no Paygate-Signature header";
    case "malformed_signature":
      return "the Paygate-Signature header is not t=<seconds>,v1=<hex>[,v1=<hex>...]";
    case "timestamp_out_of_tolerance":
      return "the signature's timestamp is outside the replay window";
    case "signature_mismatch":
      return "no signature matches a secret of this endpoint";
  }
}
