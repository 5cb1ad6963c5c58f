// The gateway's CardService as the shop uses it: Connect JSON over HTTP/2 with
// the shop's client certificate, logged in as the merchant. The session token
// is kept and renewed on Unauthenticated (one login at a time, one retry per
// call). Every failure is sorted into a verdict (declined / rejected) or "no
// verdict" (unavailable) — the idempotency key makes resending the latter safe.
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { ErrorDetailSchema } from "@paygate/proto/common";
import { AuthService, CardService, SettleItemStatus, WebhookService } from "@paygate/proto/gateway";
import { errorInfo, loadTls, watchTls, type Logger, type TlsFiles, type TlsMaterial } from "@paygate/rpc";
import { isRetryableReason } from "@paygate/vocab";
import type { AuthorizeResult, CardGateway, SettleResult, WebhookAdmin } from "./domain/ports.js";

export interface GatewayClientOptions {
  readonly baseUrl: string;
  readonly tls: TlsFiles;
  readonly username: string;
  readonly password: string;
  readonly timeoutMs: number;
  readonly logger: Logger;
  /** Outermost first, before the session header (tracing, client metrics). */
  readonly interceptors?: Interceptor[];
}

export interface MerchantGatewayClient extends CardGateway {
  /** The merchant's webhook endpoints (WebhookService), for the checkout's registration. */
  readonly webhooks: WebhookAdmin;
  close(): void;
}

/** A WebhookService call that got no answer or a refusal; the registration retries on it. */
export class WebhookAdminError extends Error {
  constructor(
    readonly method: string,
    readonly reason: string,
    message: string,
  ) {
    super(`${method}: ${reason}: ${message}`);
  }
}

type Failure =
  | { kind: "verdict"; reason: string; message: string; code: Code }
  | { kind: "no_verdict"; reason: string; message: string; code: Code }
  | { kind: "needs_login"; reason: string; message: string; code: Code };

// Raised by the client side when the request or its answer was lost: no verdict.
const TRANSPORT_CODES = new Set<Code>([
  Code.Unavailable,
  Code.Aborted,
  Code.Canceled,
  Code.Internal,
  Code.Unknown,
  Code.ResourceExhausted,
  Code.DeadlineExceeded,
]);

export function classifyFailure(err: unknown): Failure {
  if (!(err instanceof ConnectError)) {
    return {
      kind: "no_verdict",
      reason: "internal",
      message: err instanceof Error ? err.message : String(err),
      code: Code.Internal,
    };
  }
  const info = errorInfo(err);
  const hasDetail = err.findDetails(ErrorDetailSchema).length > 0;
  if (info.code === Code.Unauthenticated)
    return { kind: "needs_login", reason: info.reason, message: info.message, code: info.code };
  if (!hasDetail) {
    if (info.code === Code.DeadlineExceeded)
      return { kind: "no_verdict", reason: "timeout", message: "no answer from the gateway in time", code: info.code };
    if (TRANSPORT_CODES.has(info.code))
      return { kind: "no_verdict", reason: "gateway_unreachable", message: err.rawMessage, code: info.code };
    return { kind: "verdict", reason: info.reason, message: err.rawMessage, code: info.code };
  }
  if (isRetryableReason(info.reason) || info.code === Code.Internal || info.code === Code.Unavailable) {
    return { kind: "no_verdict", reason: info.reason, message: info.message, code: info.code };
  }
  return { kind: "verdict", reason: info.reason, message: info.message, code: info.code };
}

export function createGatewayClient(options: GatewayClientOptions): MerchantGatewayClient {
  const log = options.logger;
  let token: string | undefined;
  let loggingIn: Promise<string> | undefined;

  const bearer: Interceptor = (next) => (req) => {
    if (token !== undefined && req.method.name !== "Login") req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const make = (m: TlsMaterial): Transport =>
    createConnectTransport({
      baseUrl: options.baseUrl,
      httpVersion: "2",
      // The design's choice for the shop: Connect JSON, readable on the wire and in curl.
      useBinaryFormat: false,
      defaultTimeoutMs: options.timeoutMs,
      interceptors: [...(options.interceptors ?? []), bearer],
      nodeOptions: { ca: m.ca, cert: m.cert, key: m.key },
      pingIntervalMs: 10_000,
      idleConnectionTimeoutMs: 60_000,
    });
  let transport = make(loadTls(options.tls));
  // Rotated certificates are used for new calls without a restart.
  const stopWatching = watchTls(
    options.tls,
    (m) => {
      transport = make(m);
      log.info({ cert: options.tls.certFile }, "gateway client certificates reloaded");
    },
    (e) => log.error({ err: String(e) }, "tls reload failed; keeping the previous certificates"),
  );
  const proxy: Transport = { unary: (...a) => transport.unary(...a), stream: (...a) => transport.stream(...a) };
  const auth = createClient(AuthService, proxy);
  const cards = createClient(CardService, proxy);
  const hooks = createClient(WebhookService, proxy);

  async function webhookCall<T>(method: string, call: () => Promise<T>): Promise<T> {
    const r = await withSession(method, call, "WebhookService");
    if (!r.ok) throw new WebhookAdminError(method, r.failure.reason, r.failure.message);
    return r.value;
  }

  const webhooks: WebhookAdmin = {
    async listEndpoints() {
      const r = await webhookCall("ListEndpoints", () => hooks.listEndpoints({}));
      return r.endpoints.map((e) => ({ endpointId: e.endpointId, url: e.url, eventTypes: [...e.eventTypes] }));
    },
    async createEndpoint(url, eventTypes) {
      const r = await webhookCall("CreateEndpoint", () => hooks.createEndpoint({ url, eventTypes: [...eventTypes] }));
      if (!r.endpoint || !r.secret)
        throw new WebhookAdminError(
          "CreateEndpoint",
          "internal",
          "the gateway answered without an endpoint or its secret",
        );
      return { endpointId: r.endpoint.endpointId, secret: r.secret };
    },
    async rollSecret(endpointId, overlapSeconds) {
      const r = await webhookCall("RollSecret", () =>
        hooks.rollSecret({ endpointId, overlapSeconds: BigInt(overlapSeconds) }),
      );
      if (!r.secret) throw new WebhookAdminError("RollSecret", "internal", "the gateway answered without a secret");
      return { secret: r.secret, previousExpiresAtMs: r.previousExpiresAt ? timestampMs(r.previousExpiresAt) : 0 };
    },
  };

  function login(): Promise<string> {
    loggingIn ??= auth
      .login({ username: options.username, password: options.password })
      .then((r) => {
        token = r.sessionToken;
        log.info({ username: options.username }, "logged in to the gateway as the merchant");
        return r.sessionToken;
      })
      .finally(() => {
        loggingIn = undefined;
      });
    return loggingIn;
  }

  /** Runs call with a session; on Unauthenticated logs in again and retries once. */
  async function withSession<T>(
    method: string,
    call: () => Promise<T>,
    service = "CardService",
  ): Promise<{ ok: true; value: T } | { ok: false; failure: Failure }> {
    const started = performance.now();
    const done = (code: string, reason?: string) =>
      log.info(
        {
          method: `paygate.gateway.v1.${service}/${method}`,
          code,
          reason,
          durationMs: Math.round(performance.now() - started),
        },
        "gateway call",
      );
    for (let attempt = 0; attempt < 2; attempt++) {
      if (token === undefined) {
        try {
          await login();
        } catch (e) {
          const f = classifyFailure(e);
          log.error(
            { reason: f.reason, message: f.message, username: options.username },
            "merchant login to the gateway failed",
          );
          done("login_failed", f.reason);
          // The shop's own credentials: the shopper's payment never reached the gateway.
          return {
            ok: false,
            failure: {
              kind: "no_verdict",
              reason: f.kind === "no_verdict" ? f.reason : "merchant_login_failed",
              message: f.message,
              code: f.code,
            },
          };
        }
      }
      try {
        const value = await call();
        done("ok");
        return { ok: true, value };
      } catch (e) {
        const f = classifyFailure(e);
        if (f.kind === "needs_login" && attempt === 0) {
          token = undefined;
          continue;
        }
        done(f.kind, f.reason);
        return {
          ok: false,
          failure: f.kind === "needs_login" ? { ...f, kind: "no_verdict", reason: "merchant_login_failed" } : f,
        };
      }
    }
    throw new Error("unreachable: the loop returns");
  }

  return {
    webhooks,
    close: stopWatching,
    async authorize(command): Promise<AuthorizeResult> {
      const r = await withSession("Authorize", () =>
        cards.authorize({
          idempotencyKey: command.idempotencyKey,
          card: {
            number: command.card.number,
            expMonth: command.card.expMonth,
            expYear: command.card.expYear,
            cvc: command.card.cvc,
            cardholderName: command.card.cardholderName,
          },
          amountMinor: command.amountMinor,
          currency: command.currency,
          merchantReference: command.merchantReference,
          merchantAccountId: command.merchantAccountId,
        }),
      );
      if (!r.ok)
        return {
          kind: r.failure.kind === "verdict" ? "declined" : "unavailable",
          reason: r.failure.reason,
          message: r.failure.message,
        };
      const a = r.value.authorization;
      if (!a || !/^[A-Z0-9]{6}$/.test(a.authCode)) {
        // An approval without a usable code cannot be settled: treat it as no verdict, resend later.
        return { kind: "unavailable", reason: "internal", message: "the gateway approved without an auth code" };
      }
      return {
        kind: "approved",
        authCode: a.authCode,
        cardLast4: a.cardLast4,
        expiresAtMs: a.expiresAt ? timestampMs(a.expiresAt) : null,
      };
    },
    async settleBatch(idempotencyKey, items): Promise<SettleResult> {
      const r = await withSession("SettleBatch", () =>
        cards.settleBatch({
          idempotencyKey,
          items: items.map((i) => ({ authCode: i.authCode, amountMinor: i.amountMinor })),
        }),
      );
      if (!r.ok)
        return {
          kind: r.failure.kind === "verdict" ? "rejected" : "unavailable",
          reason: r.failure.reason,
          message: r.failure.message,
        };
      return {
        kind: "settled",
        gatewayBatchId: r.value.batchId,
        items: r.value.results.map((x) => ({
          authCode: x.authCode,
          status: x.status === SettleItemStatus.CAPTURED ? "captured" : "failed",
          reason: x.reason,
          capturedMinor: x.capturedMinor,
          transactionId: x.transactionId,
        })),
      };
    },
  };
}
