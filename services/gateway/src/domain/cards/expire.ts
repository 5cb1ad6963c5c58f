// Expiry (DESIGN.md §6.2): an APPROVED authorization past its expiry becomes
// EXPIRED — when a capture, void or read meets it, or at the next sweep. The
// bank releases the hold on its own clock; ours began before its prepare, so
// the gateway stops capturing no later than the bank releases.
import { randomUUID } from "node:crypto";
import { AssertionError } from "@paygate/money";
import type { AuthRecord } from "../cards-ports.js";
import { ok, type Result } from "../model.js";
import { merchantAuth, must, type CardsContext } from "./context.js";

const EXPIRE_BATCH_MAX = 500;

/** Marks an APPROVED authorization past its expiry EXPIRED; true when its time is up. */
export async function expireIfDue(ctx: CardsContext, a: AuthRecord): Promise<boolean> {
  const nowMs = ctx.clock.nowMs();
  if (a.expiresAtMs > nowMs) return false;
  // Not while a capture or void holds it: its round's decision says how it ends.
  if (
    a.status === "APPROVED" &&
    (await ctx.store.updateAuth(
      a.authId,
      { status: "APPROVED", opTxnId: "" },
      { status: "EXPIRED" },
      nowMs,
      randomUUID(),
    ))
  ) {
    ctx.logger.info({ authCode: a.authCode, cardLast4: a.cardLast4 }, "authorization expired");
  }
  return true;
}

export async function getAuthorization(
  ctx: CardsContext,
  merchantUserId: string,
  authCode: string,
): Promise<Result<AuthRecord>> {
  const found = await merchantAuth(ctx, merchantUserId, authCode);
  // Reading a lapsed authorization records its expiry right away rather than at the next sweep.
  if (found.ok && found.value.status === "APPROVED" && (await expireIfDue(ctx, found.value)))
    return ok(must(await ctx.store.authById(found.value.authId)));
  return found;
}

/** One bounded sweep: APPROVED authorizations past their expiry become EXPIRED. */
export async function expireDue(ctx: CardsContext): Promise<number> {
  const expired = await ctx.store.expireDue(ctx.clock.nowMs(), EXPIRE_BATCH_MAX);
  for (const a of expired) ctx.logger.info({ authCode: a.authCode, cardLast4: a.cardLast4 }, "authorization expired");
  return expired.length;
}

/** Runs expireDue every interval until the returned stop() is awaited. */
export function startExpiry(ctx: CardsContext, intervalMs: number): () => Promise<void> {
  let stopped = false;
  let running: Promise<unknown> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    running = expireDue(ctx)
      .catch((e: unknown) => {
        if (e instanceof AssertionError) throw e;
        ctx.logger.error({ err: e instanceof Error ? e.message : String(e) }, "authorization expiry sweep failed");
      })
      .finally(() => {
        if (!stopped) timer = setTimeout(tick, intervalMs);
      });
  };
  timer = setTimeout(tick, intervalMs);
  return async () => {
    stopped = true;
    clearTimeout(timer);
    await running;
  };
}
