import { test } from "node:test";
import assert from "node:assert/strict";
import {
  bankFailure,
  deliveryOfFailure,
  knownVoteOf,
  UNKNOWN_ANSWER_VOTE,
  voteOfFailure,
} from "./participant-replies.js";

test("a timeout is participant_timeout whatever the bank said: it may still have acted", () => {
  assert.deepEqual(bankFailure({ reason: "insufficient_funds", message: "deadline", timedOut: true }), {
    ok: false,
    reason: "participant_timeout",
    message: "deadline",
  });
});

test("a business reason passes through; any other failure is the bank being unavailable", () => {
  assert.equal(
    bankFailure({ reason: "insufficient_funds", message: "m", timedOut: false }).reason,
    "insufficient_funds",
  );
  const other = bankFailure({ reason: "peer_not_allowed", message: "wrong certificate", timedOut: false });
  assert.equal(other.reason, "participant_unavailable");
  assert.equal(
    other.message,
    "peer_not_allowed: wrong certificate",
    "the bank's reason stays in the message for the log",
  );
  assert.equal(
    bankFailure({ reason: "link_locked", message: "m", timedOut: false }, new Set(["link_locked"])).reason,
    "link_locked",
  );
});

test("a failed Prepare is a NO; an answer that is no known vote counts as NO internal", () => {
  assert.deepEqual(voteOfFailure({ reason: "internal", message: "boom", timedOut: false }), {
    vote: "NO",
    reason: "participant_unavailable",
  });
  assert.deepEqual(knownVoteOf({ vote: "YES", reason: "" }), { vote: "YES" });
  assert.deepEqual(knownVoteOf({ vote: "NO", reason: "insufficient_funds" }), {
    vote: "NO",
    reason: "insufficient_funds",
  });
  assert.equal(knownVoteOf({ vote: "NO", reason: "a_reason_from_a_newer_bank" }), undefined);
  assert.equal(knownVoteOf({ vote: "UNSPECIFIED", reason: "" }), undefined);
  assert.deepEqual(UNKNOWN_ANSWER_VOTE, { vote: "NO", reason: "internal" });
});

test("a Commit or Abort the bank contradicts is final; any other failure is resent", () => {
  assert.deepEqual(deliveryOfFailure("commit", { reason: "unknown_txn", message: "m" }), {
    ok: false,
    reason: "unknown_txn",
    transient: false,
  });
  assert.deepEqual(deliveryOfFailure("commit", { reason: "txn_aborted", message: "m" }), {
    ok: false,
    reason: "txn_aborted",
    transient: false,
  });
  assert.deepEqual(deliveryOfFailure("abort", { reason: "txn_committed", message: "m" }), {
    ok: false,
    reason: "txn_committed",
    transient: false,
  });
  assert.deepEqual(deliveryOfFailure("abort", { reason: "unknown_txn", message: "m" }), {
    ok: false,
    reason: "unknown_txn: m",
    transient: true,
  });
  assert.deepEqual(deliveryOfFailure("commit", { reason: "", message: "connection reset" }), {
    ok: false,
    reason: ": connection reset",
    transient: true,
  });
});
