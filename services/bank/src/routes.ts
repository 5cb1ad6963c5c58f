// Proto <-> domain for ParticipantService and LedgerService. No rules here:
// a failed Result becomes rejection(reason) from the shared error table.
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { AccountStatus, HoldState, LedgerService, LegDirection, ParticipantService, Vote } from "@paygate/proto/bank";
import { GATEWAY_IDENTITY, logFieldsKey, rejection, type AccessTable, type Reason } from "@paygate/rpc";
import { setSpanAttributes } from "@paygate/telemetry";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { AccountSchema, EntrySchema, HoldSchema } from "@paygate/proto/bank";
import type { Bank } from "./bank.js";
import type { LegInput } from "./domain/participant.js";
import type { Account, Entry, Hold, Result } from "./domain/types.js";

/** Only the gateway's certificate may call the bank at all. */
const gatewayOnly = { kind: "peer", allow: (id: string) => id === GATEWAY_IDENTITY, describe: "the gateway" } as const;

export const bankAccessTable: AccessTable = Object.fromEntries(
  [ParticipantService, LedgerService].flatMap((s) => s.methods.map((m) => [`${s.typeName}/${m.name}`, gatewayOnly])),
);

function unwrap<T, R extends Reason>(r: Result<T, R>): T {
  if (!r.ok) throw rejection(r.reason, r.message);
  return r.value;
}

const DIRECTIONS = new Map<LegDirection, LegInput["direction"]>([
  [LegDirection.DEBIT, "debit"],
  [LegDirection.CREDIT, "credit"],
  [LegDirection.AUTH_HOLD, "auth_hold"],
  [LegDirection.CAPTURE, "capture"],
  [LegDirection.RELEASE, "release"],
]);

function toDirection(d: LegDirection): LegInput["direction"] {
  return DIRECTIONS.get(d) ?? "unspecified";
}

const HOLD_STATES = { ACTIVE: HoldState.ACTIVE, CAPTURED: HoldState.CAPTURED, RELEASED: HoldState.RELEASED, EXPIRED: HoldState.EXPIRED } as const;

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

function logFields(ctx: HandlerContext): Record<string, unknown> {
  return ctx.values.get(logFieldsKey);
}

export function bankRoutes(bank: Bank): (router: ConnectRouter) => void {
  return (router) => {
    router.service(ParticipantService, {
      prepare(req, ctx) {
        const outcome = unwrap(
          bank.prepare({
            txnId: req.txnId,
            legs: req.legs.map((l) => ({
              accountId: l.accountId,
              direction: toDirection(l.direction),
              amountMinor: l.amountMinor,
              currency: l.currency,
              ownerUserId: l.ownerUserId,
              ...(l.holdId !== "" ? { holdId: l.holdId } : {}),
              ...(l.holdExpiresAt ? { holdExpiresAtMs: timestampMs(l.holdExpiresAt) } : {}),
            })),
          }),
        );
        const fields = logFields(ctx);
        const leg = req.legs[0];
        setSpanAttributes({ transactionId: req.txnId, amountMinor: leg?.amountMinor, currency: leg?.currency, outcome: outcome.vote === "yes" ? "voted_yes" : "voted_no", reason: outcome.vote === "no" ? outcome.reason : undefined });
        fields.vote = outcome.vote;
        if (outcome.redelivered) fields.retry = true;
        if (outcome.vote === "no") {
          fields.voteReason = outcome.reason; // "reason" is the call's own error reason
          return { vote: Vote.NO, reason: outcome.reason };
        }
        return { vote: Vote.YES };
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
    });
    router.service(LedgerService, {
      getAccount(req) {
        return { account: accountMsg(unwrap(bank.getAccount(req.accountId))) };
      },
      async *listEntries(req) {
        for (const e of unwrap(bank.listEntries(req.accountId, req.afterSequence, req.limit))) yield { entry: entryMsg(e) };
      },
      openAccount(req) {
        return { account: accountMsg(unwrap(bank.openAccount({ ownerUserId: req.ownerUserId, currency: req.currency, accountId: req.accountId }))) };
      },
      deposit(req, ctx) {
        const r = unwrap(bank.deposit({ depositId: req.depositId, accountId: req.accountId, amountMinor: req.amountMinor, currency: req.currency }));
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
          currencies: t.currencies.map((c) => ({ currency: c.currency, balanceMinor: c.balanceMinor, heldMinor: c.heldMinor, depositedMinor: c.depositedMinor, transferNetMinor: c.transferNetMinor })),
          prepared: t.prepared.map((p) => ({ txnId: p.txnId, preparedAt: timestampFromMs(p.preparedAtMs) })),
          ledgerConsistent: t.consistent,
          problems: [...t.problems],
          accountCount: BigInt(t.accountCount),
        };
      },
    });
  };
}
