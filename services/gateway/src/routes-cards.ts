// Proto <-> domain for card payments: CardService (merchant role) and the
// admin's IssueCard. No rules here. Log fields carry the last 4 digits at
// most: the number and CVC never reach a log line.
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  AuthorizationStatus,
  CardService,
  SettleItemStatus,
  type AuthorizationSchema,
  type IssueCardRequest,
  type IssueCardResponseSchema,
} from "@paygate/proto/gateway";
import type { AuthRecord } from "./domain/cards-ports.js";
import type { CardOutcome, Cards } from "./domain/cards.js";
import { callerOf, logFields, unwrap } from "./route-support.js";

function noteOutcome(ctx: HandlerContext, out: CardOutcome<unknown>): void {
  const f = logFields(ctx);
  if (out.authCode) f.authCode = out.authCode;
  if (out.cardLast4) f.cardLast4 = out.cardLast4;
  if (out.replayed) f.retry = true;
}

const STATUS = {
  APPROVED: AuthorizationStatus.APPROVED,
  CAPTURED: AuthorizationStatus.CAPTURED,
  VOIDED: AuthorizationStatus.VOIDED,
  EXPIRED: AuthorizationStatus.EXPIRED,
  PENDING: AuthorizationStatus.UNSPECIFIED,
  DECLINED: AuthorizationStatus.UNSPECIFIED,
} as const;

export function toProtoAuthorization(a: AuthRecord): MessageInitShape<typeof AuthorizationSchema> {
  return {
    authCode: a.authCode,
    status: STATUS[a.status],
    cardLast4: a.cardLast4,
    amountMinor: a.amountMinor,
    capturedMinor: a.capturedMinor,
    refundedMinor: a.refundedMinor,
    currency: a.currency,
    merchantAccountId: a.merchantAccountId,
    merchantReference: a.merchantReference,
    createdAt: timestampFromMs(a.createdAtMs),
    expiresAt: timestampFromMs(a.expiresAtMs),
    risk: { score: a.riskScore, approved: a.riskApproved, rule: a.riskRule },
  };
}

/** AdminService.IssueCard, mounted by routes.ts inside the AdminService block. */
export function issueCardHandler(
  cards: Cards,
): (req: IssueCardRequest, ctx: HandlerContext) => Promise<MessageInitShape<typeof IssueCardResponseSchema>> {
  return async (req, ctx) => {
    const issued = unwrap(
      await cards.issueCard({
        accountId: req.accountId,
        cardholderName: req.cardholderName,
        number: req.number,
        expMonth: req.expMonth,
        expYear: req.expYear,
        cvc: req.cvc,
      }),
    );
    const f = logFields(ctx);
    f.cardId = issued.card.cardId;
    f.cardLast4 = issued.card.last4;
    return {
      cardId: issued.card.cardId,
      number: issued.number,
      cvc: issued.cvc,
      last4: issued.card.last4,
      expMonth: issued.card.expMonth,
      expYear: issued.card.expYear,
    };
  };
}

export function cardRoutes(cards: Cards): (router: ConnectRouter) => void {
  return (router) => {
    router.service(CardService, {
      async authorize(req, ctx) {
        const card = req.card ?? { number: "", expMonth: 0, expYear: 0, cvc: "" };
        const out = await cards.authorize(callerOf(ctx).userId, {
          idempotencyKey: req.idempotencyKey,
          card: { number: card.number, expMonth: card.expMonth, expYear: card.expYear, cvc: card.cvc },
          amountMinor: req.amountMinor,
          currency: req.currency,
          merchantReference: req.merchantReference,
          merchantAccountId: req.merchantAccountId,
        });
        noteOutcome(ctx, out);
        return { authorization: toProtoAuthorization(unwrap(out.result)) };
      },
      async settleBatch(req, ctx) {
        const out = await cards.settleBatch(
          callerOf(ctx).userId,
          req.idempotencyKey,
          req.items.map((i) => ({ authCode: i.authCode, amountMinor: i.amountMinor })),
        );
        noteOutcome(ctx, out);
        const s = unwrap(out.result);
        const f = logFields(ctx);
        f.batchId = s.batchId;
        f.items = s.results.length;
        f.captured = s.results.filter((r) => r.status === "CAPTURED").length;
        return {
          batchId: s.batchId,
          results: s.results.map((r) => ({
            authCode: r.authCode,
            status: r.status === "CAPTURED" ? SettleItemStatus.CAPTURED : SettleItemStatus.FAILED,
            reason: r.reason,
            capturedMinor: r.capturedMinor,
            transactionId: r.txnId,
          })),
        };
      },
      async void(req, ctx) {
        logFields(ctx).authCode = req.authCode.slice(0, 6);
        return {
          authorization: toProtoAuthorization(
            unwrap(await cards.voidAuthorization(callerOf(ctx).userId, req.authCode)),
          ),
        };
      },
      async refund(req, ctx) {
        const out = await cards.refund(callerOf(ctx).userId, req.idempotencyKey, req.authCode, req.amountMinor);
        noteOutcome(ctx, out);
        const r = unwrap(out.result);
        const f = logFields(ctx);
        f.refundId = r.refund.refundId;
        f.transactionId = r.refund.txnId;
        return {
          refundId: r.refund.refundId,
          transactionId: r.refund.txnId,
          authorization: toProtoAuthorization(r.authorization),
        };
      },
      async getAuthorization(req, ctx) {
        return {
          authorization: toProtoAuthorization(unwrap(await cards.getAuthorization(callerOf(ctx).userId, req.authCode))),
        };
      },
    });
  };
}
