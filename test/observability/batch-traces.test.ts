// Traces stay exact under batching: when concurrent transfers share one
// PrepareBatch / CommitBatch RPC, each transfer's own trace still shows a
// participant call to each bank (an item span), and the batch's span links to
// every item it carried. Real processes exporting OTLP/HTTP to an in-process receiver.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import { PaymentService } from "@paygate/proto/gateway";
import { Stack } from "@paygate/testkit";
import { SPAN_KIND, startOtlpReceiver, type OtlpReceiver } from "./otlp-receiver.js";

let receiver: OtlpReceiver;
let stack: Stack;

before(async () => {
  receiver = await startOtlpReceiver();
  const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url };
  stack = await Stack.start({ gatewayEnv: otel, bankEnv: otel });
});

after(async () => {
  await stack?.close();
  await receiver?.close();
});

const TRANSFERS = 60;
const COMMIT_ITEM = "paygate.bank.v1.ParticipantService/CommitBatch item";

test(`${TRANSFERS} concurrent transfers: every transfer's trace has its Prepare and Commit at both banks, batched or not; every batch links its items`, async () => {
  const pay = stack.client(PaymentService, await stack.login("alice"));
  const ids = await Promise.all(
    Array.from({ length: TRANSFERS }, async () => {
      const r = await pay.transfer({
        idempotencyKey: randomUUID(),
        fromAccountId: "bank-a/1001",
        toAccountId: "bank-b/2001",
        amountMinor: 1n,
        currency: "USD",
      });
      return r.transaction!.transactionId;
    }),
  );
  await stack.assertConserved();
  // A graceful stop makes each service flush its spans.
  await Promise.all([stack.gateway, ...stack.banks.values()].map((p) => p.stop()));

  const spans = receiver.spans;
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  const batches = spans.filter((s) => s.service === "gateway" && s.kind === SPAN_KIND.client && /Batch$/.test(s.name));
  assert.ok(
    batches.some((b) => b.name.endsWith("/PrepareBatch")),
    "some prepares were batched (else this test proves nothing)",
  );
  for (const b of batches) {
    assert.equal(b.parentSpanId, "", `${b.name} belongs to no single transfer: a root`);
    assert.ok(b.links.length >= 2, `${b.name} links the items it carried`);
    const linked = b.links.map((l) => byId.get(l.spanId));
    // A PrepareBatch also carries the Commits riding along with it (DESIGN.md §3.3): CommitBatch items.
    const itemNames = [`${b.name} item`, ...(b.name.endsWith("/PrepareBatch") ? [COMMIT_ITEM] : [])];
    assert.ok(
      linked.every((s) => s !== undefined && itemNames.includes(s.name)),
      `${b.name} links only to its item spans`,
    );
    assert.equal(new Set(linked.map((s) => s!.traceId)).size, b.links.length, "each item is in a trace of its own");
  }
  for (const txnId of ids) {
    const server = spans.find(
      (s) => s.service === "gateway" && s.kind === SPAN_KIND.server && s.attributes["paygate.transaction_id"] === txnId,
    );
    assert.ok(server, `the gateway's Transfer span of ${txnId}`);
    const mine = spans.filter(
      (s) => s.traceId === server.traceId && s.service === "gateway" && s.kind === SPAN_KIND.client,
    );
    const calls = mine
      .map((s) => s.name.replace(/^paygate\.bank\.v1\.ParticipantService\//, "").replace(/Batch item$/, ""))
      .sort();
    assert.deepEqual(
      calls,
      ["Commit", "Commit", "Prepare", "Prepare"],
      `${txnId}: one Prepare and one Commit per bank in its own trace`,
    );
    for (const s of mine) assert.equal(s.parentSpanId, server.spanId, "under the transfer's server span");
  }
});
