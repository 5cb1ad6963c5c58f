import { test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { rejection } from "@paygate/rpc";
import { classifyError, outcomeOfFailure } from "./gateway-client.js";

test("the gateway's verdicts: declines are final, busy/participant failures are transient, auth asks for a login", () => {
  const declined = classifyError(rejection("insufficient_funds", "available 1.00 USD", { transaction_id: "gw:t1" }));
  assert.deepEqual(outcomeOfFailure(declined), {
    kind: "declined",
    reason: "insufficient_funds",
    message: "available 1.00 USD",
    transactionId: "gw:t1",
  });
  assert.equal(classifyError(rejection("idempotency_key_reused", "different request")).kind, "rejected");
  assert.equal(classifyError(rejection("not_account_owner", "not yours")).kind, "rejected");

  for (const [reason, scope] of [
    ["idempotency_key_in_use", "entry"],
    ["participant_timeout", "entry"],
    ["participant_unavailable", "entry"],
    ["shutting_down", "gateway"],
    ["internal", "gateway"],
  ] as const) {
    const f = classifyError(rejection(reason, "later"));
    assert.equal(f.kind, "transient", reason);
    assert.equal(f.kind === "transient" && f.scope, scope, reason);
    assert.equal(f.reason, reason);
  }
  assert.equal(classifyError(rejection("session_expired", "expired")).kind, "needs_login");
  assert.equal(classifyError(new ConnectError("no token", Code.Unauthenticated)).kind, "needs_login");
});

test("errors without an ErrorDetail come from the way there, not from the gateway: transient", () => {
  for (const code of [
    Code.Unavailable,
    Code.Aborted,
    Code.Canceled,
    Code.Internal,
    Code.Unknown,
    Code.ResourceExhausted,
  ]) {
    const f = classifyError(new ConnectError("connect ECONNREFUSED 127.0.0.1:1", code));
    assert.deepEqual([f.kind, f.reason], ["transient", "gateway_unreachable"], Code[code]);
  }
  const timeout = classifyError(new ConnectError("the operation timed out", Code.DeadlineExceeded));
  assert.deepEqual([timeout.kind, timeout.reason], ["transient", "timeout"]);
  // A gateway without the method is an answer, and retrying cannot change it.
  assert.equal(classifyError(new ConnectError("nope", Code.Unimplemented)).kind, "rejected");
  // Not a Connect error at all: a bug, which must not be mistaken for an outage.
  assert.throws(() => classifyError(new TypeError("bug")), TypeError);
});
