// The card clients: an admin issues cards against customers' accounts; the
// merchant authorizes them, then settles (whole batches, partial captures,
// the same code twice in a batch, two batches naming one code at once),
// voids (sometimes racing a capture), refunds (sometimes two at once), or
// lets the authorization expire (and now and then tries a capture after it
// has). Every call retries a retryable failure with the same idempotency
// key, as the checkout's settlement job does, until it gets a final answer.
import { reasonClass } from "@paygate/vocab";
import type { AuthRecord, IssuedCard, Result, SettleItemInput } from "@paygate/gateway/domain";
import type { CardChecker } from "./card-checker.js";
import { MERCHANT } from "./people.js";
import type { Rng } from "./rng.js";
import type { Gateway, GatewayCall, World } from "./world.js";

export interface CardWorkload {
  schedule(): void;
  idle(): boolean;
}

/** Attempts per call before the client gives up (a healed world answers within a few). */
const ATTEMPTS_MAX = 12;
const UNKNOWN_CODE = "ZZZZZ9";

interface ApprovedAuth {
  readonly code: string;
  readonly amountMinor: bigint;
}

export function createCardWorkload(world: World, rng: Rng, gateway: GatewayCall, checker: CardChecker): CardWorkload {
  const { sched, knobs } = world;
  const issued: IssuedCard[] = [];
  const fated = new Set<string>();
  const refundedCodes = new Set<string>();
  let toSettle: ApprovedAuth[] = [];
  let settleRunQueued = false;
  let batches = 0;
  let refunds = 0;
  let outstanding = 0;
  let queued = 0;

  function later(delayMs: number, fn: () => void): void {
    queued++;
    sched.after(delayMs, "", "card-client", () => {
      queued--;
      fn();
    });
  }

  /**
   * One call, retried (same request, same key) while the gateway is
   * unreachable or `handle` says the answer is not final yet.
   */
  function call<T>(label: string, fn: (g: Gateway) => Promise<T>, handle: (out: T) => boolean, n = 1): void {
    world.stats.cardCalls++;
    const retry = () => {
      if (n >= ATTEMPTS_MAX) return world.note(`card ${label}: gave up after ${n} attempts`);
      later(rng.int(5, 300), () => call(label, fn, handle, n + 1));
    };
    const p = gateway(label, fn);
    if (!p) {
      world.note(`card ${label} attempt ${n}: refused (gateway down)`);
      return retry();
    }
    outstanding++;
    void p.then((out) => {
      outstanding--;
      if (out === undefined) {
        world.note(`card ${label} attempt ${n}: connection lost`);
        return retry();
      }
      if (handle(out)) retry();
    });
  }

  const retryable = (r: Result<unknown>) => !r.ok && reasonClass(r.reason) !== "final";
  const outcome = (r: Result<unknown>, ok: string) => (r.ok ? ok : r.reason);

  function issue(accountId: string, expired: boolean): void {
    const input = {
      accountId,
      cardholderName: `holder of ${accountId}`,
      number: "",
      expMonth: expired ? 1 : 0,
      expYear: expired ? 2021 : 0,
      cvc: "",
    };
    call(
      `issue ${accountId}${expired ? " (expired)" : ""}`,
      (g) => g.cards.issueCard(input),
      (r) => {
        world.note(`card issue ${accountId}: ${r.ok ? `card #${issued.length} *${r.value.card.last4}` : r.reason}`);
        if (r.ok) issued.push(r.value);
        return retryable(r);
      },
    );
  }

  function authorize(i: number): void {
    if (issued.length === 0) return world.note(`card authorize a${i}: no card issued yet`);
    const cardIndex = rng.int(0, issued.length - 1);
    const c = issued[cardIndex]!;
    const wrongCvc = rng.chance(0.05);
    const cvc = wrongCvc ? String((Number(c.cvc) + 1) % 1000).padStart(3, "0") : c.cvc;
    const key = `a${i}`;
    const input = {
      idempotencyKey: key,
      card: { number: c.number, expMonth: c.card.expMonth, expYear: c.card.expYear, cvc },
      amountMinor: BigInt(rng.int(5, 200)),
      currency: "USD",
      merchantReference: `order ${i}`,
      merchantAccountId: world.merchantAccount.accountId,
    };
    const send = () =>
      call(
        `authorize ${key}`,
        (g) => g.cards.authorize(MERCHANT, input),
        (out) => {
          const r = out.result;
          world.note(
            `card authorize ${key} card #${cardIndex}${wrongCvc ? " (wrong cvc)" : ""} ${input.amountMinor}: ${r.ok ? `${r.value.status} ${r.value.authCode}` : r.reason}`,
          );
          checker.onAuthorizeAnswer(key, r);
          if (r.ok) decideFate(r.value);
          return retryable(r);
        },
      );
    send();
    if (rng.chance(0.2)) later(rng.int(0, 30), send); // the same request twice (a double click)
  }

  /** What the merchant does with an approval (once per authorization). */
  function decideFate(a: AuthRecord): void {
    if (fated.has(a.authCode)) return;
    fated.add(a.authCode);
    const approved = { code: a.authCode, amountMinor: a.amountMinor };
    const roll = rng.next();
    if (roll < 0.55) queueSettle(approved);
    else if (roll < 0.7) later(rng.int(0, 200), () => voidAuth(a.authCode));
    else if (roll < 0.8) {
      // A void racing a capture of the same authorization.
      queueSettle(approved);
      later(rng.int(0, 120), () => voidAuth(a.authCode));
    } else if (rng.chance(0.5)) {
      // Settled only after it has expired.
      later(knobs.holdTtlMs + rng.int(10, 200), () => settle([{ authCode: a.authCode, amountMinor: a.amountMinor }]));
    }
  }

  function queueSettle(a: ApprovedAuth): void {
    toSettle.push(a);
    if (settleRunQueued) return;
    settleRunQueued = true;
    later(rng.int(10, 300), settlementRun);
  }

  /** The merchant's settlement job: everything approved since its last run, in one batch. */
  function settlementRun(): void {
    settleRunQueued = false;
    const auths = toSettle;
    toSettle = [];
    const items: SettleItemInput[] = [];
    for (const a of auths) {
      const roll = rng.next();
      const amountMinor =
        roll < 0.5 || a.amountMinor === 1n
          ? a.amountMinor
          : roll < 0.9
            ? BigInt(rng.int(1, Number(a.amountMinor) - 1))
            : a.amountMinor + 1n;
      items.push({ authCode: a.code, amountMinor });
      // The same code twice in one batch: it captures once, the repeat fails already_captured.
      if (rng.chance(0.2)) items.push({ authCode: a.code, amountMinor: BigInt(rng.int(1, Number(a.amountMinor))) });
    }
    if (rng.chance(0.1)) items.push({ authCode: UNKNOWN_CODE, amountMinor: 10n });
    if (items.length === 0) return;
    settle(items);
    // Another batch naming one of the same codes, at the same moment (a second settlement job).
    if (rng.chance(0.3)) {
      const a = rng.pick(auths);
      settle([{ authCode: a.code, amountMinor: BigInt(rng.int(1, Number(a.amountMinor))) }]);
    }
  }

  function settle(items: readonly SettleItemInput[]): void {
    const key = `b${batches++}`;
    call(
      `settle ${key}`,
      (g) => g.cards.settleBatch(MERCHANT, key, items),
      (out) => {
        const r = out.result;
        checker.onSettleAnswer(key, r);
        if (!r.ok) {
          world.note(`card settle ${key}: ${r.reason}`);
          return retryable(r);
        }
        world.note(
          `card settle ${key}: ${r.value.results.map((it, i) => `${items[i]!.authCode}:${items[i]!.amountMinor}=${it.status === "CAPTURED" ? `CAPTURED ${it.capturedMinor}` : `${it.reason}${it.final ? "" : "(retry)"}`}`).join(", ")}`,
        );
        let again = false;
        for (const it of r.value.results) {
          if (!it.final) {
            world.stats.captureRetries++;
            again = true;
          }
          if (it.status === "CAPTURED" && !refundedCodes.has(it.authCode)) {
            refundedCodes.add(it.authCode);
            if (rng.chance(0.5)) later(rng.int(0, 300), () => refundCaptured(it.authCode, it.capturedMinor));
          }
        }
        return again;
      },
    );
  }

  function voidAuth(code: string): void {
    call(
      `void ${code}`,
      (g) => g.cards.voidAuthorization(MERCHANT, code),
      (r) => {
        world.note(`card void ${code}: ${outcome(r, "VOIDED")}`);
        checker.onVoidAnswer(code, r);
        return retryable(r);
      },
    );
  }

  function refundCaptured(code: string, capturedMinor: bigint): void {
    refund(code, BigInt(rng.int(1, Number(capturedMinor))));
    // A second refund at the same moment: together they may exceed the capture.
    if (rng.chance(0.4)) refund(code, BigInt(rng.int(1, Number(capturedMinor))));
  }

  function refund(code: string, amountMinor: bigint): void {
    const key = `r${refunds++}`;
    call(
      `refund ${key}`,
      (g) => g.cards.refund(MERCHANT, key, code, amountMinor),
      (out) => {
        const r = out.result;
        world.note(`card refund ${key} ${code} ${amountMinor}: ${outcome(r, "COMMITTED")}`);
        checker.onRefundAnswer(key, r);
        return retryable(r);
      },
    );
  }

  return {
    schedule() {
      if (knobs.authorizations === 0) return;
      const customers = world.customerAccounts;
      const hot = customers[0]!;
      const holders = new Set([rng.chance(0.6) ? hot : rng.pick(customers), rng.pick(customers)]);
      if (rng.chance(0.4)) holders.add(rng.pick(customers));
      for (const a of holders) later(rng.int(0, 20), () => issue(a.accountId, false));
      if (rng.chance(0.2)) later(rng.int(0, 20), () => issue(rng.pick(customers).accountId, true));
      for (let i = 0; i < knobs.authorizations; i++)
        later(rng.int(30, Math.max(60, Math.floor(knobs.workloadMs * 0.7))), () => authorize(i));
    },
    idle: () => outstanding === 0 && queued === 0,
  };
}
