// Proto <-> domain for the gateway's services. No business rules here:
// each handler unpacks the request, calls one use case and maps the result
// (a Failure becomes a Connect error with its reason from the error table).
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  AdminService,
  AuthService,
  CoordinatorService,
  Decision as ProtoDecision,
  PaymentService,
  Role as ProtoRole,
  TransactionStatus,
  type AccountSchema,
  type TransactionSchema,
} from "@paygate/proto/gateway";
import { bankOfIdentity, peerKey, rejection } from "@paygate/rpc";
import { setSpanAttributes } from "@paygate/telemetry";
import type { Admin } from "./domain/admin.js";
import type { Auth } from "./domain/auth.js";
import type { Coordinator } from "./domain/coordinator.js";
import type { Role, TxnRecord } from "./domain/model.js";
import type { AccountView, PaymentQueries } from "./domain/payments.js";
import type { Cards } from "./domain/cards.js";
import type { Links } from "./domain/links.js";
import type { UserRecord } from "./domain/ports.js";
import type { SignUp } from "./domain/sign-up.js";
import { cardRoutes, issueCardHandler } from "./routes-cards.js";
import { callerOf, logFields, unwrap } from "./route-support.js";
import type { Webhooks } from "./domain/webhooks.js";
import { webhookRoutes } from "./routes-webhooks.js";

export interface GatewayUseCases {
  readonly auth: Auth;
  readonly coordinator: Coordinator;
  readonly payments: PaymentQueries;
  readonly admin: Admin;
  readonly cards: Cards;
  readonly signUp: SignUp;
  readonly links: Links;
  readonly webhooks: Webhooks;
}

const ROLE_TO_PROTO: Record<Role, ProtoRole> = {
  customer: ProtoRole.CUSTOMER,
  merchant: ProtoRole.MERCHANT,
  admin: ProtoRole.ADMIN,
};
const PROTO_TO_ROLE = new Map<ProtoRole, Role>([
  [ProtoRole.CUSTOMER, "customer"],
  [ProtoRole.MERCHANT, "merchant"],
  [ProtoRole.ADMIN, "admin"],
]);
const rolesToProto = (roles: readonly string[]): ProtoRole[] =>
  roles.flatMap((r) => (r in ROLE_TO_PROTO ? [ROLE_TO_PROTO[r as Role]] : []));

const STATUS_TO_PROTO = {
  PENDING: TransactionStatus.PENDING,
  COMMITTED: TransactionStatus.COMMITTED,
  ABORTED: TransactionStatus.ABORTED,
} as const;

function toProtoTxn(t: TxnRecord): MessageInitShape<typeof TransactionSchema> {
  return {
    transactionId: t.txnId,
    sequence: t.sequence,
    status: STATUS_TO_PROTO[t.status],
    declineReason: t.declineReason,
    fromAccountId: t.fromAccountId,
    toAccountId: t.toAccountId,
    amountMinor: t.amountMinor,
    currency: t.currency,
    memo: t.memo,
    idempotencyKey: t.idempotencyKey,
    createdAt: timestampFromMs(t.createdAtMs),
    ...(t.decidedAtMs > 0 ? { decidedAt: timestampFromMs(t.decidedAtMs) } : {}),
    initiatedByUserId: t.callerUserId,
  };
}

function toProtoAccount(a: AccountView): MessageInitShape<typeof AccountSchema> {
  return { ...a };
}

/** Who is asking, for lockouts and rate limits: the address and the certificate identity. */
function clientOf(ctx: HandlerContext): string {
  const peer = ctx.values.get(peerKey);
  return `${peer.ip} ${peer.identity ?? "-"}`;
}

function userMsg(user: UserRecord) {
  return {
    userId: user.userId,
    username: user.username,
    roles: rolesToProto(user.roles),
    displayName: user.displayName,
  };
}

function bearerToken(ctx: HandlerContext): string {
  return /^Bearer\s+(\S+)$/i.exec(ctx.requestHeader.get("authorization") ?? "")?.[1] ?? "";
}

export function createRoutes(u: GatewayUseCases): (router: ConnectRouter) => void {
  return (router) => {
    router.service(AuthService, {
      async login(req, ctx) {
        const s = unwrap(await u.auth.login(req.username, req.password, clientOf(ctx)));
        logFields(ctx).userId = s.user.userId;
        return {
          sessionToken: s.token,
          expiresAt: timestampFromMs(s.expiresAtMs),
          userId: s.user.userId,
          roles: rolesToProto(s.user.roles),
        };
      },
      async logout(_req, ctx) {
        await u.auth.logout(bearerToken(ctx));
        return {};
      },
      async register(req, ctx) {
        const user = unwrap(
          await u.signUp.register(
            { username: req.username, password: req.password, displayName: req.displayName },
            clientOf(ctx),
          ),
        );
        logFields(ctx).userId = user.userId;
        return { user: userMsg(user) };
      },
    });

    router.service(PaymentService, {
      async transfer(req, ctx) {
        const caller = callerOf(ctx);
        const out = await u.coordinator.transfer(caller.userId, {
          idempotencyKey: req.idempotencyKey,
          fromAccountId: req.fromAccountId,
          toAccountId: req.toAccountId,
          amountMinor: req.amountMinor,
          currency: req.currency,
          memo: req.memo,
        });
        const f = logFields(ctx);
        if (out.txnId) f.transactionId = out.txnId;
        if (out.replayed) f.retry = true;
        const r = out.result;
        // A failure with a txn is a 2PC abort, unless the key belongs to another request or is still in flight.
        const outcome = r.ok
          ? r.value.status.toLowerCase()
          : out.txnId && !r.reason.startsWith("idempotency_key_")
            ? "aborted"
            : "rejected";
        setSpanAttributes({
          transactionId: out.txnId,
          amountMinor: req.amountMinor,
          currency: req.currency,
          outcome,
          reason: r.ok ? undefined : r.reason,
        });
        return { transaction: toProtoTxn(unwrap(out.result)) };
      },
      async getBalance(req, ctx) {
        const accounts = unwrap(await u.payments.getBalance(callerOf(ctx).userId, req.accountId));
        return { accounts: accounts.map(toProtoAccount) };
      },
      async getTransaction(req, ctx) {
        return {
          transaction: toProtoTxn(unwrap(await u.payments.getTransaction(callerOf(ctx).userId, req.transactionId))),
        };
      },
      async *listTransactions(req, ctx) {
        const txns = unwrap(
          u.payments.listTransactions(callerOf(ctx).userId, {
            afterSequence: req.afterSequence,
            limit: req.limit,
            follow: req.follow,
            signal: ctx.signal,
          }),
        );
        for await (const t of txns) yield { transaction: toProtoTxn(t) };
      },
      // The log line names the account and the steps taken, never the code (the interceptor logs only known-safe fields).
      async linkBankAccount(req, ctx) {
        const linked = unwrap(
          await u.links.link(callerOf(ctx).userId, {
            accountId: req.accountId,
            holderName: req.holderName,
            linkCode: req.linkCode,
          }),
        );
        logFields(ctx).linkSteps = linked.steps.join(",");
        return { account: toProtoAccount(linked.account) };
      },
    });

    router.service(AdminService, {
      issueCard: issueCardHandler(u.cards),
      async createUser(req) {
        const roles = req.roles.map((r) => PROTO_TO_ROLE.get(r) ?? `unknown(${r})`);
        const user = unwrap(
          await u.admin.createUser({
            username: req.username,
            password: req.password,
            roles,
            displayName: req.displayName,
          }),
        );
        return { user: userMsg(user) };
      },
      async issueLinkCode(req) {
        const issued = unwrap(await u.links.issueCode(req.accountId, req.holderName));
        return { accountId: issued.accountId, linkCode: issued.linkCode, holderName: issued.holderName };
      },
      async unlinkBankAccount(req, ctx) {
        const r = unwrap(await u.links.unlink(req.accountId));
        logFields(ctx).previousOwner = r.previousOwnerUserId;
        return { accountId: r.accountId, previousOwnerUserId: r.previousOwnerUserId };
      },
      async openAccount(req, ctx) {
        const account = unwrap(await u.admin.openAccount(req.ownerUserId, req.bank, req.currency));
        logFields(ctx).accountId = account.accountId;
        return { account: toProtoAccount(account) };
      },
      async deposit(req) {
        const account = unwrap(await u.admin.deposit(req.idempotencyKey, req.accountId, req.amountMinor, req.currency));
        return { account: toProtoAccount(account) };
      },
      async reconcile(_req, ctx) {
        const r = await u.admin.reconcile();
        const f = logFields(ctx);
        f.conserved = r.conserved;
        f.inDoubt = r.inDoubt.length;
        return {
          conserved: r.conserved,
          currencies: r.currencies.map((c) => ({ ...c })),
          banks: r.banks.map((b) => ({ ...b, problems: [...b.problems], preparedCount: BigInt(b.preparedCount) })),
          inDoubt: r.inDoubt.map((d) => ({ ...d, ageMs: BigInt(d.ageMs) })),
        };
      },
    });

    cardRoutes(u.cards)(router);
    webhookRoutes(u.webhooks)(router);

    router.service(CoordinatorService, {
      async getDecision(req, ctx) {
        const bank = bankOfIdentity(ctx.values.get(peerKey).identity);
        if (!bank) throw rejection("peer_not_allowed", "only banks may ask for decisions");
        logFields(ctx).bank = bank;
        const d = unwrap(await u.coordinator.getDecision(req.txnId, bank));
        logFields(ctx).decision = d;
        return { decision: d === "COMMIT" ? ProtoDecision.COMMIT : ProtoDecision.ABORT };
      },
    });
  };
}
