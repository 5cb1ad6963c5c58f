// The gateway's public API as paycli uses it: generated Connect clients over
// mTLS, proto messages mapped to plain views, and every failure sorted into
// what the queue needs to know — answered (declined), try again later
// (transient), or log in again.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  AdminService,
  AuthService,
  PaymentService,
  Role,
  TransactionStatus,
  WebhookDeliveryStatus,
  WebhookEndpointStatus,
  WebhookService,
  type Account,
  type Transaction,
  type User,
  type WebhookDelivery,
  type WebhookEndpoint,
} from "@paygate/proto/gateway";
import { ErrorDetailSchema } from "@paygate/proto/common";
import { createMtlsTransport, errorInfo, isReason, loadTls, retryableReasons, type TlsFiles } from "@paygate/rpc";
import type { SendOutcome } from "./domain/queue.js";
import type {
  AccountView,
  LoginView,
  ReconcileView,
  RoleName,
  TransactionStatusName,
  TransactionView,
  UserView,
  WebhookAttemptView,
  WebhookDeliveryStatusName,
  WebhookDeliveryView,
  WebhookEndpointView,
} from "./views.js";

export interface GatewayClientOptions {
  readonly baseUrl: string;
  readonly tls: TlsFiles;
  readonly timeoutMs: number;
  /** Session token sent as `authorization: Bearer ...` on every call but Login. */
  readonly token?: string | undefined;
  /** Outermost first, before the bearer token (e.g. the trace client interceptor). */
  readonly interceptors?: readonly Interceptor[] | undefined;
}

export interface TransferCommand {
  readonly key: string;
  readonly fromAccountId: string;
  readonly toAccountId: string;
  readonly amountMinor: bigint;
  readonly currency: string;
  readonly memo: string;
}

export interface TransferResult {
  readonly outcome: SendOutcome;
  readonly transaction: TransactionView | null;
}

export interface GatewayClient {
  login(username: string, password: string): Promise<LoginView>;
  /** Sign-up (public): a customer with no accounts. */
  register(input: { username: string; password: string; displayName: string }): Promise<UserView>;
  /** Links an account the caller holds at its bank (the bank checks the holder's name and the code). */
  linkBankAccount(input: { accountId: string; holderName: string; linkCode: string }): Promise<AccountView>;
  issueLinkCode(input: {
    accountId: string;
    holderName: string;
  }): Promise<{ accountId: string; linkCode: string; holderName: string }>;
  unlinkBankAccount(accountId: string): Promise<{ accountId: string; previousOwnerUserId: string }>;
  logout(): Promise<void>;
  balances(accountId?: string): Promise<AccountView[]>;
  /** Never throws for an answer or a network failure: both are outcomes the queue records. */
  transfer(command: TransferCommand): Promise<TransferResult>;
  transactions(options: {
    afterSequence: bigint;
    follow: boolean;
    limit: number;
    signal?: AbortSignal | undefined;
  }): AsyncIterable<TransactionView>;
  createUser(input: { username: string; password: string; roles: RoleName[]; displayName: string }): Promise<UserView>;
  openAccount(input: { ownerUserId: string; bank: string; currency: string }): Promise<AccountView>;
  deposit(input: { key: string; accountId: string; amountMinor: bigint; currency: string }): Promise<AccountView>;
  reconcile(): Promise<ReconcileView>;
  /** WebhookService: the caller's own endpoints and deliveries. */
  createWebhookEndpoint(input: {
    url: string;
    eventTypes: string[];
  }): Promise<{ endpoint: WebhookEndpointView; secret: string }>;
  listWebhookEndpoints(): Promise<WebhookEndpointView[]>;
  deleteWebhookEndpoint(endpointId: string): Promise<void>;
  /** `overlapSeconds` undefined: the gateway's default (24 h). */
  rollWebhookSecret(
    endpointId: string,
    overlapSeconds: bigint | undefined,
  ): Promise<{ secret: string; previousExpiresAt: Date | null }>;
  listWebhookDeliveries(input: {
    endpointId: string;
    pageSize: number;
    pageToken: string;
  }): Promise<{ deliveries: WebhookDeliveryView[]; nextPageToken: string }>;
  getWebhookDelivery(deliveryId: string): Promise<{ delivery: WebhookDeliveryView; attempts: WebhookAttemptView[] }>;
  redeliverWebhook(deliveryId: string): Promise<WebhookDeliveryView>;
}

/** Thrown by every call except transfer; `failure` says what kind. */
export class GatewayError extends Error {
  override name = "GatewayError";
  constructor(readonly failure: Failure) {
    super(failure.message);
  }
}

/** The TLS files could not be read: a setup problem, caught before anything is queued. */
export class TlsSetupError extends Error {
  override name = "TlsSetupError";
}

export type Failure =
  | {
      readonly kind: "transient";
      readonly scope: "gateway" | "entry";
      readonly reason: string;
      readonly message: string;
      readonly code: Code;
    }
  | { readonly kind: "needs_login"; readonly reason: string; readonly message: string; readonly code: Code }
  | {
      readonly kind: "rejected";
      readonly reason: string;
      readonly message: string;
      readonly code: Code;
      readonly transactionId: string | null;
    };

// Codes the client side raises when the request or its answer was lost on the
// way (refused, reset, TLS torn down, HTTP 429/503): no verdict was given.
const TRANSPORT_CODES = new Set<Code>([
  Code.Unavailable,
  Code.Aborted,
  Code.Canceled,
  Code.Internal,
  Code.Unknown,
  Code.ResourceExhausted,
]);

/**
 * Sorts any error from a call. Only an ErrorDetail is the gateway's verdict;
 * a bare Connect error is the network's, and the idempotency key makes
 * sending the same request again safe whatever happened to the first one.
 */
export function classifyError(err: unknown): Failure {
  if (!(err instanceof ConnectError)) throw err; // a bug here, not a network failure: let it crash loudly
  const info = errorInfo(err);
  const hasDetail = err.findDetails(ErrorDetailSchema).length > 0;
  if (info.code === Code.Unauthenticated)
    return {
      kind: "needs_login",
      reason: hasDetail ? info.reason : "unauthenticated",
      message: info.message || "not authenticated",
      code: info.code,
    };
  if (!hasDetail) {
    if (info.code === Code.DeadlineExceeded)
      return {
        kind: "transient",
        scope: "gateway",
        reason: "timeout",
        message: "no answer from the gateway before the deadline",
        code: info.code,
      };
    if (TRANSPORT_CODES.has(info.code))
      return {
        kind: "transient",
        scope: "gateway",
        reason: "gateway_unreachable",
        message: `gateway unreachable: ${err.rawMessage}`,
        code: info.code,
      };
    return {
      kind: "rejected",
      reason: info.reason,
      message: `the gateway refused the call (${info.reason}): ${err.rawMessage}`,
      code: info.code,
      transactionId: null,
    };
  }
  if (isReason(info.reason) && retryableReasons.has(info.reason)) {
    return {
      kind: "transient",
      scope: info.reason === "shutting_down" ? "gateway" : "entry",
      reason: info.reason,
      message: info.message,
      code: info.code,
    };
  }
  // The gateway hid an unexpected failure from us; the same key makes a retry safe.
  if (info.code === Code.Internal)
    return { kind: "transient", scope: "gateway", reason: info.reason, message: info.message, code: info.code };
  return {
    kind: "rejected",
    reason: info.reason,
    message: info.message,
    code: info.code,
    transactionId: info.metadata.transaction_id ?? null,
  };
}

export function outcomeOfFailure(f: Failure): SendOutcome {
  switch (f.kind) {
    case "transient":
      return { kind: "transient", scope: f.scope, reason: f.reason, message: f.message };
    case "needs_login":
      return { kind: "needs_login", reason: f.reason, message: f.message };
    case "rejected":
      return { kind: "declined", reason: f.reason, message: f.message, transactionId: f.transactionId };
  }
}

export function createGatewayClient(options: GatewayClientOptions): GatewayClient {
  let material;
  try {
    material = loadTls(options.tls);
  } catch (e) {
    throw new TlsSetupError(
      `cannot read the TLS files (CA ${options.tls.caFile}, cert ${options.tls.certFile}, key ${options.tls.keyFile}): ${(e as Error).message}. ` +
        "Run `make certs` or pass --ca/--cert/--key-file (PAYGATE_CA/PAYGATE_CERT/PAYGATE_KEY).",
    );
  }
  const bearer: Interceptor = (next) => (req) => {
    if (options.token !== undefined) req.header.set("authorization", `Bearer ${options.token}`);
    return next(req);
  };
  const transport = createMtlsTransport({
    baseUrl: options.baseUrl,
    tls: material,
    interceptors: [...(options.interceptors ?? []), bearer],
  });
  const auth = createClient(AuthService, transport);
  const payments = createClient(PaymentService, transport);
  const admin = createClient(AdminService, transport);
  const webhooks = createClient(WebhookService, transport);
  const unary = { timeoutMs: options.timeoutMs };

  async function call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw new GatewayError(classifyError(e));
    }
  }

  return {
    async login(username, password) {
      const res = await call(() => auth.login({ username, password }, unary));
      return {
        token: res.sessionToken,
        expiresAt: dateOf(res.expiresAt),
        userId: res.userId,
        roles: res.roles.map(roleName).filter((r): r is RoleName => r !== undefined),
      };
    },
    async logout() {
      await call(() => auth.logout({}, unary));
    },
    async register(input) {
      const res = await call(() => auth.register(input, unary));
      return userView(res.user);
    },
    async linkBankAccount(input) {
      const res = await call(() => payments.linkBankAccount(input, unary));
      return accountView(required(res.account, "an account"));
    },
    async issueLinkCode(input) {
      const res = await call(() => admin.issueLinkCode(input, unary));
      return { accountId: res.accountId, linkCode: res.linkCode, holderName: res.holderName };
    },
    async unlinkBankAccount(accountId) {
      const res = await call(() => admin.unlinkBankAccount({ accountId }, unary));
      return { accountId: res.accountId, previousOwnerUserId: res.previousOwnerUserId };
    },
    async balances(accountId = "") {
      const res = await call(() => payments.getBalance({ accountId }, unary));
      return res.accounts.map(accountView);
    },
    async transfer(c) {
      let res;
      try {
        res = await payments.transfer(
          {
            idempotencyKey: c.key,
            fromAccountId: c.fromAccountId,
            toAccountId: c.toAccountId,
            amountMinor: c.amountMinor,
            currency: c.currency,
            memo: c.memo,
          },
          unary,
        );
      } catch (e) {
        return { outcome: outcomeOfFailure(classifyError(e)), transaction: null };
      }
      const t = res.transaction;
      if (t === undefined)
        return {
          outcome: {
            kind: "transient",
            scope: "entry",
            reason: "empty_response",
            message: "the gateway answered without a transaction",
          },
          transaction: null,
        };
      const view = transactionView(t);
      switch (t.status) {
        case TransactionStatus.COMMITTED:
          return { outcome: { kind: "committed", transactionId: t.transactionId }, transaction: view };
        case TransactionStatus.ABORTED:
          return {
            outcome: {
              kind: "declined",
              reason: t.declineReason || "aborted",
              message: `transaction ${t.transactionId} aborted`,
              transactionId: t.transactionId,
            },
            transaction: view,
          };
        default:
          // Not decided yet: asking again with the same key returns the decision once there is one.
          return {
            outcome: {
              kind: "transient",
              scope: "entry",
              reason: "pending",
              message: `transaction ${t.transactionId} is not decided yet`,
            },
            transaction: view,
          };
      }
    },
    transactions({ afterSequence, follow, limit, signal }) {
      return {
        async *[Symbol.asyncIterator]() {
          const stream = payments.listTransactions(
            { afterSequence, follow, limit },
            { signal, ...(follow ? {} : unary) },
          );
          try {
            for await (const res of stream) {
              if (res.transaction !== undefined) yield transactionView(res.transaction);
            }
          } catch (e) {
            throw new GatewayError(classifyError(e));
          }
        },
      };
    },
    async createUser(input) {
      const res = await call(() =>
        admin.createUser(
          {
            username: input.username,
            password: input.password,
            roles: input.roles.map(roleValue),
            displayName: input.displayName,
          },
          unary,
        ),
      );
      return userView(res.user);
    },
    async openAccount(input) {
      const res = await call(() => admin.openAccount(input, unary));
      return accountView(required(res.account, "an account"));
    },
    async deposit(input) {
      const res = await call(() =>
        admin.deposit(
          {
            idempotencyKey: input.key,
            accountId: input.accountId,
            amountMinor: input.amountMinor,
            currency: input.currency,
          },
          unary,
        ),
      );
      return accountView(required(res.account, "an account"));
    },
    async reconcile() {
      const res = await call(() => admin.reconcile({}, unary));
      return {
        conserved: res.conserved,
        currencies: res.currencies.map((c) => ({
          currency: c.currency,
          balanceMinor: c.balanceMinor,
          heldMinor: c.heldMinor,
          depositedMinor: c.depositedMinor,
          conserved: c.conserved,
        })),
        banks: res.banks.map((b) => ({
          bank: b.bank,
          reachable: b.reachable,
          ledgerConsistent: b.ledgerConsistent,
          problems: [...b.problems],
          preparedCount: b.preparedCount,
        })),
        inDoubt: res.inDoubt.map((d) => ({
          transactionId: d.transactionId,
          where: d.where,
          state: d.state,
          ageMs: d.ageMs,
        })),
      };
    },
    async createWebhookEndpoint(input) {
      const res = await call(() => webhooks.createEndpoint(input, unary));
      return { endpoint: endpointView(required(res.endpoint, "an endpoint")), secret: res.secret };
    },
    async listWebhookEndpoints() {
      return (await call(() => webhooks.listEndpoints({}, unary))).endpoints.map(endpointView);
    },
    async deleteWebhookEndpoint(endpointId) {
      await call(() => webhooks.deleteEndpoint({ endpointId }, unary));
    },
    async rollWebhookSecret(endpointId, overlapSeconds) {
      const res = await call(() =>
        webhooks.rollSecret({ endpointId, ...(overlapSeconds === undefined ? {} : { overlapSeconds }) }, unary),
      );
      return { secret: res.secret, previousExpiresAt: dateOf(res.previousExpiresAt) };
    },
    async listWebhookDeliveries(input) {
      const res = await call(() => webhooks.listDeliveries(input, unary));
      return { deliveries: res.deliveries.map(deliveryView), nextPageToken: res.nextPageToken };
    },
    async getWebhookDelivery(deliveryId) {
      const res = await call(() => webhooks.getDelivery({ deliveryId }, unary));
      return {
        delivery: deliveryView(required(res.delivery, "a delivery")),
        attempts: res.attempts.map((a) => ({
          attempt: a.attempt,
          at: dateOf(a.at),
          statusCode: a.statusCode,
          latencyMs: a.latencyMs,
          error: a.error,
        })),
      };
    },
    async redeliverWebhook(deliveryId) {
      return deliveryView(
        required((await call(() => webhooks.redeliver({ deliveryId }, unary))).delivery, "a delivery"),
      );
    },
  };
}

const ENDPOINT_STATUS_NAMES: Partial<Record<WebhookEndpointStatus, WebhookEndpointView["status"]>> = {
  [WebhookEndpointStatus.ENABLED]: "enabled",
  [WebhookEndpointStatus.DISABLED]: "disabled",
};
const DELIVERY_STATUS_NAMES: Partial<Record<WebhookDeliveryStatus, WebhookDeliveryStatusName>> = {
  [WebhookDeliveryStatus.PENDING]: "pending",
  [WebhookDeliveryStatus.DELIVERED]: "delivered",
  [WebhookDeliveryStatus.FAILED]: "failed",
};

function endpointView(e: WebhookEndpoint): WebhookEndpointView {
  return {
    endpointId: e.endpointId,
    url: e.url,
    eventTypes: [...e.eventTypes],
    status: ENDPOINT_STATUS_NAMES[e.status] ?? "unknown",
    createdAt: dateOf(e.createdAt),
  };
}

function deliveryView(d: WebhookDelivery): WebhookDeliveryView {
  return {
    deliveryId: d.deliveryId,
    endpointId: d.endpointId,
    eventId: d.eventId,
    eventType: d.eventType,
    objectId: d.objectId,
    status: DELIVERY_STATUS_NAMES[d.status] ?? "unknown",
    attempts: d.attempts,
    nextAttemptAt: dateOf(d.nextAttemptAt),
    lastStatusCode: d.lastStatusCode,
    lastError: d.lastError,
    createdAt: dateOf(d.createdAt),
    deliveredAt: dateOf(d.deliveredAt),
  };
}

/** A field the gateway always sets; its absence is an answer we cannot use. */
function required<T>(value: T | undefined, what: string): T {
  if (value === undefined)
    throw new GatewayError({
      kind: "rejected",
      reason: "empty_response",
      message: `the gateway answered without ${what}`,
      code: Code.Internal,
      transactionId: null,
    });
  return value;
}

function dateOf(t: Timestamp | undefined): Date | null {
  return t === undefined ? null : timestampDate(t);
}

const STATUS_NAMES: Record<TransactionStatus, TransactionStatusName> = {
  [TransactionStatus.UNSPECIFIED]: "unknown",
  [TransactionStatus.PENDING]: "pending",
  [TransactionStatus.COMMITTED]: "committed",
  [TransactionStatus.ABORTED]: "aborted",
};

function transactionView(t: Transaction): TransactionView {
  return {
    transactionId: t.transactionId,
    sequence: t.sequence,
    status: STATUS_NAMES[t.status] ?? "unknown",
    declineReason: t.declineReason,
    fromAccountId: t.fromAccountId,
    toAccountId: t.toAccountId,
    amountMinor: t.amountMinor,
    currency: t.currency,
    memo: t.memo,
    idempotencyKey: t.idempotencyKey,
    createdAt: dateOf(t.createdAt),
    decidedAt: dateOf(t.decidedAt),
    initiatedByUserId: t.initiatedByUserId,
  };
}

function accountView(a: Account): AccountView {
  return {
    accountId: a.accountId,
    bank: a.bank,
    ownerUserId: a.ownerUserId,
    currency: a.currency,
    balanceMinor: a.balanceMinor,
    heldMinor: a.heldMinor,
    availableMinor: a.availableMinor,
  };
}

function userView(maybe: User | undefined): UserView {
  const u = required(maybe, "a user");
  return {
    userId: u.userId,
    username: u.username,
    roles: u.roles.map(roleName).filter((r): r is RoleName => r !== undefined),
    displayName: u.displayName,
  };
}

const ROLE_NAMES: Partial<Record<Role, RoleName>> = {
  [Role.CUSTOMER]: "customer",
  [Role.MERCHANT]: "merchant",
  [Role.ADMIN]: "admin",
};

function roleName(r: Role): RoleName | undefined {
  return ROLE_NAMES[r];
}

export function roleValue(name: RoleName): Role {
  return { customer: Role.CUSTOMER, merchant: Role.MERCHANT, admin: Role.ADMIN }[name];
}
