import { test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { create, toBinary } from "@bufbuild/protobuf";
import { ErrorDetailSchema } from "@paygate/proto/common";
import { REASONS } from "@paygate/vocab";
import { errorInfo, errorTable, internalError, isExpectedError, isReason, rejection } from "./errors.js";

test("every reason maps to a code and survives a round trip as a detail", () => {
  for (const reason of Object.keys(errorTable)) {
    assert.ok(isReason(reason));
    const err = rejection(reason, `because ${reason}`, { field: "x" });
    // Simulate the wire: details are serialized to bytes and read back.
    const wire = new ConnectError(err.rawMessage, err.code);
    for (const d of err.details) {
      assert.ok("desc" in d);
      wire.details.push({
        type: d.desc.typeName,
        value: toBinary(ErrorDetailSchema, create(ErrorDetailSchema, d.value)),
      });
    }
    const info = errorInfo(wire);
    assert.equal(info.reason, reason);
    assert.equal(info.code, errorTable[reason]);
    assert.equal(info.metadata["field"], "x");
  }
});

test("decline reasons use the codes clients branch on", () => {
  assert.equal(errorTable.insufficient_funds, Code.FailedPrecondition);
  assert.equal(errorTable.idempotency_key_in_use, Code.Aborted);
  assert.equal(errorTable.idempotency_key_reused, Code.InvalidArgument);
  assert.equal(errorTable.not_account_owner, Code.PermissionDenied);
});

test("errors without a detail get a reason from their code", () => {
  assert.equal(errorInfo(new Error("boom")).reason, "internal");
  assert.equal(errorInfo(new ConnectError("x", Code.DeadlineExceeded)).reason, "deadline_exceeded");
});

test("the table maps exactly the shared vocabulary's reasons", () => {
  assert.deepEqual(Object.keys(errorTable).sort(), [...REASONS].sort());
});

test("only our own rejections and the detail-less call outcomes count as expected", () => {
  assert.ok(isExpectedError(rejection("insufficient_funds", "no")));
  assert.ok(isExpectedError(rejection("internal", "bank answered nonsense")));
  assert.ok(isExpectedError(internalError("id-1")));
  for (const code of [Code.Canceled, Code.DeadlineExceeded, Code.Unimplemented])
    assert.ok(isExpectedError(new ConnectError("x", code)), Code[code]);
  for (const e of [
    new Error("SQLITE_BUSY"),
    new TypeError("x is undefined"),
    new ConnectError("connect ECONNREFUSED 10.0.0.1:7001", Code.Unavailable),
    new ConnectError("boom", Code.Internal),
    "a string",
  ]) {
    assert.ok(!isExpectedError(e), String(e));
  }
  assert.deepEqual(errorInfo(internalError("id-1")).metadata, { correlation_id: "id-1" });
});
