// Proto <-> domain for ParticipantService and LedgerService. No rules here:
// a failed Result becomes rejection(reason) from the shared error table.
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import {
  AccountStatus,
  HoldState,
  LedgerService,
  LegDirection,
  LinkService,
  ParticipantService,
  Vote,
} from "@paygate/proto/bank";
import { logFieldsKey, rejection, type Reason } from "@paygate/rpc";
import { setSpanAttributes } from "@paygate/telemetry";
import { LEG_DIRECTIONS, ledgerDirectionOf, type LegDirection as LegDirectionName } from "@paygate/vocab";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  AccountSchema,
  DecisionBatchResultSchema,
  EntrySchema,
  HoldSchema,
  PrepareRequest,
  PrepareResponseSchema,
} from "@paygate/proto/bank";
import type { Bank } from "./bank.js";
import type { LegInput, PrepareOutcome } from "./domain/participant.js";
import type { Account, Entry, Hold, Result } from "./domain/types.js";

function unwrap<T, R extends Reason>(r: Result<T, R>): T {
  if (!r.ok) throw rejection(r.reason, r.message);
  return r.value;
}

// The wire enum's value names are the gateway's names (LEG_DIRECTIONS' keys); the ledger records its values.
const DIRECTIONS = new Map<LegDirection, LegInput["direction"]>(
  (Object.keys(LEG_DIRECTIONS) as LegDirectionName[]).map((name) => [LegDirection[name], ledgerDirectionOf(name)]),
);

function toDirection(d: LegDirection): LegInput["direction"] {
  return DIRECTIONS.get(d) ?? "unspecified";
}

const HOLD_STATES = {
  ACTIVE: HoldState.ACTIVE,
  CAPTURED: HoldState.CAPTURED,
  RELEASED: HoldState.RELEASED,
  EXPIRED: HoldState.EXPIRED,
} as const;

function holdMsg(h: Hold): MessageInitShape<typeof HoldSchema> {
  return {
    holdId: h.holdId,
    accountId: h.accountId,
    amountMinor: h.amountMinor,
    currency: h.currency,
    state: HOLD_STATES[h.state],
    expiresAt: timestampFromMs(h.expiresAtMs),
    capturedMinor: h.capturedMinor,
  };
}

function accountMsg(a: Account): MessageInitShape<typeof AccountSchema> {
  return {
    accountId: a.accountId,
    ownerUserId: a.ownerUserId,
    currency: a.currency,
    balanceMinor: a.balanceMinor,
    heldMinor: a.heldMinor,
    availableMinor: a.balanceMinor - a.heldMinor,
    status: a.status === "open" ? AccountStatus.OPEN : AccountStatus.CLOSED,
    openedAt: timestampFromMs(a.openedAtMs),
  };
}

function entryMsg(e: Entry): MessageInitShape<typeof EntrySchema> {
  return {
    sequence: e.sequence,
    accountId: e.accountId,
    txnId: e.txnId,
    kind: e.kind,
    amountMinor: e.amountMinor,
    balanceAfterMinor: e.balanceAfterMinor,
    createdAt: timestampFromMs(e.createdAtMs),
  };
}

/** Items in one PrepareBatch / CommitBatch / AbortBatch. */
export const BATCH_ITEMS_MAX = 1024;

function checkBatchSize(n: number): void {
  if (n === 0 || n > BATCH_ITEMS_MAX)
    throw rejection("invalid_argument", `a batch carries 1 to ${BATCH_ITEMS_MAX} items, got ${n}`);
}

function toPrepareInput(req: PrepareRequest) {
  return {
    txnId: req.txnId,
    legs: req.legs.map((l) => ({
      accountId: l.accountId,
      direction: toDirection(l.direction),
      amountMinor: l.amountMinor,
      currency: l.currency,
      ownerUserId: l.ownerUserId,
      ...(l.holdId !== "" ? { holdId: l.holdId } : {}),
      ...(l.holdTtlMs > 0n
        ? { holdTtlMs: Number(l.holdTtlMs) }
        : l.holdExpiresAt
          ? { holdExpiresAtMs: timestampMs(l.holdExpiresAt) }
          : {}),
    })),
  };
}

function voteMsg(outcome: PrepareOutcome): MessageInitShape<typeof PrepareResponseSchema> {
  return outcome.vote === "no" ? { vote: Vote.NO, reason: outcome.reason } : { vote: Vote.YES };
}

/** A batch item's answer: done, or the reason its single call would have been refused with. */
function decisionResult<T, R extends Reason>(r: Result<T, R>): MessageInitShape<typeof DecisionBatchResultSchema> {
  return r.ok ? {} : { error: { reason: r.reason, message: r.message } };
}

function logFields(ctx: HandlerContext): Record<string, unknown> {
  return ctx.values.get(logFieldsKey);
}

export function bankRoutes(bank: Bank): (router: ConnectRouter) => void {
  return (router) => {
    router.service(ParticipantService, {
      prepare(req, ctx) {
        const outcome = unwrap(bank.prepare(toPrepareInput(req)));
        const fields = logFields(ctx);
        const leg = req.legs[0];
        setSpanAttributes({
          transactionId: req.txnId,
          amountMinor: leg?.amountMinor,
          currency: leg?.currency,
          outcome: outcome.vote === "yes" ? "voted_yes" : "voted_no",
          reason: outcome.vote === "no" ? outcome.reason : undefined,
        });
        fields.vote = outcome.vote;
        if (outcome.redelivered) fields.retry = true;
        if (outcome.vote === "no") fields.voteReason = outcome.reason; // "reason" is the call's own error reason
        return voteMsg(outcome);
      },
      commit(req, ctx) {
        setSpanAttributes({ transactionId: req.txnId });
        if (!unwrap(bank.commit(req.txnId)).changed) logFields(ctx).retry = true;
        setSpanAttributes({ outcome: "committed" });
        return {};
      },
      abort(req, ctx) {
        setSpanAttributes({ transactionId: req.txnId });
        if (!unwrap(bank.abort(req.txnId)).changed) logFields(ctx).retry = true;
        setSpanAttributes({ outcome: "aborted" });
        return {};
      },
      // One log line per batch (the access interceptor's); per-txn facts are in the counters.
      // Commits that ride along are applied first, in the same durable write (DESIGN.md §3.3).
      prepareBatch(req, ctx) {
        checkBatchSize(req.items.length);
        if (req.commitTxnIds.length > BATCH_ITEMS_MAX)
          throw rejection(
            "invalid_argument",
            `a batch carries 0 to ${BATCH_ITEMS_MAX} commits, got ${req.commitTxnIds.length}`,
          );
        const inputs = req.items.map(toPrepareInput);
        const [committed, results] =
          req.commitTxnIds.length > 0
            ? bank.commitThenPrepareMany(req.commitTxnIds, inputs)
            : [[], bank.prepareMany(inputs)];
        const fields = logFields(ctx);
        fields.items = req.items.length;
        if (committed.length > 0) fields.commits = committed.length;
        return {
          results: results.map((r) =>
            r.ok
              ? { outcome: { case: "response" as const, value: voteMsg(r.value) } }
              : { outcome: { case: "error" as const, value: { reason: r.reason, message: r.message } } },
          ),
          commitResults: committed.map(decisionResult),
        };
      },
      commitBatch(req, ctx) {
        checkBatchSize(req.txnIds.length);
        logFields(ctx).items = req.txnIds.length;
        return { results: bank.commitMany(req.txnIds).map(decisionResult) };
      },
      abortBatch(req, ctx) {
        checkBatchSize(req.txnIds.length);
        logFields(ctx).items = req.txnIds.length;
        return { results: bank.abortMany(req.txnIds).map(decisionResult) };
      },
    });
    // Linking (DESIGN.md §11). The code is in no log line: only the account, the user and the outcome.
    router.service(LinkService, {
      verifyLink(req, ctx) {
        const fields = logFields(ctx);
        fields.userId = req.userId;
        const account = unwrap(
          bank.verifyLink({
            accountId: req.accountId,
            holderName: req.holderName,
            linkCode: req.linkCode,
            userId: req.userId,
          }),
        );
        fields.linked = true;
        return { account: accountMsg(account) };
      },
      issueLinkCode(req) {
        const issued = unwrap(bank.issueLinkCode({ accountId: req.accountId, holderName: req.holderName }));
        return { linkCode: issued.linkCode, holderName: issued.holderName };
      },
      unlink(req, ctx) {
        const r = unwrap(bank.unlink(req.accountId));
        logFields(ctx).previousOwner = r.previousOwnerUserId;
        return { account: accountMsg(r.account), previousOwnerUserId: r.previousOwnerUserId };
      },
    });
    router.service(LedgerService, {
      getAccount(req) {
        return { account: accountMsg(unwrap(bank.getAccount(req.accountId))) };
      },
      async *listEntries(req) {
        for (const e of unwrap(bank.listEntries(req.accountId, req.afterSequence, req.limit)))
          yield { entry: entryMsg(e) };
      },
      openAccount(req) {
        return {
          account: accountMsg(
            unwrap(
              bank.openAccount({ ownerUserId: req.ownerUserId, currency: req.currency, accountId: req.accountId }),
            ),
          ),
        };
      },
      deposit(req, ctx) {
        const r = unwrap(
          bank.deposit({
            depositId: req.depositId,
            accountId: req.accountId,
            amountMinor: req.amountMinor,
            currency: req.currency,
          }),
        );
        if (!r.changed) logFields(ctx).retry = true;
        return { account: accountMsg(r.account) };
      },
      getHold(req) {
        return { hold: holdMsg(unwrap(bank.getHold(req.holdId))) };
      },
      totals() {
        const t = bank.totals();
        return {
          bank: t.bank,
          currencies: t.currencies.map((c) => ({
            currency: c.currency,
            balanceMinor: c.balanceMinor,
            heldMinor: c.heldMinor,
            depositedMinor: c.depositedMinor,
            transferNetMinor: c.transferNetMinor,
          })),
          prepared: t.prepared.map((p) => ({ txnId: p.txnId, preparedAt: timestampFromMs(p.preparedAtMs) })),
          ledgerConsistent: t.consistent,
          problems: [...t.problems],
          accountCount: BigInt(t.accountCount),
        };
      },
    });
  };
}
