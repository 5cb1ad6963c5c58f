// Webhook endpoints, URL checks and the dispatcher against a small in-memory
// store and a scripted sender (the real stores have their own contract tests;
// the real HTTPS path is in test/e2e/webhooks*).
import { test } from "node:test";
import assert from "node:assert/strict";
import { verifySignature } from "@paygate/webhook-signature";
import { createManualClock } from "../../test-support/fakes.js";
import { createCapturingLogger, throwingFaults, value } from "../../test-support/test-harness.js";
import {
  attemptOutcome,
  createWebhookDispatcher,
  retryDelayMs,
  type WebhookAnswer,
  type WebhookRequest,
} from "./webhook-dispatcher.js";
import { checkWebhookUrl, isLoopbackHost, type WebhookUrlPolicy } from "./webhook-urls.js";
import { createWebhooks, ENDPOINTS_PER_USER_MAX, newWebhookSecret } from "./webhooks.js";
import type {
  AttemptOutcome,
  ClaimedDelivery,
  DeliveryAttempt,
  OutboxEvent,
  StoredEvent,
  WebhookDelivery,
  WebhookEndpoint,
  WebhookSecret,
  WebhookStore,
} from "./webhooks-ports.js";

const DAY_MS = 86_400_000;
const ALMOST_ONE = 1 - 1e-12;
const reasonOf = (r: { ok: boolean; reason?: string }) => (r.ok ? "ok" : r.reason);

/** Enough of the store's contract for one replica: claims, order per object, secrets with expiry. */
function memoryStore() {
  const endpoints = new Map<string, WebhookEndpoint>();
  const secrets = new Map<string, WebhookSecret[]>();
  const events: (StoredEvent & { fannedOut: boolean })[] = [];
  const deliveries = new Map<string, WebhookDelivery & { claimedBy: string; claimUntilMs: number }>();
  const attempts: DeliveryAttempt[] = [];
  let seq = 0n;
  const store: WebhookStore & { addEvent(e: OutboxEvent): void } = {
    addEvent: (e) => void events.push({ ...e, seq: ++seq, fannedOut: false }),
    async createEndpoint(e, s) {
      endpoints.set(e.endpointId, e);
      secrets.set(e.endpointId, [s]);
    },
    endpointById: async (id) => endpoints.get(id),
    endpointsOf: async (owner) => [...endpoints.values()].filter((e) => e.ownerUserId === owner),
    async setEndpointStatus(id, status) {
      const e = endpoints.get(id);
      if (e) endpoints.set(id, { ...e, status });
      return e !== undefined;
    },
    async deleteEndpoint(id) {
      for (const [k, d] of deliveries) if (d.endpointId === id) deliveries.delete(k);
      secrets.delete(id);
      return endpoints.delete(id);
    },
    async rollSecret(id, next, previousExpiresAtMs, nowMs) {
      const kept = (secrets.get(id) ?? [])
        .map((s) => (s.expiresAtMs === undefined ? { ...s, expiresAtMs: previousExpiresAtMs } : s))
        .filter((s) => (s.expiresAtMs ?? Infinity) > nowMs);
      secrets.set(id, [next, ...kept]);
    },
    signingSecrets: async (id, nowMs) =>
      (secrets.get(id) ?? []).filter((s) => s.expiresAtMs === undefined || s.expiresAtMs > nowMs),
    materializeTransferEvents: async () => 0,
    async fanOut(limit, nowMs, newId) {
      let n = 0;
      for (const ev of events.filter((e) => !e.fannedOut).slice(0, limit)) {
        ev.fannedOut = true;
        n++;
        for (const ep of endpoints.values()) {
          if (ep.ownerUserId !== ev.ownerUserId || ep.status !== "ENABLED" || !ep.eventTypes.includes(ev.type))
            continue;
          const id = newId();
          deliveries.set(id, {
            deliveryId: id,
            endpointId: ep.endpointId,
            eventId: ev.eventId,
            eventSeq: ev.seq,
            eventType: ev.type,
            objectId: ev.objectId,
            status: "PENDING",
            attempts: 0,
            nextAttemptAtMs: nowMs,
            lastStatusCode: 0,
            lastError: "",
            createdAtMs: nowMs,
            deliveredAtMs: 0,
            claimedBy: "",
            claimUntilMs: 0,
          });
        }
      }
      return n;
    },
    async claimDue(replica, nowMs, untilMs, limit) {
      const pending = [...deliveries.values()]
        .filter((d) => d.status === "PENDING")
        .sort((a, b) => Number(a.eventSeq - b.eventSeq));
      const out: ClaimedDelivery[] = [];
      for (const d of pending) {
        if (out.length >= limit) break;
        const earlier = pending.some(
          (p) => p.endpointId === d.endpointId && p.objectId === d.objectId && p.eventSeq < d.eventSeq,
        );
        if (earlier || d.nextAttemptAtMs > nowMs || d.claimUntilMs > nowMs) continue;
        d.claimedBy = replica;
        d.claimUntilMs = untilMs;
        out.push({
          delivery: { ...d },
          event: events.find((e) => e.eventId === d.eventId)!,
          endpoint: endpoints.get(d.endpointId)!,
        });
      }
      return out;
    },
    async recordAttempt(a, outcome: AttemptOutcome) {
      const d = deliveries.get(a.deliveryId);
      if (!d || d.claimedBy !== a.replica) return false;
      attempts.push(a);
      const next = {
        ...d,
        attempts: a.attempt,
        lastStatusCode: a.statusCode,
        lastError: a.error,
        status: outcome.status,
        claimedBy: "",
        claimUntilMs: 0,
      };
      if (outcome.status === "PENDING") next.nextAttemptAtMs = outcome.nextAttemptAtMs;
      if (outcome.status === "DELIVERED") next.deliveredAtMs = a.atMs + a.latencyMs;
      deliveries.set(a.deliveryId, next);
      return true;
    },
    deliveryById: async (id) => {
      const d = deliveries.get(id);
      if (!d) return undefined;
      const { claimedBy: _c, claimUntilMs: _u, ...rest } = d;
      return rest;
    },
    deliveriesOf: async (id, limit, beforeSeq) =>
      [...deliveries.values()]
        .filter((d) => d.endpointId === id && (beforeSeq === undefined || d.eventSeq < beforeSeq))
        .sort((a, b) => Number(b.eventSeq - a.eventSeq))
        .slice(0, limit),
    attemptsOf: async (id) => attempts.filter((a) => a.deliveryId === id),
    async redeliver(id, nowMs) {
      const d = deliveries.get(id);
      if (!d || d.status === "PENDING") return false;
      deliveries.set(id, { ...d, status: "PENDING", nextAttemptAtMs: nowMs, deliveredAtMs: 0 });
      return true;
    },
    async stats(nowMs) {
      const pending = [...deliveries.values()].filter((d) => d.status === "PENDING");
      const oldest = Math.min(...pending.map((d) => events.find((e) => e.eventId === d.eventId)!.createdAtMs));
      return { backlog: pending.length, oldestPendingAgeMs: pending.length === 0 ? 0 : nowMs - oldest };
    },
  };
  return { store, deliveries, attempts };
}

/** A counter-based "random" source: every id differs, every secret is known. */
function counterBytes() {
  let n = 0;
  return (len: number) => {
    n++;
    return Uint8Array.from({ length: len }, (_, i) => (n * 31 + i) & 255);
  };
}

const POLICY: WebhookUrlPolicy = {
  allowedHosts: ["hooks.shop.example", "*.merchants.example", "203.0.113.7", "localhost", "127.0.0.1"],
  allowLoopback: false,
  ownAddresses: () => [
    { host: "127.0.0.1", port: 50050 },
    { host: "127.0.0.1", port: 9464 },
  ],
};

function setup(policy: WebhookUrlPolicy = POLICY) {
  const mem = memoryStore();
  const clock = createManualClock();
  const webhooks = createWebhooks({ store: mem.store, clock, randomBytes: counterBytes(), urlPolicy: policy });
  return { ...mem, clock, webhooks };
}

test("URL rules: https only, no credentials or fragment, allow-listed hosts, IP literals only when listed, loopback only when allowed, never the gateway itself", () => {
  const reason = (url: string, p: WebhookUrlPolicy = POLICY) => reasonOf(checkWebhookUrl(url, p));
  assert.equal(reason("https://hooks.shop.example/paygate"), "ok");
  assert.equal(reason("https://HOOKS.shop.example:8443/x?y=1"), "ok");
  assert.equal(reason("https://a.merchants.example/"), "ok");
  assert.equal(reason("https://a.b.merchants.example/"), "ok");
  assert.equal(
    reason("https://merchants.example/"),
    "webhook_host_not_allowed",
    "a *.suffix pattern is not the suffix itself",
  );
  assert.equal(reason("https://evilmerchants.example/"), "webhook_host_not_allowed");
  assert.equal(reason("https://203.0.113.7/hook"), "ok");
  assert.equal(reason("https://203.0.113.8/hook"), "webhook_host_not_allowed");
  assert.equal(reason("https://other.example/"), "webhook_host_not_allowed");
  for (const bad of [
    "http://hooks.shop.example/",
    "ftp://hooks.shop.example/",
    "hooks.shop.example/x",
    "",
    "https://user:pw@hooks.shop.example/",
    "https://user@hooks.shop.example/",
    "https://hooks.shop.example/#frag",
    "https://hooks.shop.example/#",
    "https://hooks.shop.example/ x",
    `https://hooks.shop.example/${"a".repeat(2048)}`,
  ]) {
    assert.equal(reason(bad), "invalid_webhook_url", bad);
  }
  // Loopback, in its many spellings, is refused even when listed, unless allowed.
  for (const lo of [
    "https://localhost/",
    "https://127.0.0.1/",
    "https://127.1/",
    "https://0x7f.0.0.1/",
    "https://[::1]/",
    "https://[::ffff:127.0.0.1]/",
    "https://0.0.0.0/",
    "https://x.localhost/",
    "https://169.254.169.254/",
  ]) {
    assert.equal(reason(lo), "webhook_host_not_allowed", lo);
  }
  const loopback = { ...POLICY, allowLoopback: true };
  assert.equal(reason("https://localhost:8443/hook", loopback), "ok");
  assert.equal(reason("https://127.0.0.1:8443/hook", loopback), "ok");
  assert.equal(
    reason("https://127.0.0.2:8443/hook", loopback),
    "webhook_host_not_allowed",
    "still only listed addresses",
  );
  for (const self of ["https://127.0.0.1:50050/", "https://localhost:50050/x", "https://127.0.0.1:9464/metrics"])
    assert.equal(reason(self, loopback), "webhook_host_not_allowed", self);
  assert.ok(
    isLoopbackHost("::1") &&
      isLoopbackHost("127.5.6.7") &&
      isLoopbackHost("::ffff:7f00:1") &&
      !isLoopbackHost("10.0.0.1") &&
      !isLoopbackHost("::2"),
  );
});

test("create: the URL and event types are checked, types deduplicated, the secret shown once and stored; at most 16 endpoints", async () => {
  const h = setup();
  assert.equal(
    reasonOf(
      await h.webhooks.createEndpoint("m1", { url: "https://other.example/", eventTypes: ["capture.succeeded"] }),
    ),
    "webhook_host_not_allowed",
  );
  assert.equal(
    reasonOf(await h.webhooks.createEndpoint("m1", { url: "https://hooks.shop.example/", eventTypes: [] })),
    "invalid_event_type",
  );
  assert.equal(
    reasonOf(
      await h.webhooks.createEndpoint("m1", {
        url: "https://hooks.shop.example/",
        eventTypes: ["capture.succeeded", "capture.maybe"],
      }),
    ),
    "invalid_event_type",
  );
  const created = value(
    await h.webhooks.createEndpoint("m1", {
      url: "https://hooks.shop.example/p",
      eventTypes: ["refund.succeeded", "capture.succeeded", "refund.succeeded"],
    }),
  );
  assert.deepEqual(created.endpoint.eventTypes, ["capture.succeeded", "refund.succeeded"]);
  assert.match(created.endpoint.endpointId, /^we_[0-9a-f]{24}$/);
  assert.match(created.secret, /^whsec_[A-Za-z0-9_-]{43}$/);
  assert.deepEqual(
    (await h.store.signingSecrets(created.endpoint.endpointId, h.clock.nowMs())).map((s) => s.secret),
    [created.secret],
  );
  for (let i = 1; i < ENDPOINTS_PER_USER_MAX; i++)
    value(
      await h.webhooks.createEndpoint("m1", {
        url: `https://hooks.shop.example/${i}`,
        eventTypes: ["capture.succeeded"],
      }),
    );
  assert.equal(
    reasonOf(
      await h.webhooks.createEndpoint("m1", {
        url: "https://hooks.shop.example/17",
        eventTypes: ["capture.succeeded"],
      }),
    ),
    "too_many_endpoints",
  );
  assert.equal(
    reasonOf(
      await h.webhooks.createEndpoint("m2", {
        url: "https://hooks.shop.example/17",
        eventTypes: ["capture.succeeded"],
      }),
    ),
    "ok",
    "the limit is per user",
  );
  assert.equal(value(await h.webhooks.listEndpoints("m1")).length, ENDPOINTS_PER_USER_MAX);
  assert.equal(value(await h.webhooks.listEndpoints("m3")).length, 0);
});

test("another user's endpoint or delivery answers exactly like an unknown one", async () => {
  const h = setup();
  const { endpoint } = value(
    await h.webhooks.createEndpoint("m1", { url: "https://hooks.shop.example/", eventTypes: ["capture.succeeded"] }),
  );
  h.store.addEvent({
    eventId: "evt_000000000000000000000001",
    type: "capture.succeeded",
    objectId: "A1",
    ownerUserId: "m1",
    createdAtMs: h.clock.nowMs(),
    bodyJson: "{}",
  });
  await h.store.fanOut(10, h.clock.nowMs(), () => "wd_000000000000000000000001");
  const strip = (r: { ok: boolean; reason?: string; message?: string }, id: string, other: string) =>
    JSON.stringify(r).replaceAll(id, "ID").replaceAll(other, "ID");
  const unknownEp = "we_ffffffffffffffffffffffff";
  for (const call of [
    (id: string) => h.webhooks.deleteEndpoint("m2", id),
    (id: string) => h.webhooks.rollSecret("m2", id, undefined),
    (id: string) => h.webhooks.listDeliveries("m2", id, 0, ""),
  ]) {
    const theirs = await call(endpoint.endpointId);
    const none = await call(unknownEp);
    assert.equal(reasonOf(theirs), "endpoint_not_found");
    assert.equal(strip(theirs, endpoint.endpointId, unknownEp), strip(none, endpoint.endpointId, unknownEp));
  }
  for (const call of [
    (id: string) => h.webhooks.getDelivery("m2", id),
    (id: string) => h.webhooks.redeliver("m2", id),
  ]) {
    const theirs = await call("wd_000000000000000000000001");
    const none = await call("wd_ffffffffffffffffffffffff");
    assert.equal(reasonOf(theirs), "delivery_not_found");
    assert.equal(
      strip(theirs, "wd_000000000000000000000001", "wd_ffffffffffffffffffffffff"),
      strip(none, "wd_000000000000000000000001", "wd_ffffffffffffffffffffffff"),
    );
  }
  assert.equal(reasonOf(await h.webhooks.getDelivery("m1", "wd_000000000000000000000001")), "ok");
  assert.equal(value(await h.webhooks.listEndpoints("m1")).length, 1, "nothing of m1's was touched");
  value(await h.webhooks.deleteEndpoint("m1", endpoint.endpointId));
  assert.equal(reasonOf(await h.webhooks.deleteEndpoint("m1", endpoint.endpointId)), "endpoint_not_found");
});

test("roll: the previous secret signs through the overlap (default 24 h, at most 7 days, 0 = now)", async () => {
  const h = setup();
  const { endpoint, secret: first } = value(
    await h.webhooks.createEndpoint("m1", { url: "https://hooks.shop.example/", eventTypes: ["capture.succeeded"] }),
  );
  const id = endpoint.endpointId;
  assert.equal(reasonOf(await h.webhooks.rollSecret("m1", id, 7 * DAY_MS + 1)), "invalid_argument");
  assert.equal(reasonOf(await h.webhooks.rollSecret("m1", id, -1)), "invalid_argument");
  const second = value(await h.webhooks.rollSecret("m1", id, undefined));
  assert.equal(second.previousExpiresAtMs, h.clock.nowMs() + DAY_MS);
  assert.notEqual(second.secret, first);
  const signing = async () => (await h.store.signingSecrets(id, h.clock.nowMs())).map((s) => s.secret).sort();
  assert.deepEqual(await signing(), [first, second.secret].sort());
  h.clock.advance(DAY_MS);
  assert.deepEqual(await signing(), [second.secret]);
  const third = value(await h.webhooks.rollSecret("m1", id, 0));
  assert.deepEqual(await signing(), [third.secret], "0: the previous stops now");
});

test("secrets: whsec_ + base64url of 32 injected bytes", () => {
  assert.equal(
    newWebhookSecret(() => new Uint8Array(32)),
    `whsec_${"A".repeat(43)}`,
  );
  assert.throws(() => newWebhookSecret(() => new Uint8Array(16)));
});

test("retry schedule: doubling from the base, capped, jittered into [half, all]; past the give-up age FAILED; 2xx delivered", () => {
  assert.deepEqual(
    [1, 2, 3, 4].map((n) => retryDelayMs(n, 10_000, 3_600_000, ALMOST_ONE)),
    [10_000, 20_000, 40_000, 80_000],
  );
  assert.equal(retryDelayMs(1, 10_000, 3_600_000, 0), 5_000);
  assert.equal(retryDelayMs(30, 10_000, 3_600_000, ALMOST_ONE), 3_600_000);
  assert.equal(retryDelayMs(500, 10_000, 3_600_000, 0), 1_800_000, "no overflow far out");
  const c = {
    failedAttempts: 1,
    nowMs: 1_000_000,
    eventCreatedAtMs: 1_000_000,
    retryBaseMs: 10_000,
    retryMaxMs: 3_600_000,
    giveUpMs: 3 * DAY_MS,
    random: 0.5,
  };
  assert.deepEqual(attemptOutcome(204, c), { outcome: { status: "DELIVERED" }, result: "delivered" });
  assert.deepEqual(attemptOutcome(500, c), {
    outcome: { status: "PENDING", nextAttemptAtMs: 1_007_500 },
    result: "retry",
  });
  assert.deepEqual(attemptOutcome(0, { ...c, nowMs: c.eventCreatedAtMs + 3 * DAY_MS + 1 }), {
    outcome: { status: "FAILED" },
    result: "failed",
  });
  assert.equal(attemptOutcome(302, c).result, "retry", "a redirect is not a delivery");
});

function scriptedSender() {
  const sent: WebhookRequest[] = [];
  let answer: WebhookAnswer = { statusCode: 200, error: "" };
  let gate: Promise<void> | undefined;
  return {
    sent,
    answer: (a: WebhookAnswer) => void (answer = a),
    hold(p: Promise<void> | undefined) {
      gate = p;
    },
    async send(r: WebhookRequest) {
      sent.push(r);
      if (gate) await gate;
      return answer;
    },
  };
}

async function dispatcherSetup(concurrency = 8) {
  const h = setup();
  const sender = scriptedSender();
  const faults = throwingFaults();
  const logger = createCapturingLogger();
  const counts = { delivered: 0, retry: 0, failed: 0 };
  let ids = 0;
  const dispatcher = createWebhookDispatcher({
    store: h.store,
    sender,
    clock: h.clock,
    replica: "gateway-0",
    faults,
    logger,
    metrics: {
      webhookAttempts: { inc: ({ outcome }) => void counts[outcome]++ },
      webhookAttemptDuration: { observe: () => {} },
    },
    urlPolicy: POLICY,
    transferEvent: () => {
      throw new Error("unused");
    },
    newDeliveryId: () => `wd_${String(++ids).padStart(24, "0")}`,
    random: () => 0.5,
    pollMs: 10,
    retryBaseMs: 10_000,
    retryMaxMs: 3_600_000,
    giveUpMs: 3 * DAY_MS,
    concurrency,
    timeoutMs: 5_000,
  });
  const { endpoint, secret } = value(
    await h.webhooks.createEndpoint("m1", {
      url: "https://hooks.shop.example/in",
      eventTypes: ["capture.succeeded", "refund.succeeded"],
    }),
  );
  let n = 0;
  const event = (objectId: string, type: OutboxEvent["type"] = "capture.succeeded", ownerUserId = "m1") => {
    const eventId = `evt_${String(++n).padStart(24, "0")}`;
    h.store.addEvent({
      eventId,
      type,
      objectId,
      ownerUserId,
      createdAtMs: h.clock.nowMs(),
      bodyJson: JSON.stringify({ id: eventId, type, object_id: objectId }),
    });
    return eventId;
  };
  const run = async () => {
    await dispatcher.tick();
    await dispatcher.idle();
  };
  return { ...h, sender, faults, logger, counts, dispatcher, endpoint, secret, event, run };
}

test("dispatch: a subscribed event is POSTed with the brief's headers, signed with the endpoint's secret, and recorded delivered", async () => {
  const d = await dispatcherSetup();
  const id = d.event("A1");
  d.event("A2", "authorization.approved"); // not subscribed
  d.event("A3", "capture.succeeded", "m2"); // another user's
  await d.run();
  assert.equal(d.sender.sent.length, 1);
  const r = d.sender.sent[0]!;
  assert.equal(r.url, "https://hooks.shop.example/in");
  assert.equal(r.headers["Content-Type"], "application/json");
  assert.equal(r.headers["User-Agent"], "paygate-webhooks/1");
  assert.equal(r.headers["Paygate-Event-Id"], id);
  assert.equal(r.headers["Paygate-Event-Type"], "capture.succeeded");
  const nowS = Math.floor(d.clock.nowMs() / 1000);
  assert.deepEqual(verifySignature(r.headers["Paygate-Signature"], r.body, [d.secret], nowS), { ok: true, t: nowS });
  assert.equal(verifySignature(r.headers["Paygate-Signature"], r.body, ["whsec_other"], nowS).ok, false);
  const [delivery] = await d.store.deliveriesOf(d.endpoint.endpointId, 10);
  assert.equal(delivery?.status, "DELIVERED");
  assert.deepEqual(d.counts, { delivered: 1, retry: 0, failed: 0 });
  await d.run();
  assert.equal(d.sender.sent.length, 1, "delivered: not sent again");
});

test("dispatch: failures are retried on the backoff schedule, in order per object, then FAILED past the give-up age; redeliver sends again", async () => {
  const d = await dispatcherSetup();
  d.sender.answer({ statusCode: 503, error: "HTTP 503: busy" });
  d.event("A1");
  d.event("A1", "refund.succeeded");
  d.event("B1");
  await d.run();
  assert.deepEqual(
    d.sender.sent.map((r) => r.headers["Paygate-Event-Type"] + "/" + JSON.parse(r.body).object_id),
    ["capture.succeeded/A1", "capture.succeeded/B1"],
    "A1's refund waits behind its capture",
  );
  await d.run();
  assert.equal(d.sender.sent.length, 2, "not due yet");
  d.clock.advance(7_500);
  await d.run();
  assert.equal(d.sender.sent.length, 4, "due after base/2..base");
  d.sender.answer({ statusCode: 200, error: "" });
  d.clock.advance(15_000);
  await d.run();
  await d.run();
  const types = d.sender.sent.slice(4).map((r) => `${r.headers["Paygate-Event-Type"]}/${JSON.parse(r.body).object_id}`);
  assert.deepEqual(types, ["capture.succeeded/A1", "capture.succeeded/B1", "refund.succeeded/A1"]);
  const deliveries = await d.store.deliveriesOf(d.endpoint.endpointId, 10);
  assert.ok(deliveries.every((x) => x.status === "DELIVERED"));
  const a1 = deliveries.find((x) => x.eventType === "capture.succeeded" && x.objectId === "A1")!;
  const log = value(await d.webhooks.getDelivery("m1", a1.deliveryId));
  assert.deepEqual(
    log.attempts.map((a) => [a.attempt, a.statusCode, a.error]),
    [
      [1, 503, "HTTP 503: busy"],
      [2, 503, "HTTP 503: busy"],
      [3, 200, ""],
    ],
  );

  // Give-up: a receiver down for more than 3 days after the event.
  d.sender.answer({ statusCode: 0, error: "ECONNREFUSED: connect ECONNREFUSED" });
  d.event("C1");
  await d.run();
  d.clock.advance(3 * DAY_MS + 1);
  await d.run();
  const c1 = (await d.store.deliveriesOf(d.endpoint.endpointId, 10)).find((x) => x.objectId === "C1")!;
  assert.equal(c1.status, "FAILED");
  assert.equal(c1.lastError, "ECONNREFUSED: connect ECONNREFUSED");
  assert.equal(d.counts.failed, 1);
  d.sender.answer({ statusCode: 200, error: "" });
  const again = value(await d.webhooks.redeliver("m1", c1.deliveryId));
  assert.equal(again.status, "PENDING");
  await d.run();
  assert.equal((await d.store.deliveryById(c1.deliveryId))?.status, "DELIVERED");
  assert.equal(value(await d.webhooks.redeliver("m1", a1.deliveryId)).status, "PENDING");
  assert.equal(
    value(await d.webhooks.redeliver("m1", a1.deliveryId)).status,
    "PENDING",
    "a pending one is left as it is",
  );
});

test("dispatch: at most `concurrency` sends in flight, and stop waits for them to be recorded", async () => {
  const d = await dispatcherSetup(2);
  for (const o of ["A", "B", "C", "D", "E"]) d.event(o);
  let open!: () => void;
  d.sender.hold(new Promise<void>((r) => (open = r)));
  await d.dispatcher.tick();
  await d.dispatcher.tick();
  assert.equal(d.sender.sent.length, 2, "two slots, both busy");
  const stop = d.dispatcher.start();
  const stopped = stop();
  open();
  await stopped;
  const statuses = (await d.store.deliveriesOf(d.endpoint.endpointId, 10)).map((x) => x.status);
  assert.equal(
    statuses.filter((s) => s === "DELIVERED").length,
    2,
    "the in-flight sends were recorded before stop resolved",
  );
});

test("dispatch: a crash before the send or between a 2xx and its record leaves the delivery pending; it is sent again once the claim runs out", async () => {
  const d = await dispatcherSetup();
  d.event("A1");
  d.faults.arm("gateway.webhook_before_send");
  await d.run();
  assert.equal(d.sender.sent.length, 0);
  d.faults.arm("gateway.webhook_after_response");
  d.clock.advance(60_000);
  await d.run();
  assert.equal(d.sender.sent.length, 1);
  const [pending] = await d.store.deliveriesOf(d.endpoint.endpointId, 10);
  assert.deepEqual([pending?.status, pending?.attempts], ["PENDING", 0], "the 2xx was not recorded");
  d.faults.arm(undefined);
  await d.run();
  assert.equal(d.sender.sent.length, 1, "still claimed");
  d.clock.advance(60_000);
  await d.run();
  assert.equal(d.sender.sent.length, 2);
  assert.equal(
    d.sender.sent[0]!.headers["Paygate-Event-Id"],
    d.sender.sent[1]!.headers["Paygate-Event-Id"],
    "the same event id: the receiver dedups",
  );
  assert.equal((await d.store.deliveriesOf(d.endpoint.endpointId, 10))[0]?.status, "DELIVERED");
});

test("dispatch: a host taken off the allow-list since registration is not called; the attempt says why", async () => {
  const d = await dispatcherSetup();
  d.event("A1");
  const narrowed = createWebhookDispatcher({
    store: d.store,
    sender: d.sender,
    clock: d.clock,
    replica: "gateway-0",
    faults: d.faults,
    logger: d.logger,
    urlPolicy: { ...POLICY, allowedHosts: [] },
    transferEvent: () => {
      throw new Error("unused");
    },
    newDeliveryId: () => "wd_000000000000000000000099",
    random: () => 0.5,
    pollMs: 10,
    retryBaseMs: 10_000,
    retryMaxMs: 3_600_000,
    giveUpMs: 3 * DAY_MS,
    concurrency: 1,
    timeoutMs: 5_000,
  });
  await narrowed.tick();
  await narrowed.idle();
  assert.equal(d.sender.sent.length, 0);
  const [x] = await d.store.deliveriesOf(d.endpoint.endpointId, 10);
  assert.equal(x?.status, "PENDING");
  assert.match(x?.lastError ?? "", /^not sent: .*allow-list/);
});

test("list deliveries: newest first, paged by token", async () => {
  const d = await dispatcherSetup();
  for (let i = 0; i < 5; i++) d.event(`O${i}`);
  await d.store.fanOut(
    10,
    d.clock.nowMs(),
    (() => {
      let n = 0;
      return () => `wd_${String(++n).padStart(24, "0")}`;
    })(),
  );
  const first = value(await d.webhooks.listDeliveries("m1", d.endpoint.endpointId, 2, ""));
  assert.deepEqual(
    first.deliveries.map((x) => x.objectId),
    ["O4", "O3"],
  );
  const second = value(await d.webhooks.listDeliveries("m1", d.endpoint.endpointId, 2, first.nextPageToken));
  assert.deepEqual(
    second.deliveries.map((x) => x.objectId),
    ["O2", "O1"],
  );
  const third = value(await d.webhooks.listDeliveries("m1", d.endpoint.endpointId, 2, second.nextPageToken));
  assert.deepEqual([third.deliveries.map((x) => x.objectId), third.nextPageToken], [["O0"], ""]);
  assert.equal(reasonOf(await d.webhooks.listDeliveries("m1", d.endpoint.endpointId, 2, "x")), "invalid_argument");
  assert.equal(reasonOf(await d.webhooks.listDeliveries("m1", d.endpoint.endpointId, 201, "")), "invalid_argument");
});
