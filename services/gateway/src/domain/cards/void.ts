// Void (DESIGN.md §6.4): the issuing bank releases the hold in a
// one-participant round; a captured authorization is refunded instead.
import type { Reason } from "@paygate/vocab";
import type { AuthRecord } from "../cards-ports.js";
import { fail, ok, type Result } from "../model.js";
import { merchantAuth, type CardsContext } from "./context.js";
import { expireIfDue } from "./expire.js";
import { runOperation } from "./operation.js";

export async function voidAuthorization(
  ctx: CardsContext,
  merchantUserId: string,
  authCode: string,
): Promise<Result<AuthRecord>> {
  const found = await merchantAuth(ctx, merchantUserId, authCode);
  if (!found.ok) return found;
  const a = found.value;
  if (a.status === "VOIDED") return ok(a);
  if (a.status === "CAPTURED") return fail("already_captured", "the authorization is captured; refund it instead");
  if (a.status === "EXPIRED" || (await expireIfDue(ctx, a)))
    return fail("authorization_expired", "the authorization has expired; its hold is released");
  const run = await runOperation(ctx, a, { kind: "void", amountMinor: 0n, batchId: "", itemIndex: -1 });
  if (!run) return fail("idempotency_key_in_use", "a capture or void of this authorization is in progress; retry");
  const { txnId, decision: d, after } = run;
  if (d.decision === "COMMIT") {
    ctx.logger.info({ authCode: a.authCode, cardLast4: a.cardLast4, transactionId: txnId }, "authorization voided");
    return ok(after);
  }
  return fail((d.reason || "internal") as Reason, `void failed: ${d.reason}`);
}
