// Webhooks on the shared store (DESIGN.md §12): the same tables as SQLite's,
// written by every replica at once. Fan-out and claims take rows with FOR
// UPDATE SKIP LOCKED, so replicas share the work and never claim the same
// delivery; an attempt is recorded only while its replica's claim holds.
import { assert } from "@paygate/money";
import type {
  AttemptOutcome,
  ClaimedDelivery,
  CommittedTransfer,
  DeliveryAttempt,
  DeliveryStatus,
  EndpointStatus,
  OutboxEvent,
  StoredEvent,
  WebhookDelivery,
  WebhookEndpoint,
  WebhookEventType,
  WebhookSecret,
  WebhookStore,
} from "../../domain/webhooks-ports.js";
import { WEBHOOK_ERROR_LENGTH_MAX } from "../webhooks-store.js";
import type { Row, SqlDriver, SqlQuery } from "./driver.js";

// int8 arrives as a string from both drivers; times and counters fit a number.
const big = (v: unknown): bigint => (typeof v === "bigint" ? v : BigInt(v as string | number));
const num = (v: unknown): number => Number(v);
const str = (v: unknown): string => (v === null || v === undefined ? "" : String(v));

/**
 * The outbox insert, in the caller's transaction (the one making the change):
 * once per event id, and only for events whose owner has an enabled endpoint
 * subscribed to their type (nobody else would get a delivery of it). Returns
 * how many were new.
 */
export async function insertOutboxEvents(tx: SqlQuery, events: readonly OutboxEvent[]): Promise<number> {
  if (events.length === 0) return 0;
  const rows = await tx.query(
    `INSERT INTO webhook_events (event_id, type, object_id, owner_user_id, created_at_ms, body)
     SELECT x.event_id, x.type, x.object_id, x.owner_user_id, x.created_at_ms, x.body
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[]) WITH ORDINALITY
          AS x(event_id, type, object_id, owner_user_id, created_at_ms, body, ord)
     WHERE EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.owner_user_id = x.owner_user_id AND w.status = 'ENABLED' AND x.type = ANY (w.event_types))
     ORDER BY x.ord
     ON CONFLICT (event_id) DO NOTHING RETURNING 1`,
    [
      events.map((e) => e.eventId),
      events.map((e) => e.type),
      events.map((e) => e.objectId),
      events.map((e) => e.ownerUserId),
      events.map((e) => String(e.createdAtMs)),
      events.map((e) => e.bodyJson),
    ],
  );
  return rows.length;
}

const toEndpoint = (r: Row): WebhookEndpoint => ({
  endpointId: str(r.endpoint_id),
  ownerUserId: str(r.owner_user_id),
  url: str(r.url),
  eventTypes: (r.event_types as string[]).map(String) as WebhookEventType[],
  status: str(r.status) as EndpointStatus,
  createdAtMs: num(r.created_at_ms),
});

const toSecret = (r: Row): WebhookSecret => ({
  endpointId: str(r.endpoint_id),
  secret: str(r.secret),
  createdAtMs: num(r.created_at_ms),
  expiresAtMs: r.expires_at_ms === null || r.expires_at_ms === undefined ? undefined : num(r.expires_at_ms),
});

const toEvent = (r: Row): StoredEvent => ({
  seq: big(r.seq),
  eventId: str(r.event_id),
  type: str(r.type) as WebhookEventType,
  objectId: str(r.object_id),
  ownerUserId: str(r.owner_user_id),
  createdAtMs: num(r.created_at_ms),
  bodyJson: str(r.body),
});

const toDelivery = (r: Row): WebhookDelivery => ({
  deliveryId: str(r.delivery_id),
  endpointId: str(r.endpoint_id),
  eventSeq: big(r.event_seq),
  eventId: str(r.event_id),
  eventType: str(r.event_type) as WebhookEventType,
  objectId: str(r.object_id),
  status: str(r.status) as DeliveryStatus,
  attempts: num(r.attempts),
  nextAttemptAtMs: num(r.next_attempt_at_ms),
  lastStatusCode: num(r.last_status_code),
  lastError: str(r.last_error),
  createdAtMs: num(r.created_at_ms),
  deliveredAtMs: num(r.delivered_at_ms),
});

const toAttempt = (r: Row): DeliveryAttempt => ({
  deliveryId: str(r.delivery_id),
  attempt: num(r.attempt),
  atMs: num(r.at_ms),
  statusCode: num(r.status_code),
  latencyMs: num(r.latency_ms),
  error: str(r.error),
  replica: str(r.replica),
});

const one = <T>(rows: readonly T[]): T | undefined => rows[0];

export function createPostgresWebhookStore(q: SqlQuery, driver: SqlDriver): WebhookStore {
  const endpointById = async (endpointId: string, tx: SqlQuery = q) => {
    const r = one(await tx.query("SELECT * FROM webhook_endpoints WHERE endpoint_id = $1", [endpointId]));
    return r ? toEndpoint(r) : undefined;
  };

  async function materialize(
    tx: SqlQuery,
    limit: number,
    build: (t: CommittedTransfer) => OutboxEvent,
  ): Promise<number> {
    // The cursor row's lock serializes runs (a second replica waits, then reads the moved cursor).
    const after = big(
      one(await tx.query("SELECT last_sequence FROM webhook_transfer_cursor WHERE id = 1 FOR UPDATE"))?.last_sequence ??
        0,
    );
    // Why the cursor never skips a transfer: a sequence is handed out by
    // paygate_apply under the history_sequence row lock, held until that
    // transaction commits, together with history_sequence.last. So in any one
    // snapshot, every txn with sequence <= history_sequence.last is committed
    // and visible, and any later decision gets a higher number. Reading only up
    // to that bound, in the same statement (one snapshot), sees a gap-free
    // prefix: a transfer still committing is past the bound and read next time.
    const rows = await tx.query(
      `SELECT t.txn_id, t.sequence, t.status, t.from_account_id, t.to_account_id, t.amount_minor, t.currency, t.memo, t.decided_at,
              -- Only a payee with an endpoint for the event gets one: no body is built for the others (most transfers).
              CASE WHEN EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.owner_user_id = a.owner_user_id AND w.status = 'ENABLED'
                                AND 'transfer.committed' = ANY (w.event_types))
                   THEN a.owner_user_id END AS payee_user_id
       FROM txns t LEFT JOIN accounts a ON a.account_id = t.to_account_id
       WHERE t.sequence > $1 AND t.sequence <= (SELECT last FROM history_sequence WHERE id = 1)
       ORDER BY t.sequence LIMIT $2`,
      [after.toString(), limit],
    );
    const events = rows
      .filter((r) => str(r.status) === "COMMITTED" && r.payee_user_id !== null && r.payee_user_id !== undefined)
      .map((r) =>
        build({
          txnId: str(r.txn_id),
          fromAccountId: str(r.from_account_id),
          toAccountId: str(r.to_account_id),
          amountMinor: big(r.amount_minor),
          currency: str(r.currency),
          memo: str(r.memo),
          decidedAtMs: num(r.decided_at),
          payeeUserId: str(r.payee_user_id),
        }),
      );
    const n = await insertOutboxEvents(tx, events);
    const last = rows.at(-1);
    if (last)
      await tx.query("UPDATE webhook_transfer_cursor SET last_sequence = $1 WHERE id = 1", [str(last.sequence)]);
    return n;
  }

  async function fanOut(tx: SqlQuery, limit: number, nowMs: number, newDeliveryId: () => string): Promise<number> {
    // SKIP LOCKED: replicas fanning out at once take different events. An
    // object's later event may so get its delivery first; claimDue holds such
    // a delivery back until the earlier event is fanned out too.
    const events = (
      await tx.query("SELECT * FROM webhook_events WHERE NOT fanned_out ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED", [
        limit,
      ])
    ).map(toEvent);
    if (events.length === 0) return 0;
    const owners = [...new Set(events.map((e) => e.ownerUserId))];
    const endpoints = (
      await tx.query(
        "SELECT endpoint_id, owner_user_id, event_types FROM webhook_endpoints WHERE owner_user_id = ANY ($1::text[]) AND status = 'ENABLED' ORDER BY endpoint_id",
        [owners],
      )
    ).map((r) => ({
      endpointId: str(r.endpoint_id),
      ownerUserId: str(r.owner_user_id),
      types: (r.event_types as string[]).map(String),
    }));
    const rows: { id: string; endpointId: string; e: StoredEvent }[] = [];
    for (const e of events) {
      for (const ep of endpoints)
        if (ep.ownerUserId === e.ownerUserId && ep.types.includes(e.type))
          rows.push({ id: newDeliveryId(), endpointId: ep.endpointId, e });
    }
    if (rows.length > 0) {
      await tx.query(
        `INSERT INTO webhook_deliveries (delivery_id, endpoint_id, event_seq, event_id, event_type, object_id, status, next_attempt_at_ms, created_at_ms)
         SELECT x.delivery_id, x.endpoint_id, x.event_seq, x.event_id, x.event_type, x.object_id, 'PENDING', $7::bigint, $7::bigint
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[]) AS x(delivery_id, endpoint_id, event_seq, event_id, event_type, object_id)
         ON CONFLICT (endpoint_id, event_id) DO NOTHING`,
        [
          rows.map((r) => r.id),
          rows.map((r) => r.endpointId),
          rows.map((r) => r.e.seq.toString()),
          rows.map((r) => r.e.eventId),
          rows.map((r) => r.e.type),
          rows.map((r) => r.e.objectId),
          nowMs,
        ],
      );
    }
    await tx.query("UPDATE webhook_events SET fanned_out = true WHERE seq = ANY ($1::bigint[])", [
      events.map((e) => e.seq.toString()),
    ]);
    return events.length;
  }

  async function claimDue(
    replica: string,
    nowMs: number,
    claimUntilMs: number,
    limit: number,
  ): Promise<ClaimedDelivery[]> {
    // SKIP LOCKED: a row another replica is claiming right now is left to it;
    // the outer WHERE re-checks the claim on the row as it is after any wait.
    const claimed = (
      await q.query(
        `WITH due AS (
           SELECT d.delivery_id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.endpoint_id = d.endpoint_id
           WHERE d.status = 'PENDING' AND d.next_attempt_at_ms <= $1 AND d.claim_until_ms <= $1 AND e.status = 'ENABLED'
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.endpoint_id = d.endpoint_id AND p.object_id = d.object_id
                             AND p.status = 'PENDING' AND p.event_seq < d.event_seq)
             AND NOT EXISTS (SELECT 1 FROM webhook_events v WHERE NOT v.fanned_out AND v.owner_user_id = e.owner_user_id
                             AND v.object_id = d.object_id AND v.seq < d.event_seq)
           ORDER BY d.event_seq LIMIT $4
           FOR UPDATE OF d SKIP LOCKED)
         UPDATE webhook_deliveries w SET claimed_by = $2, claim_until_ms = $3 FROM due
         WHERE w.delivery_id = due.delivery_id AND w.status = 'PENDING' AND w.claim_until_ms <= $1
         RETURNING w.*`,
        [nowMs, replica, claimUntilMs, limit],
      )
    )
      .map(toDelivery)
      .sort((a, b) => (a.eventSeq < b.eventSeq ? -1 : a.eventSeq > b.eventSeq ? 1 : 0));
    if (claimed.length === 0) return [];
    const events = new Map(
      (
        await q.query("SELECT * FROM webhook_events WHERE seq = ANY ($1::bigint[])", [
          claimed.map((d) => d.eventSeq.toString()),
        ])
      )
        .map(toEvent)
        .map((e) => [e.seq, e] as const),
    );
    const endpoints = new Map(
      (
        await q.query("SELECT * FROM webhook_endpoints WHERE endpoint_id = ANY ($1::text[])", [
          [...new Set(claimed.map((d) => d.endpointId))],
        ])
      )
        .map(toEndpoint)
        .map((e) => [e.endpointId, e] as const),
    );
    const out: ClaimedDelivery[] = [];
    for (const delivery of claimed) {
      const event = events.get(delivery.eventSeq);
      const endpoint = endpoints.get(delivery.endpointId);
      // An endpoint deleted right after the claim took its deliveries with it: nothing to send.
      if (event && endpoint) out.push({ delivery, event, endpoint });
    }
    return out;
  }

  async function recordAttempt(tx: SqlQuery, a: DeliveryAttempt, outcome: AttemptOutcome): Promise<boolean> {
    const endMs = a.atMs + a.latencyMs;
    const held = one(
      await tx.query(
        "SELECT attempts FROM webhook_deliveries WHERE delivery_id = $1 AND status = 'PENDING' AND claimed_by = $2 AND claim_until_ms >= $3 FOR UPDATE",
        [a.deliveryId, a.replica, endMs],
      ),
    );
    if (!held) return false; // the claim ran out (another replica may hold it now) or the delivery moved on
    const attempt = num(held.attempts) + 1;
    const error = a.error.slice(0, WEBHOOK_ERROR_LENGTH_MAX);
    await tx.query(
      "INSERT INTO webhook_attempts (delivery_id, attempt, at_ms, status_code, latency_ms, error, replica) VALUES ($1, $2, $3, $4, $5, $6, $7)",
      [a.deliveryId, attempt, a.atMs, a.statusCode, a.latencyMs, error, a.replica],
    );
    await tx.query(
      `UPDATE webhook_deliveries SET status = $2, attempts = $3, next_attempt_at_ms = coalesce($4::bigint, next_attempt_at_ms), claimed_by = '', claim_until_ms = 0,
         last_status_code = $5, last_error = $6, delivered_at_ms = $7
       WHERE delivery_id = $1`,
      [
        a.deliveryId,
        outcome.status,
        attempt,
        outcome.status === "PENDING" ? outcome.nextAttemptAtMs : null,
        a.statusCode,
        error,
        outcome.status === "DELIVERED" ? endMs : 0,
      ],
    );
    return true;
  }

  return {
    ...endpointMethods(q, driver, endpointById),
    materializeTransferEvents: (limit, build) => driver.transaction((tx) => materialize(tx, limit, build)),
    fanOut: (limit, nowMs, newDeliveryId) => driver.transaction((tx) => fanOut(tx, limit, nowMs, newDeliveryId)),
    claimDue,
    recordAttempt: (attempt, outcome) => driver.transaction((tx) => recordAttempt(tx, attempt, outcome)),
    ...deliveryReads(q),
  };
}

type EndpointMethods = Pick<
  WebhookStore,
  | "createEndpoint"
  | "endpointById"
  | "endpointsOf"
  | "setEndpointStatus"
  | "deleteEndpoint"
  | "rollSecret"
  | "signingSecrets"
>;

/** Endpoints and their signing secrets. */
function endpointMethods(
  q: SqlQuery,
  driver: SqlDriver,
  endpointById: (endpointId: string) => Promise<WebhookEndpoint | undefined>,
): EndpointMethods {
  return {
    createEndpoint: (endpoint, secret) =>
      driver.transaction(async (tx) => {
        await tx.query(
          "INSERT INTO webhook_endpoints (endpoint_id, owner_user_id, url, event_types, status, created_at_ms) VALUES ($1, $2, $3, $4::text[], $5, $6)",
          [
            endpoint.endpointId,
            endpoint.ownerUserId,
            endpoint.url,
            [...endpoint.eventTypes],
            endpoint.status,
            endpoint.createdAtMs,
          ],
        );
        await tx.query(
          "INSERT INTO webhook_secrets (endpoint_id, secret, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4)",
          [endpoint.endpointId, secret.secret, secret.createdAtMs, secret.expiresAtMs ?? null],
        );
      }),
    endpointById: (endpointId) => endpointById(endpointId),
    endpointsOf: async (ownerUserId) =>
      (
        await q.query("SELECT * FROM webhook_endpoints WHERE owner_user_id = $1 ORDER BY created_at_ms, endpoint_id", [
          ownerUserId,
        ])
      ).map(toEndpoint),
    setEndpointStatus: async (endpointId, status) =>
      (
        await q.query("UPDATE webhook_endpoints SET status = $2 WHERE endpoint_id = $1 RETURNING 1", [
          endpointId,
          status,
        ])
      ).length === 1,
    deleteEndpoint: async (endpointId) =>
      (await q.query("DELETE FROM webhook_endpoints WHERE endpoint_id = $1 RETURNING 1", [endpointId])).length === 1,
    rollSecret: (endpointId, next, previousExpiresAtMs, nowMs) =>
      driver.transaction(async (tx) => {
        // The endpoint's row lock: two rolls at once happen one after the other.
        assert(
          (await tx.query("SELECT 1 FROM webhook_endpoints WHERE endpoint_id = $1 FOR UPDATE", [endpointId])).length ===
            1,
          `endpoint ${endpointId} exists`,
        );
        await tx.query(
          "UPDATE webhook_secrets SET expires_at_ms = $2 WHERE endpoint_id = $1 AND expires_at_ms IS NULL",
          [endpointId, previousExpiresAtMs],
        );
        await tx.query(
          "DELETE FROM webhook_secrets WHERE endpoint_id = $1 AND expires_at_ms IS NOT NULL AND expires_at_ms <= $2",
          [endpointId, nowMs],
        );
        await tx.query(
          "INSERT INTO webhook_secrets (endpoint_id, secret, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, NULL)",
          [endpointId, next.secret, next.createdAtMs],
        );
      }),
    signingSecrets: async (endpointId, nowMs) =>
      (
        await q.query(
          `SELECT * FROM webhook_secrets WHERE endpoint_id = $1 AND (expires_at_ms IS NULL OR expires_at_ms > $2)
           ORDER BY expires_at_ms IS NOT NULL, created_at_ms DESC`,
          [endpointId, nowMs],
        )
      ).map(toSecret),
  };
}

type DeliveryReads = Pick<WebhookStore, "deliveryById" | "deliveriesOf" | "attemptsOf" | "redeliver" | "stats">;

/** A delivery's record and attempts, a redelivery, and the backlog the metrics read. */
function deliveryReads(q: SqlQuery): DeliveryReads {
  return {
    deliveryById: async (deliveryId) => {
      const r = one(await q.query("SELECT * FROM webhook_deliveries WHERE delivery_id = $1", [deliveryId]));
      return r ? toDelivery(r) : undefined;
    },
    deliveriesOf: async (endpointId, limit, beforeSeq) =>
      (
        await q.query(
          "SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 AND ($2::bigint IS NULL OR event_seq < $2::bigint) ORDER BY event_seq DESC LIMIT $3",
          [endpointId, beforeSeq === undefined ? null : beforeSeq.toString(), limit],
        )
      ).map(toDelivery),
    attemptsOf: async (deliveryId) =>
      (await q.query("SELECT * FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt", [deliveryId])).map(
        toAttempt,
      ),
    redeliver: async (deliveryId, nowMs) =>
      (
        await q.query(
          `UPDATE webhook_deliveries SET status = 'PENDING', next_attempt_at_ms = $2, claimed_by = '', claim_until_ms = 0, delivered_at_ms = 0
           WHERE delivery_id = $1 AND status IN ('DELIVERED', 'FAILED') RETURNING 1`,
          [deliveryId, nowMs],
        )
      ).length === 1,
    async stats(nowMs) {
      // Deliveries to disabled endpoints wait for the merchant, not for us: not a backlog.
      const r = one(
        await q.query(
          `SELECT count(*) AS n, min(v.created_at_ms) AS oldest
           FROM webhook_deliveries d JOIN webhook_endpoints e ON e.endpoint_id = d.endpoint_id JOIN webhook_events v ON v.seq = d.event_seq
           WHERE d.status = 'PENDING' AND e.status = 'ENABLED'`,
        ),
      );
      const backlog = num(r?.n ?? 0);
      return {
        backlog,
        oldestPendingAgeMs:
          backlog === 0 || r?.oldest === null || r?.oldest === undefined ? 0 : Math.max(0, nowMs - num(r.oldest)),
      };
    },
  };
}
