// Registration of the checkout's endpoint against a scripted WebhookService
// and the real SQLite store (in memory): created once, found again, rolled
// when the shop lost (or never stored) the secret, retried until the gateway
// answers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { openCheckoutStore } from "../store/checkout-store.js";
import type { WebhookAdmin } from "./ports.js";
import { registerEndpoint, startRegistration } from "./webhook-registration.js";
import { CONSUMED_EVENT_TYPES } from "./webhooks.js";

const NOW = Date.UTC(2026, 0, 15, 12);
const URL = "https://127.0.0.1:8443/webhooks/paygate";

/** A gateway keeping endpoints in memory; `failFirst` calls throw (unreachable). */
function scriptedAdmin(failFirst = 0) {
  const endpoints: Array<{ endpointId: string; url: string; eventTypes: readonly string[]; secret: string }> = [];
  const calls: string[] = [];
  let n = 0;
  const fail = (method: string) => {
    calls.push(method);
    if (calls.length <= failFirst) throw new Error("gateway_unreachable");
  };
  const admin: WebhookAdmin = {
    async listEndpoints() {
      fail("list");
      return endpoints.map(({ endpointId, url, eventTypes }) => ({ endpointId, url, eventTypes }));
    },
    async createEndpoint(url, eventTypes) {
      fail("create");
      const e = { endpointId: `we_${++n}`, url, eventTypes, secret: `whsec_created_${n}` };
      endpoints.push(e);
      return { endpointId: e.endpointId, secret: e.secret };
    },
    async rollSecret(endpointId, overlapSeconds) {
      fail(`roll:${overlapSeconds}`);
      const e = endpoints.find((x) => x.endpointId === endpointId);
      if (!e) throw new Error("not_found");
      e.secret = `whsec_rolled_${++n}`;
      return { secret: e.secret, previousExpiresAtMs: NOW };
    },
  };
  return { admin, endpoints, calls };
}

test("no endpoint for the URL: created with the event types the shop consumes, its secret stored; the next start finds it", async () => {
  const store = openCheckoutStore({ memory: true });
  const gw = scriptedAdmin();
  const deps = { admin: gw.admin, store, url: URL, toleranceSeconds: 300, clock: () => NOW };
  assert.deepEqual(await registerEndpoint(deps), { outcome: "created", endpointId: "we_1" });
  assert.deepEqual(gw.endpoints[0]?.eventTypes, CONSUMED_EVENT_TYPES);
  assert.deepEqual(store.webhookSecrets(NOW), ["whsec_created_1"]);
  assert.deepEqual(await registerEndpoint(deps), { outcome: "present", endpointId: "we_1" });
  assert.deepEqual(gw.calls, ["list", "create", "list"]);
  assert.equal(gw.endpoints.length, 1);
});

test("an endpoint whose secret the shop does not hold (a crash before it was stored, a new data dir): rolled with no overlap, the new one stored", async () => {
  const store = openCheckoutStore({ memory: true });
  const gw = scriptedAdmin();
  gw.endpoints.push({ endpointId: "we_9", url: URL, eventTypes: CONSUMED_EVENT_TYPES, secret: "whsec_lost" });
  gw.endpoints.push({
    endpointId: "we_8",
    url: "https://elsewhere.example/hook",
    eventTypes: ["capture.succeeded"],
    secret: "whsec_other",
  });
  const r = await registerEndpoint({ admin: gw.admin, store, url: URL, toleranceSeconds: 300, clock: () => NOW });
  assert.deepEqual(r, { outcome: "rolled", endpointId: "we_9" });
  assert.deepEqual(gw.calls, ["list", "roll:0"]);
  assert.deepEqual(store.webhookSecrets(NOW), [gw.endpoints[0]!.secret]);
  assert.equal(store.hasWebhookSecret("we_9", NOW), true);
});

test("a roll keeps the previous stored secret for the replay window after the gateway stops signing with it, then drops it", async () => {
  const store = openCheckoutStore({ memory: true });
  store.addWebhookSecret({ endpointId: "we_1", secret: "whsec_old", createdAtMs: NOW - 1000 }, NOW);
  const gw = scriptedAdmin();
  gw.endpoints.push({ endpointId: "we_2", url: URL, eventTypes: CONSUMED_EVENT_TYPES, secret: "whsec_unknown" });
  await registerEndpoint({ admin: gw.admin, store, url: URL, toleranceSeconds: 300, clock: () => NOW });
  assert.deepEqual(store.webhookSecrets(NOW + 299_999).sort(), [gw.endpoints[0]!.secret, "whsec_old"].sort());
  assert.deepEqual(store.webhookSecrets(NOW + 300_000), [gw.endpoints[0]!.secret]);
});

test("the loop retries until the gateway answers, and stop() ends it without registering", async () => {
  const store = openCheckoutStore({ memory: true });
  const gw = scriptedAdmin(3);
  const retries: number[] = [];
  const loop = startRegistration(
    { admin: gw.admin, store, url: URL, toleranceSeconds: 300 },
    { retryBaseMs: 1, retryCapMs: 4, onRetry: (_e, _attempt, delayMs) => void retries.push(delayMs) },
  );
  assert.deepEqual(await loop.done, { outcome: "created", endpointId: "we_1" });
  assert.deepEqual(retries, [1, 2, 4]);

  const never = scriptedAdmin(Number.MAX_SAFE_INTEGER);
  const stopped = startRegistration(
    { admin: never.admin, store: openCheckoutStore({ memory: true }), url: URL, toleranceSeconds: 300 },
    { retryBaseMs: 5, retryCapMs: 5, onRetry: () => undefined },
  );
  stopped.stop();
  assert.equal(await stopped.done, undefined);
});
