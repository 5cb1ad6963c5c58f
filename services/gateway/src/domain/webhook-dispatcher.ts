// Sends the outbox (DESIGN.md §12). Every poll interval, on every replica:
// make events of newly committed transfers, fan new events out into one
// delivery per subscribed endpoint, claim the deliveries that are due (the
// store hands each to one replica at a time, and holds back a delivery while
// an earlier one of the same object to the same endpoint is pending: in order
// per object), then sign and POST each and record the attempt.
//
// At least once: the attempt is recorded after the answer, so a crash between
// a 2xx and its record sends the event again once the claim runs out (the
// receiver dedups by event id). A non-2xx answer or none at all is retried
// with exponential backoff and jitter, until the event is older than the
// give-up age: then the delivery is FAILED with the last error.
import type { Faults } from "@paygate/faults";
import { signatureHeader } from "@paygate/webhook-signature";
import type { EventLogger } from "./coordinator.js";
import type { Clock } from "./ports.js";
import { checkWebhookUrl, type WebhookUrlPolicy } from "./webhook-urls.js";
import type {
  AttemptOutcome,
  ClaimedDelivery,
  CommittedTransfer,
  OutboxEvent,
  WebhookStore,
} from "./webhooks-ports.js";

export const WEBHOOK_USER_AGENT = "paygate-webhooks/1";
/** Events fanned out per tick; the rest wait for the next tick. */
const EVENT_BATCH_MAX = 256;
/**
 * Committed transfers looked at per tick (most make no event: their payee has
 * no endpoint). Above the peak transfer rate times the poll interval, so the
 * cursor keeps up at full load (1,000/s x 250 ms = 250 per tick).
 */
const TRANSFER_SCAN_MAX = 4_096;
/** The longest error text kept per attempt. */
export const ATTEMPT_ERROR_LENGTH_MAX = 512;

export interface WebhookRequest {
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export interface WebhookAnswer {
  /** 0: no HTTP answer (refused, timeout, TLS error, refused address). */
  readonly statusCode: number;
  /** "" for a 2xx; otherwise what went wrong, never a secret (e.g. "HTTP 503: <first bytes of the body>"). */
  readonly error: string;
}

/** The HTTP side (webhook-sender.ts): one POST, bounded in time; never throws for a network failure. */
export interface WebhookSender {
  send(request: WebhookRequest): Promise<WebhookAnswer>;
}

export type AttemptResult = "delivered" | "retry" | "failed";

/** What the dispatcher records: @paygate/telemetry's gateway metrics satisfy it. */
export interface WebhookMetrics {
  readonly webhookAttempts: { inc(labels: { outcome: AttemptResult }): void };
  readonly webhookAttemptDuration: { observe(seconds: number): void };
}

export interface DispatcherOptions {
  readonly store: WebhookStore;
  readonly sender: WebhookSender;
  readonly clock: Clock;
  readonly replica: string;
  readonly faults: Faults;
  readonly logger: EventLogger;
  readonly metrics?: WebhookMetrics;
  readonly urlPolicy: WebhookUrlPolicy;
  /** The body of a committed transfer's event (webhook-events.ts). */
  readonly transferEvent: (t: CommittedTransfer) => OutboxEvent;
  readonly newDeliveryId: () => string;
  /** In [0, 1): jitter. */
  readonly random: () => number;
  readonly pollMs: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  readonly giveUpMs: number;
  readonly concurrency: number;
  /** The sender's timeout: a claim lasts well past it, so no other replica sends while this one still may. */
  readonly timeoutMs: number;
}

export interface Dispatcher {
  /** One tick: make events, fan out, claim and start sending up to the free concurrency. Resolves once the claimed sends are started. */
  tick(): Promise<void>;
  /** Waits for every send in flight. */
  idle(): Promise<void>;
  /**
   * Ticks every poll interval while `healthy()` (the store reachable); the
   * returned function stops ticking and waits for the sends in flight.
   */
  start(healthy?: () => boolean): () => Promise<void>;
}

/** The wait before attempt n+1 after n failed ones: base * 2^(n-1), capped, then jittered into [half, all] of it. */
export function retryDelayMs(failedAttempts: number, baseMs: number, maxMs: number, random: number): number {
  const exp = Math.min(Math.max(failedAttempts - 1, 0), 40);
  const capped = Math.min(maxMs, baseMs * 2 ** exp);
  return Math.max(1, Math.round(capped / 2 + (capped / 2) * random));
}

/** How an attempt leaves its delivery, and which metric outcome that is. */
export function attemptOutcome(
  statusCode: number,
  c: {
    failedAttempts: number;
    nowMs: number;
    eventCreatedAtMs: number;
    retryBaseMs: number;
    retryMaxMs: number;
    giveUpMs: number;
    random: number;
  },
): { outcome: AttemptOutcome; result: AttemptResult } {
  if (statusCode >= 200 && statusCode <= 299) return { outcome: { status: "DELIVERED" }, result: "delivered" };
  if (c.nowMs - c.eventCreatedAtMs > c.giveUpMs) return { outcome: { status: "FAILED" }, result: "failed" };
  return {
    outcome: {
      status: "PENDING",
      nextAttemptAtMs: c.nowMs + retryDelayMs(c.failedAttempts, c.retryBaseMs, c.retryMaxMs, c.random),
    },
    result: "retry",
  };
}

export function createWebhookDispatcher(o: DispatcherOptions): Dispatcher {
  const { store, clock } = o;
  const inflight = new Set<Promise<void>>();
  // A claim outlives the send (connect + TLS + answer are all inside timeoutMs) and the record after it.
  const claimMs = o.timeoutMs * 2 + 5_000;
  let ticking: Promise<void> | undefined;

  async function deliver(c: ClaimedDelivery): Promise<void> {
    const { delivery, event, endpoint } = c;
    o.faults.hit("gateway.webhook_before_send");
    const startedAtMs = clock.nowMs();
    const answer = await send(c, startedAtMs);
    const nowMs = clock.nowMs();
    const latencyMs = Math.max(0, nowMs - startedAtMs);
    o.metrics?.webhookAttemptDuration.observe(latencyMs / 1000);
    const delivered = answer.statusCode >= 200 && answer.statusCode <= 299;
    if (delivered) o.faults.hit("gateway.webhook_after_response");
    const { outcome, result } = attemptOutcome(answer.statusCode, {
      failedAttempts: delivery.attempts + 1,
      nowMs,
      eventCreatedAtMs: event.createdAtMs,
      retryBaseMs: o.retryBaseMs,
      retryMaxMs: o.retryMaxMs,
      giveUpMs: o.giveUpMs,
      random: o.random(),
    });
    const recorded = await store.recordAttempt(
      {
        deliveryId: delivery.deliveryId,
        attempt: delivery.attempts + 1,
        atMs: startedAtMs,
        statusCode: answer.statusCode,
        latencyMs,
        error: delivered ? "" : answer.error.slice(0, ATTEMPT_ERROR_LENGTH_MAX),
        replica: o.replica,
      },
      outcome,
    );
    const fields = {
      deliveryId: delivery.deliveryId,
      endpointId: endpoint.endpointId,
      eventId: event.eventId,
      eventType: event.type,
      attempt: delivery.attempts + 1,
      statusCode: answer.statusCode,
      latencyMs,
    };
    if (!recorded) {
      // The claim ran out (a slow record) and another replica took it: its attempt counts, this one is a duplicate send.
      o.logger.warn(fields, "webhook attempt not recorded: the claim was lost");
      return;
    }
    o.metrics?.webhookAttempts.inc({ outcome: result });
    logAttempt(fields, result, answer, outcome);
  }

  /** Sends the event, signed with every current secret; a URL the policy refuses, or no secret, is an attempt that was not sent. */
  async function send({ event, endpoint }: ClaimedDelivery, startedAtMs: number): Promise<WebhookAnswer> {
    const allowed = checkWebhookUrl(endpoint.url, o.urlPolicy);
    const secrets = allowed.ok ? await store.signingSecrets(endpoint.endpointId, startedAtMs) : [];
    if (!allowed.ok) {
      return { statusCode: 0, error: `not sent: ${allowed.message}` };
    } else if (secrets.length === 0) {
      return { statusCode: 0, error: "not sent: the endpoint has no signing secret" };
    } else {
      return o.sender.send({
        url: allowed.value,
        body: event.bodyJson,
        headers: {
          "Content-Type": "application/json",
          "User-Agent": WEBHOOK_USER_AGENT,
          "Paygate-Event-Id": event.eventId,
          "Paygate-Event-Type": event.type,
          "Paygate-Signature": signatureHeader(
            secrets.map((s) => s.secret),
            event.bodyJson,
            Math.floor(startedAtMs / 1000),
          ),
        },
      });
    }
  }

  function logAttempt(
    fields: Record<string, unknown>,
    result: AttemptResult,
    answer: WebhookAnswer,
    outcome: AttemptOutcome,
  ): void {
    if (result === "delivered") o.logger.info(fields, "webhook delivered");
    else if (result === "failed")
      o.logger.warn(
        { ...fields, error: answer.error.slice(0, 200) },
        "webhook delivery failed for good (past the give-up age)",
      );
    else
      o.logger.info(
        {
          ...fields,
          error: answer.error.slice(0, 200),
          nextAttemptAtMs: outcome.status === "PENDING" ? outcome.nextAttemptAtMs : 0,
        },
        "webhook attempt failed; retrying later",
      );
  }

  function launch(c: ClaimedDelivery): void {
    const p: Promise<void> = deliver(c)
      .catch((e: unknown) => {
        // The store failed (or was closed) mid-attempt: the claim runs out and the delivery is tried again.
        o.logger.warn(
          { deliveryId: c.delivery.deliveryId, err: e instanceof Error ? e.message : String(e) },
          "webhook attempt interrupted",
        );
      })
      .finally(() => inflight.delete(p));
    inflight.add(p);
  }

  async function tickOnce(): Promise<void> {
    const nowMs = clock.nowMs();
    await store.materializeTransferEvents(TRANSFER_SCAN_MAX, o.transferEvent);
    await store.fanOut(EVENT_BATCH_MAX, nowMs, o.newDeliveryId);
    const free = o.concurrency - inflight.size;
    if (free <= 0) return;
    const claimed = await store.claimDue(o.replica, clock.nowMs(), clock.nowMs() + claimMs, free);
    for (const c of claimed) launch(c);
  }

  async function tick(): Promise<void> {
    // One tick at a time: a slow store must not stack them up.
    ticking ??= tickOnce().finally(() => (ticking = undefined));
    return ticking;
  }

  async function idle(): Promise<void> {
    while (inflight.size > 0) await Promise.all([...inflight]);
  }

  function start(healthy: () => boolean = () => true): () => Promise<void> {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const loop = () => {
      if (stopped) return;
      (healthy() ? tick() : Promise.resolve())
        .catch((e: unknown) =>
          o.logger.warn(
            { err: e instanceof Error ? e.message : String(e) },
            "webhook dispatch tick failed; retrying next poll",
          ),
        )
        .finally(() => {
          if (!stopped) timer = setTimeout(loop, o.pollMs);
        });
    };
    timer = setTimeout(loop, 0);
    return async () => {
      stopped = true;
      if (timer) clearTimeout(timer);
      await ticking?.catch(() => undefined);
      await idle();
    };
  }

  return { tick, idle, start };
}
