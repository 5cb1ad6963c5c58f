// The card workload: shoppers paying the merchant's cart through the
// checkout's `POST /make-payment` (JSON, as the page's script does), the
// checkout's own settlement job capturing what was approved (every 1.5 s),
// and the merchant's back office voiding a few approvals and refunding
// captured orders (CardService, a random replica per call, some refunds of
// one authorization sent at once). Every answer is remembered; the card
// checker holds the system to them.
//
// A shopper behaves as the page asks: after "unavailable" or "conflict" (no
// verdict) it submits the same details again later; after a decline it may
// correct the details (a first try with a wrong CVC), and is done otherwise.
import { randomUUID } from "node:crypto";
import Database from "better-sqlite3";
import { Code } from "@connectrpc/connect";
import { AdminService, AuthorizationStatus, CardService, SettleItemStatus } from "@paygate/proto/gateway";
import { errorInfo } from "@paygate/rpc";
import type { Rng } from "../sim/rng.js";
import type { Cluster } from "./cluster.js";
import type { History } from "./history.js";
import { failureLabel, sendUntilSettled, sleep } from "./workload.js";

export interface IssuedCard {
  readonly holder: string;
  readonly accountId: string;
  readonly number: string;
  readonly cvc: string;
  readonly expMonth: number;
  readonly expYear: number;
  /** The decline this card must get every time (dave's score fails the risk rule), or "" for a good card. */
  readonly expectedDecline: string;
}

export interface AttemptRecord {
  readonly attemptKey: string;
  readonly card: IssuedCard;
  /** The shopper first types a wrong CVC (declined incorrect_cvc), then the right one (the checkout retries under `<key>-r1`). */
  readonly wrongCvcFirst: boolean;
  phase: "wrong" | "right";
  /** Auth codes the shopper was shown as approved. */
  readonly approved: Set<string>;
  /** Decline reasons the shopper was shown (verdicts). */
  readonly declines: string[];
  /** Answers that must never come for this input (invalid, too many retries, ...). */
  readonly unexpected: string[];
  attempts: number;
  done: boolean;
}

export interface RefundRecord {
  readonly key: string;
  readonly authCode: string;
  readonly amountMinor: bigint;
  /** Refund ids the merchant was told committed. */
  readonly committed: Set<string>;
  /** Final reasons the merchant was told. */
  readonly declined: string[];
  attempts: number;
  done: boolean;
}

export interface VoidRecord {
  readonly authCode: string;
  /** What the gateway said the authorization is after the void (VOIDED, or CAPTURED when settlement won). */
  readonly outcomes: string[];
  attempts: number;
  done: boolean;
}

export interface CardStats {
  orders: number;
  posts: number;
  approved: number;
  declined: number;
  answers: Record<string, number>;
  voids: number;
  voided: number;
  refunds: number;
  refundsCommitted: number;
  refundsDeclined: number;
  backOffice: Record<string, number>;
}

/** Refund and void refusals that are verdicts (retrying the same request gets the same no). */
const BACK_OFFICE_FINAL = new Set([
  "refund_exceeds_capture",
  "not_captured",
  "authorization_not_found",
  "authorization_voided",
  "authorization_expired",
  "already_captured",
  "idempotency_key_reused",
  "invalid_amount",
]);
const POST_ATTEMPTS_MAX = 14;
const BACK_OFFICE_ATTEMPTS_MAX = 10;
const CALL_TIMEOUT_MS = 8_000;

export interface CheckoutOrderRow {
  readonly attemptKey: string;
  readonly orderId: string;
  readonly gatewayKey: string;
  readonly state: string;
  readonly authCode: string;
  readonly reason: string;
  readonly amountMinor: bigint;
  readonly settleState: string;
  readonly capturedMinor: bigint;
  readonly settleReason: string;
  readonly settleNotBeforeMs: number;
}

export interface CheckoutView {
  readonly orders: Map<string, CheckoutOrderRow>;
  readonly openSettlements: number;
  readonly batches: { readonly key: string; readonly items: { authCode: string; amountMinor: bigint }[] }[];
}

/** The merchant's own records (the checkout's SQLite file, read-only). */
export function readCheckout(file: string): CheckoutView {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    db.pragma("busy_timeout = 5000");
    db.defaultSafeIntegers(true);
    return db.transaction(() => {
      const orders = new Map<string, CheckoutOrderRow>();
      for (const r of db.prepare("SELECT * FROM orders").all() as Record<string, unknown>[]) {
        orders.set(String(r.attempt_key), {
          attemptKey: String(r.attempt_key),
          orderId: String(r.order_id),
          gatewayKey: String(r.gateway_key),
          state: String(r.state),
          authCode: r.auth_code === null ? "" : String(r.auth_code),
          reason: r.reason === null ? "" : String(r.reason),
          amountMinor: r.amount_minor as bigint,
          settleState: String(r.settle_state),
          capturedMinor: r.captured_minor as bigint,
          settleReason: r.settle_reason === null ? "" : String(r.settle_reason),
          settleNotBeforeMs: Number(r.settle_not_before_ms ?? 0n),
        });
      }
      const open = Number(
        (db.prepare("SELECT count(*) AS n FROM settlements WHERE state = 'open'").get() as { n: bigint }).n,
      );
      const batches = (
        db.prepare("SELECT settlement_id, idempotency_key FROM settlements").all() as {
          settlement_id: string;
          idempotency_key: string;
        }[]
      ).map((s) => ({
        key: s.idempotency_key,
        items: (
          db
            .prepare("SELECT auth_code, amount_minor FROM settlement_items WHERE settlement_id = ? ORDER BY rowid")
            .all(s.settlement_id) as { auth_code: string; amount_minor: bigint }[]
        ).map((i) => ({ authCode: i.auth_code, amountMinor: i.amount_minor })),
      }));
      return { orders, openSettlements: open, batches };
    })();
  } finally {
    db.close();
  }
}

function expiry(card: IssuedCard): string {
  return `${String(card.expMonth).padStart(2, "0")}/${String(card.expYear % 100).padStart(2, "0")}`;
}

export async function issueCards(cluster: Cluster, adminToken: string): Promise<IssuedCard[]> {
  const admin = cluster.client(AdminService, adminToken, 10_000);
  const cards: IssuedCard[] = [];
  const wanted = cluster.accounts.filter((a) => a.use === "card").map((a) => ({ account: a, expectedDecline: "" }));
  const dave = cluster.accounts.find((a) => a.owner === "dave");
  if (dave) wanted.push({ account: dave, expectedDecline: "risk_declined" });
  for (const w of wanted) {
    for (let i = 0; ; i++) {
      try {
        const c = await admin.issueCard({
          accountId: w.account.id,
          cardholderName: `${w.account.owner} chaos`,
          number: "",
          cvc: "",
          expMonth: 0,
          expYear: 0,
        });
        cards.push({
          holder: w.account.owner,
          accountId: w.account.id,
          number: c.number,
          cvc: c.cvc,
          expMonth: c.expMonth,
          expYear: c.expYear,
          expectedDecline: w.expectedDecline,
        });
        break;
      } catch (e) {
        if (i >= 10) throw e;
        await sleep(300);
      }
    }
  }
  return cards;
}

export function createCardWorkload(
  cluster: Cluster,
  rng: Rng,
  history: History,
  cards: readonly IssuedCard[],
  merchantToken: string,
) {
  const attempts = new Map<string, AttemptRecord>();
  const refunds = new Map<string, RefundRecord>();
  const voids = new Map<string, VoidRecord>();
  const stats: CardStats = {
    orders: 0,
    posts: 0,
    approved: 0,
    declined: 0,
    answers: {},
    voids: 0,
    voided: 0,
    refunds: 0,
    refundsCommitted: 0,
    refundsDeclined: 0,
    backOffice: {},
  };
  const shop = cluster.client(CardService, merchantToken, CALL_TIMEOUT_MS);
  const good = cards.filter((c) => c.expectedDecline === "");
  let stopping = false;
  let n = 0;
  const count = (bucket: Record<string, number>, label: string) => (bucket[label] = (bucket[label] ?? 0) + 1);

  function newAttempt(): AttemptRecord {
    const card =
      rng.chance(0.06) && cards.length > good.length
        ? rng.pick(cards.filter((c) => c.expectedDecline !== ""))
        : rng.pick(good);
    const wrongCvcFirst = card.expectedDecline === "" && rng.chance(0.08);
    // The checkout's attempt keys: 16-64 of [A-Za-z0-9_-] (payment.html puts a UUID there).
    const r: AttemptRecord = {
      attemptKey: `chaos-pay-${++n}-${rng.uuid()}`,
      card,
      wrongCvcFirst,
      phase: wrongCvcFirst ? "wrong" : "right",
      approved: new Set(),
      declines: [],
      unexpected: [],
      attempts: 0,
      done: false,
    };
    attempts.set(r.attemptKey, r);
    stats.orders++;
    return r;
  }

  function cvcOf(r: AttemptRecord): string {
    if (r.phase === "right") return r.card.cvc;
    return r.card.cvc === "999" ? "998" : "999";
  }

  /** One POST /make-payment; true when the attempt is settled (a verdict the shopper accepts). */
  async function post(r: AttemptRecord): Promise<boolean> {
    r.attempts++;
    stats.posts++;
    // The phase this post was sent in: a concurrent post (a double click) may correct the CVC meanwhile.
    const phase = r.phase;
    const body = {
      idempotencyKey: r.attemptKey,
      cardholderName: `${r.card.holder} chaos`,
      cardNumber: r.card.number,
      expiry: expiry(r.card),
      cvc: cvcOf(r),
    };
    let status = 0;
    let json: Record<string, unknown> = {};
    try {
      const res = await fetch(`${cluster.checkoutUrl}/make-payment`, {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
      status = res.status;
      json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
    } catch (e) {
      count(stats.answers, "checkout_unreachable");
      history.add({
        kind: "answer",
        key: r.attemptKey,
        detail: `POST /make-payment (${r.phase}): checkout unreachable: ${e instanceof Error ? e.message : String(e)} (post ${r.attempts})`,
      });
      return false;
    }
    const outcome = typeof json.status === "string" ? json.status : `http_${status}`;
    const reason = typeof json.reason === "string" ? json.reason : "";
    count(stats.answers, reason ? `${outcome}/${reason}` : outcome);
    const authCode = typeof json.authCode === "string" ? json.authCode : "";
    history.add({
      kind: "answer",
      key: r.attemptKey,
      detail: `POST /make-payment (${phase}, ${r.card.holder}): ${status} ${outcome}${reason ? ` ${reason}` : ""}${authCode ? ` ${authCode}` : ""} (post ${r.attempts})`,
    });
    switch (outcome) {
      case "approved":
        r.approved.add(authCode);
        return true;
      case "declined":
        r.declines.push(reason);
        if (phase === "wrong" && reason === "incorrect_cvc") {
          // Corrects the CVC and submits again at once (once: a concurrent post may have done it already).
          if (r.phase === "wrong") {
            r.phase = "right";
            return post(r);
          }
          return false; // the other post carries the correction; no verdict from this one
        }
        return true;
      case "unavailable":
      case "conflict":
      case "busy":
        return false;
      default:
        // invalid, too_many_retries, error, a 5xx without JSON: the shopper gave valid details once per attempt.
        if (status >= 500 && outcome.startsWith("http_")) return false;
        r.unexpected.push(`${status} ${outcome}${reason ? ` ${reason}` : ""}: ${JSON.stringify(json).slice(0, 300)}`);
        return true;
    }
  }

  const settleAttempt = (r: AttemptRecord, attemptsMax: number) =>
    sendUntilSettled(r, () => post(r), { attemptsMax, baseMs: 150, rng, stopping: () => stopping });

  async function shopper(): Promise<void> {
    while (!stopping) {
      const r = newAttempt();
      if (rng.chance(0.1)) {
        // A double click: the same form twice at once (the checkout's per-attempt lock, the gateway's key).
        history.add({ kind: "burst", key: r.attemptKey, detail: "2 concurrent POST /make-payment" });
        const [a, b] = await Promise.all([post(r), post(r)]);
        if (a || b) r.done = true;
      }
      await settleAttempt(r, POST_ATTEMPTS_MAX);
      await sleep(rng.int(100, 600));
    }
  }

  /** A back-office call's failure: "final" (a verdict), or undefined (no verdict: the same request again later). */
  function backOfficeFailure(e: unknown, what: string): string | undefined {
    const info = errorInfo(e);
    count(stats.backOffice, `${what}:${failureLabel(info)}`);
    return BACK_OFFICE_FINAL.has(info.reason) ? info.reason : undefined;
  }

  async function voidOnce(v: VoidRecord): Promise<boolean> {
    v.attempts++;
    try {
      const res = await shop.void({ authCode: v.authCode });
      const status = AuthorizationStatus[res.authorization!.status] ?? "?";
      v.outcomes.push(status);
      count(stats.backOffice, `void:ok:${status}`);
      history.add({
        kind: "answer",
        key: v.authCode,
        detail: `Void ${v.authCode}: ok, ${status} (attempt ${v.attempts})`,
      });
      return true;
    } catch (e) {
      const final = backOfficeFailure(e, "void");
      history.add({
        kind: "answer",
        key: v.authCode,
        detail: `Void ${v.authCode}: ${errorInfo(e).reason || Code[errorInfo(e).code]} (attempt ${v.attempts})`,
      });
      if (final) v.outcomes.push(final);
      return final !== undefined;
    }
  }

  async function refundOnce(f: RefundRecord): Promise<boolean> {
    f.attempts++;
    try {
      const res = await shop.refund({ idempotencyKey: f.key, authCode: f.authCode, amountMinor: f.amountMinor });
      f.committed.add(res.refundId);
      count(stats.backOffice, "refund:ok");
      history.add({
        kind: "answer",
        key: f.authCode,
        txnId: res.transactionId,
        detail: `Refund ${f.key} ${f.authCode} ${f.amountMinor}: ok ${res.refundId} (attempt ${f.attempts})`,
      });
      return true;
    } catch (e) {
      const final = backOfficeFailure(e, "refund");
      history.add({
        kind: "answer",
        key: f.authCode,
        detail: `Refund ${f.key} ${f.authCode} ${f.amountMinor}: ${errorInfo(e).reason || Code[errorInfo(e).code]} (attempt ${f.attempts})`,
      });
      if (final) f.declined.push(final);
      return final !== undefined;
    }
  }

  const until = (fn: () => Promise<boolean>, rec: { attempts: number; done: boolean }, attemptsMax: number) =>
    sendUntilSettled(rec, fn, { attemptsMax, baseMs: 200, rng, stopping: () => stopping });

  async function backOffice(): Promise<void> {
    const refunded = new Set<string>();
    while (!stopping) {
      await sleep(rng.int(300, 1200));
      const approved = [...attempts.values()].flatMap((a) => [...a.approved]).filter((c) => c !== "");
      if (approved.length === 0) continue;
      const code = rng.pick(approved.slice(-40));
      if (voids.has(code) || refunded.has(code)) continue;
      if (rng.chance(0.12)) {
        // Races the settlement job: either the void or the capture wins, never both.
        const v: VoidRecord = { authCode: code, outcomes: [], attempts: 0, done: false };
        voids.set(code, v);
        stats.voids++;
        await until(() => voidOnce(v), v, BACK_OFFICE_ATTEMPTS_MAX);
        continue;
      }
      let captured = 0n;
      try {
        const a = (await shop.getAuthorization({ authCode: code })).authorization!;
        if (a.status !== AuthorizationStatus.CAPTURED) continue;
        captured = a.capturedMinor;
      } catch (e) {
        backOfficeFailure(e, "get");
        continue;
      }
      if (rng.chance(0.5) || captured < 4n) continue;
      refunded.add(code);
      // One to three refunds at once; together they may ask for more than was captured.
      const copies = rng.int(1, 3);
      const batch = Array.from({ length: copies }, (): RefundRecord => {
        const f: RefundRecord = {
          key: `chaos-refund-${randomUUID()}`,
          authCode: code,
          amountMinor: BigInt(rng.int(1, Number(captured / 2n))),
          committed: new Set(),
          declined: [],
          attempts: 0,
          done: false,
        };
        refunds.set(f.key, f);
        stats.refunds++;
        return f;
      });
      await Promise.all(batch.map((f) => until(() => refundOnce(f), f, BACK_OFFICE_ATTEMPTS_MAX)));
    }
  }

  return {
    attempts,
    refunds,
    voids,
    stats,
    run(shoppers: number): Promise<unknown> {
      return Promise.all([...Array.from({ length: shoppers }, () => shopper()), backOffice()]);
    },
    stop(): void {
      stopping = true;
    },
    /** After healing: every open attempt, void and refund is sent again until it has a verdict (bounded). */
    async finish(): Promise<number> {
      stopping = false;
      await Promise.all([
        ...[...attempts.values()].filter((r) => !r.done).map((r) => settleAttempt(r, r.attempts + 10)),
        ...[...voids.values()].filter((v) => !v.done).map((v) => until(() => voidOnce(v), v, v.attempts + 6)),
        ...[...refunds.values()].filter((f) => !f.done).map((f) => until(() => refundOnce(f), f, f.attempts + 8)),
      ]);
      stopping = true;
      Object.assign(stats, { approved: 0, declined: 0, voided: 0, refundsCommitted: 0, refundsDeclined: 0 });
      for (const r of attempts.values()) {
        if (r.approved.size > 0) stats.approved++;
        else if (r.done) stats.declined++;
      }
      for (const v of voids.values()) if (v.outcomes.includes("VOIDED")) stats.voided++;
      for (const f of refunds.values()) {
        if (f.committed.size > 0) stats.refundsCommitted++;
        else if (f.declined.length > 0) stats.refundsDeclined++;
      }
      return [...attempts.values(), ...voids.values(), ...refunds.values()].filter((r) => !r.done).length;
    },
    /**
     * Waits until the checkout has settled every approved order: no order
     * waits for a batch and no batch is open. The checkout backs off a
     * capture that failed for a transient reason (30 s, doubling), so this
     * waits for the latest retry that is due plus a grace period, or 30 s
     * with nothing due, within `capMs`. Returns how long it took and what was left.
     */
    async drainSettlement(
      capMs: number,
      log: (line: string) => void,
      capturedEnough?: number,
    ): Promise<{ ms: number; left: number }> {
      const started = Date.now();
      const GRACE_MS = 30_000;
      let lastLog = 0;
      for (;;) {
        const view = readCheckout(cluster.checkoutDbFile);
        const waiting = [...view.orders.values()].filter(
          (o) => o.state === "approved" && (o.settleState === "unsettled" || o.settleState === "in_batch"),
        );
        const left = waiting.length + view.openSettlements;
        if (left === 0) return { ms: Date.now() - started, left: 0 };
        if (
          capturedEnough !== undefined &&
          [...view.orders.values()].filter((o) => o.settleState === "captured").length >= capturedEnough
        )
          return { ms: Date.now() - started, left };
        const latestDue = Math.max(0, ...waiting.map((o) => o.settleNotBeforeMs));
        if (Date.now() > Math.min(started + capMs, Math.max(started, latestDue) + GRACE_MS))
          return { ms: Date.now() - started, left };
        if (Date.now() - lastLog >= 15_000) {
          lastLog = Date.now();
          log(
            `  settlement: ${waiting.length} approved orders not captured yet, ${view.openSettlements} open batches; latest capture retry due in ${Math.max(0, Math.round((latestDue - Date.now()) / 1000))} s`,
          );
        }
        await sleep(1000);
      }
    },
    /**
     * After the run: every card key once more, straight to a random replica as
     * the merchant: each Authorize key with the request the checkout sent,
     * each refund key, each settlement batch key. Nothing may be held,
     * captured or refunded a second time; the answers land in the records.
     */
    async resendAll(): Promise<{ sent: number; changed: string[] }> {
      /** One Authorize key sent again as the checkout sent it; what its answer says changed goes to `changed`. */
      async function resendAuthorize(
        r: AttemptRecord,
        order: CheckoutOrderRow,
        t: { readonly key: string; readonly cvc: string },
        changed: string[],
      ): Promise<void> {
        try {
          const res = await shop.authorize({
            idempotencyKey: t.key,
            card: {
              number: r.card.number,
              expMonth: r.card.expMonth,
              expYear: r.card.expYear,
              cvc: t.cvc,
              cardholderName: `${r.card.holder} chaos`,
            },
            amountMinor: order.amountMinor,
            currency: "USD",
            merchantReference: order.orderId,
            merchantAccountId: cluster.merchantAccount.id,
          });
          const code = res.authorization!.authCode;
          history.add({ kind: "resend", key: r.attemptKey, detail: `Authorize ${t.key} again: ${code}` });
          if (t.key === order.gatewayKey && order.authCode !== "" && code !== order.authCode)
            changed.push(`Authorize key ${t.key} re-sent: auth code ${code}, the checkout holds ${order.authCode}`);
          if (order.state === "declined" && t.key === order.gatewayKey)
            changed.push(`Authorize key ${t.key} was declined (${order.reason}) and, re-sent, is approved as ${code}`);
          if (t.key !== order.gatewayKey)
            changed.push(`Authorize key ${t.key} was declined (incorrect_cvc) and, re-sent, is approved as ${code}`);
        } catch (e) {
          const info = errorInfo(e);
          history.add({
            kind: "resend",
            key: r.attemptKey,
            detail: `Authorize ${t.key} again: ${info.reason || Code[info.code]}`,
          });
          if (
            t.key === order.gatewayKey &&
            order.authCode !== "" &&
            info.reason !== "" &&
            !["idempotency_key_in_use", "participant_unavailable", "participant_timeout", "store_unavailable"].includes(
              info.reason,
            ) &&
            info.code !== Code.Unavailable &&
            info.code !== Code.DeadlineExceeded
          ) {
            changed.push(`Authorize key ${t.key} (approved as ${order.authCode}) re-sent: ${info.reason}`);
          }
        }
      }
      const view = readCheckout(cluster.checkoutDbFile);
      const changed: string[] = [];
      let sent = 0;
      for (const r of attempts.values()) {
        const order = view.orders.get(r.attemptKey);
        if (!order) continue;
        // The keys the checkout used: the attempt key, and `<key>-r1` after a corrected decline.
        const tries = r.wrongCvcFirst
          ? [
              { key: r.attemptKey, cvc: r.card.cvc === "999" ? "998" : "999" },
              { key: `${r.attemptKey}-r1`, cvc: r.card.cvc },
            ]
          : [{ key: r.attemptKey, cvc: r.card.cvc }];
        for (const t of tries) {
          if (t.key !== order.gatewayKey && t.key !== r.attemptKey) continue;
          sent++;
          await resendAuthorize(r, order, t, changed);
        }
      }
      for (const f of refunds.values()) {
        sent++;
        const before = f.committed.size;
        await refundOnce(f);
        if (before > 0 && f.committed.size !== before)
          changed.push(`refund key ${f.key} re-sent: refund ids ${[...f.committed].join(", ")}`);
        if (f.declined.length > 0 && f.committed.size > 0)
          changed.push(
            `refund key ${f.key} was declined (${f.declined.join(", ")}) and committed as ${[...f.committed].join(", ")}`,
          );
      }
      for (const b of view.batches) {
        if (b.items.length === 0) continue;
        sent++;
        try {
          const res = await shop.settleBatch({
            idempotencyKey: b.key,
            items: b.items.map((i) => ({ authCode: i.authCode, amountMinor: i.amountMinor })),
          });
          history.add({
            kind: "resend",
            key: b.key,
            detail: `SettleBatch again: ${res.results.map((x) => `${x.authCode}=${SettleItemStatus[x.status]}${x.reason ? `/${x.reason}` : ""}`).join(" ")}`,
          });
        } catch (e) {
          history.add({
            kind: "resend",
            key: b.key,
            detail: `SettleBatch again: ${errorInfo(e).reason || Code[errorInfo(e).code]}`,
          });
        }
      }
      return { sent, changed };
    },
  };
}

export type CardWorkload = ReturnType<typeof createCardWorkload>;
