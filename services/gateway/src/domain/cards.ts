// Card payments (DESIGN.md §6). An admin issues a card against a customer's
// account; a merchant authorizes (card checks -> credit report -> risk rule ->
// an authorization hold at the issuing bank), then settles in batches
// (capture: the hold becomes a debit, the merchant's account is credited),
// voids (the hold is released) or refunds (money goes back).
//
// Every money step is one 2PC round of the round engine (`rounds`, DESIGN.md
// §3). Before a round starts, its txn id is stored with the authorization (or
// refund), so a gateway that dies mid-round settles it on restart: the logged
// decision, or presumed abort (recover()). Exactly once per (merchant, key):
// the card store's unique indexes; declines are stored outcomes, failed
// validation and transient failures (bureau or bank unreachable) are not.
//
// One file per use case under cards/; this is their composition.
import type { AuthRecord } from "./cards-ports.js";
import type { Result } from "./model.js";
import { authorize, type AuthorizeInput } from "./cards/authorize.js";
import { createCardsContext, type CardOutcome, type CardsOptions } from "./cards/context.js";
import { expireDue, getAuthorization, startExpiry } from "./cards/expire.js";
import { issueCard, type IssueCardInput, type IssuedCard } from "./cards/issue.js";
import { recover, type CardsRecovery } from "./cards/recover.js";
import { refund, type Refunded } from "./cards/refund.js";
import { settleBatch, type SettleItemInput, type Settlement } from "./cards/settle.js";
import { voidAuthorization } from "./cards/void.js";

export type { AuthorizeInput, CardDetails } from "./cards/authorize.js";
export { CAPTURE_FINAL_REASONS, type SettleItemResult } from "./cards/capture.js";
export { AUTH_CODE_PATTERN, type CardOutcome, type CardsOptions } from "./cards/context.js";
export { cardExpired, type IssueCardInput, type IssuedCard } from "./cards/issue.js";
export type { CardsRecovery } from "./cards/recover.js";
export type { Refunded } from "./cards/refund.js";
export { SETTLE_ITEMS_MAX, type SettleItemInput, type Settlement } from "./cards/settle.js";

export interface Cards {
  issueCard(input: IssueCardInput): Promise<Result<IssuedCard>>;
  authorize(merchantUserId: string, input: AuthorizeInput): Promise<CardOutcome<AuthRecord>>;
  settleBatch(
    merchantUserId: string,
    idempotencyKey: string,
    items: readonly SettleItemInput[],
  ): Promise<CardOutcome<Settlement>>;
  voidAuthorization(merchantUserId: string, authCode: string): Promise<Result<AuthRecord>>;
  refund(
    merchantUserId: string,
    idempotencyKey: string,
    authCode: string,
    amountMinor: bigint,
  ): Promise<CardOutcome<Refunded>>;
  getAuthorization(merchantUserId: string, authCode: string): Promise<Result<AuthRecord>>;
  /** One bounded sweep: APPROVED authorizations past their expiry become EXPIRED. */
  expireDue(): Promise<number>;
  /**
   * Settles every round `replica` (this one at start-up, a dead one at
   * takeover) was interrupted in: holds, captures and voids, refunds.
   */
  recover(replica?: string): Promise<CardsRecovery>;
  /**
   * This replica's card records left mid-round by requests that no longer
   * run (they lost the store: a write whose outcome is unknown, a round never
   * registered): settled as recovery settles them — from the round's
   * decision, or a presumed abort, which is safe for a round no request runs.
   */
  settleOrphans(replica?: string): Promise<CardsRecovery>;
  /** Runs expireDue every interval until the returned stop() is awaited. */
  startExpiry(intervalMs: number): () => Promise<void>;
}

export function createCards(o: CardsOptions): Cards {
  const ctx = createCardsContext(o);
  return {
    issueCard: (input) => issueCard(ctx, input),
    authorize: (merchantUserId, input) => authorize(ctx, merchantUserId, input),
    settleBatch: (merchantUserId, key, items) => settleBatch(ctx, merchantUserId, key, items),
    voidAuthorization: (merchantUserId, authCode) => voidAuthorization(ctx, merchantUserId, authCode),
    refund: (merchantUserId, key, authCode, amountMinor) => refund(ctx, merchantUserId, key, authCode, amountMinor),
    getAuthorization: (merchantUserId, authCode) => getAuthorization(ctx, merchantUserId, authCode),
    expireDue: () => expireDue(ctx),
    recover: (replica = o.replica) => recover(ctx, replica),
    settleOrphans: (replica = o.replica) => recover(ctx, replica),
    startExpiry: (intervalMs) => startExpiry(ctx, intervalMs),
  };
}
