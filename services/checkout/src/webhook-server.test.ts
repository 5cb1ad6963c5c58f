// The webhook listener over real HTTPS (the test CA's checkout certificate)
// with the real store in memory: what each kind of request is answered.
import { test } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { createLogger } from "@paygate/rpc";
import { testCerts, tlsFilesFor } from "@paygate/testkit";
import { signatureHeader } from "@paygate/webhook-signature";
import { createWebhookReceiver } from "./domain/webhooks.js";
import { openCheckoutStore } from "./store/checkout-store.js";
import { createWebhookServer, WEBHOOK_PATH } from "./webhook-server.js";

const SECRET = "whsec_" + "s".repeat(43);

function post(
  port: number,
  ca: Buffer,
  path: string,
  body: string,
  headers: Record<string, string>,
  method = "POST",
): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: "127.0.0.1", port, path, method, ca, headers: { "content-type": "application/json", ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            json: JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as Record<string, unknown>,
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

test("POST /webhooks/paygate: 200 stored, 200 duplicate, 400 with the reason, 413 over the limit, 404/405 elsewhere, 503 when it cannot store", async (t) => {
  const tls = tlsFilesFor(testCerts(), "checkout");
  const ca = readFileSync(tls.caFile);
  const store = openCheckoutStore({ memory: true });
  store.addWebhookSecret({ endpointId: "we_1", secret: SECRET, createdAtMs: Date.now() }, Date.now());
  const { server, stopWatching } = createWebhookServer({
    receiver: createWebhookReceiver({ store, toleranceSeconds: 300 }),
    certFile: tls.certFile,
    keyFile: tls.keyFile,
    bodyMaxBytes: 4096,
    logger: createLogger("checkout-test", "silent"),
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => {
    stopWatching();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  const body = JSON.stringify({
    id: "evt_" + "a".repeat(24),
    type: "payout.paid",
    created_at: new Date().toISOString(),
    object_id: "x",
    data: {},
  });
  const signed = (b: string, secret = SECRET) => ({
    "paygate-signature": signatureHeader([secret], b, Math.floor(Date.now() / 1000)),
  });

  assert.deepEqual(await post(port, ca, WEBHOOK_PATH, body, signed(body)), {
    status: 200,
    json: { status: "stored", event_id: "evt_" + "a".repeat(24) },
  });
  assert.deepEqual((await post(port, ca, WEBHOOK_PATH, body, signed(body))).json.status, "duplicate");
  const tampered = await post(port, ca, WEBHOOK_PATH, body.replace("payout", "pay0ut"), signed(body));
  assert.deepEqual([tampered.status, tampered.json.reason], [400, "signature_mismatch"]);
  const wrong = await post(port, ca, WEBHOOK_PATH, body, signed(body, "whsec_" + "w".repeat(43)));
  assert.deepEqual([wrong.status, wrong.json.reason], [400, "signature_mismatch"]);
  const old = await post(port, ca, WEBHOOK_PATH, body, {
    "paygate-signature": signatureHeader([SECRET], body, Math.floor(Date.now() / 1000) - 3600),
  });
  assert.deepEqual([old.status, old.json.reason], [400, "timestamp_out_of_tolerance"]);
  const unsigned = await post(port, ca, WEBHOOK_PATH, body, {});
  assert.deepEqual([unsigned.status, unsigned.json.reason], [400, "missing_signature"]);
  const big = "x".repeat(5000);
  const tooLarge = await post(port, ca, WEBHOOK_PATH, big, signed(big));
  assert.deepEqual([tooLarge.status, tooLarge.json.reason], [413, "body_too_large"]);
  assert.equal((await post(port, ca, "/other", body, signed(body))).status, 404);
  assert.equal((await post(port, ca, WEBHOOK_PATH, "", {}, "GET")).status, 405);

  store.close();
  const body2 = body.replace("a".repeat(24), "b".repeat(24));
  const unstored = await post(port, ca, WEBHOOK_PATH, body2, signed(body2));
  assert.deepEqual([unstored.status, unstored.json.reason], [503, "store_unavailable"]);
});
