// TEST ONLY: a stand-in for the gateway's AuthService + CardService, served
// over the same mTLS server code as the real one, for checkout tests that
// must not depend on the real card path. Its answers are scripted by card
// number (FAKE_CARDS), it keeps Authorize and SettleBatch exactly once per
// idempotency key like the real gateway, and it records every call so tests
// can count what reached it.
import { randomUUID } from "node:crypto";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  AuthService,
  AuthorizationSchema,
  AuthorizationStatus,
  AuthorizeResponseSchema,
  CardService,
  SettleBatchResponseSchema,
  Role,
  SettleItemStatus,
  type AuthorizeRequest,
  type AuthorizeResponse,
  type SettleBatchRequest,
  type SettleBatchResponse,
} from "@paygate/proto/gateway";
import { createLogger, rejection, startRpcServer, type Reason, type RpcServer } from "@paygate/rpc";
import { tlsFilesFor } from "./certs.js";

/** Completes a number with its Luhn check digit. */
export function withLuhnDigit(prefix: string): string {
  let sum = 0;
  for (let i = 0; i < prefix.length; i++) {
    let d = prefix.charCodeAt(prefix.length - 1 - i) - 48;
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return prefix + String((10 - (sum % 10)) % 10);
}

/** Luhn-valid numbers and what the fake answers for each. */
export const FAKE_CARDS = {
  approved: "4242424242424242",
  invalid_number: withLuhnDigit("400000000000001"),
  expired_card: withLuhnDigit("400000000000002"),
  incorrect_cvc: withLuhnDigit("400000000000003"),
  insufficient_funds: withLuhnDigit("400000000000004"),
  risk_declined: withLuhnDigit("400000000000005"),
  spend_limit_exceeded: withLuhnDigit("400000000000006"),
  card_not_found: withLuhnDigit("400000000000007"),
  bureau_unavailable: withLuhnDigit("400000000000008"),
} as const;

export const FAKE_MERCHANT = {
  username: "shop",
  password: "shop-test-password",
  userId: "shop",
  accountId: "bank-b/2003",
} as const;

interface FakeAuthorization {
  readonly authCode: string;
  readonly amountMinor: bigint;
  readonly currency: string;
  readonly cardLast4: string;
  readonly merchantReference: string;
  status: "approved" | "captured" | "voided";
  capturedMinor: bigint;
}

type Stored<T> = { ok: true; value: T } | { ok: false; error: ConnectError };

export interface FakeCardGatewayOptions {
  readonly certs: string;
  /** Certificate the fake serves with (any paygate CA server cert works). */
  readonly certName?: string;
}

export class FakeCardGateway {
  readonly authorizeCalls: AuthorizeRequest[] = [];
  readonly settleCalls: SettleBatchRequest[] = [];
  readonly logins: string[] = [];
  readonly authorizations = new Map<string, FakeAuthorization>();
  private readonly tokens = new Set<string>();
  private readonly authorizeByKey = new Map<string, Stored<AuthorizeResponse>>();
  private readonly settleByKey = new Map<string, Stored<SettleBatchResponse>>();
  private held: Array<() => void> | undefined;
  /** While set, every CardService call fails with this (no detail = a network-like failure). */
  outage: ConnectError | undefined;
  private server!: RpcServer;
  url = "";

  private constructor() {}

  static async start(options: FakeCardGatewayOptions): Promise<FakeCardGateway> {
    const fake = new FakeCardGateway();
    fake.server = await startRpcServer({
      host: "127.0.0.1",
      port: 0,
      tls: tlsFilesFor(options.certs, options.certName ?? "gateway"),
      routes: (router) => fake.routes(router),
      interceptors: [],
      logger: createLogger("fake-gateway", "silent"),
    });
    fake.url = `https://127.0.0.1:${fake.server.port}`;
    return fake;
  }

  /** Authorize calls wait until the returned release() (to overlap two submissions deterministically). */
  holdAuthorizations(): () => void {
    this.held = [];
    return () => {
      const waiting = this.held ?? [];
      this.held = undefined;
      for (const w of waiting) w();
    };
  }

  /** How many Authorize calls are waiting on holdAuthorizations(). */
  get heldCount(): number {
    return this.held?.length ?? 0;
  }

  /** Invalidates every session: the next call gets Unauthenticated. */
  expireSessions(): void {
    this.tokens.clear();
  }

  void(authCode: string): void {
    const a = this.authorizations.get(authCode);
    if (a) a.status = "voided";
  }

  async close(): Promise<void> {
    this.held?.forEach((w) => w());
    await this.server.close(100);
  }

  private authenticate(header: Headers): void {
    const m = /^Bearer\s+(\S+)$/i.exec(header.get("authorization") ?? "");
    if (!m?.[1] || !this.tokens.has(m[1])) throw rejection("session_expired", "the session has expired; log in again");
  }

  private async remember<T>(map: Map<string, Stored<T>>, key: string, run: () => Promise<T>): Promise<T> {
    let stored = map.get(key);
    if (!stored) {
      try {
        stored = { ok: true, value: await run() };
      } catch (e) {
        if (!(e instanceof ConnectError)) throw e;
        stored = { ok: false, error: e };
      }
      // Transient answers are not kept: a retry with the same key tries again.
      if (stored.ok || stored.error.code !== Code.Unavailable) map.set(key, stored);
    }
    if (!stored.ok) throw stored.error;
    return stored.value;
  }

  private routes(router: ConnectRouter): void {
    router.service(AuthService, {
      login: (req) => {
        this.logins.push(req.username);
        if (req.username !== FAKE_MERCHANT.username || req.password !== FAKE_MERCHANT.password)
          throw rejection("invalid_credentials", "wrong username or password");
        const token = randomUUID();
        this.tokens.add(token);
        return {
          sessionToken: token,
          userId: FAKE_MERCHANT.userId,
          roles: [Role.MERCHANT],
          expiresAt: timestampFromMs(Date.now() + 3_600_000),
        };
      },
      logout: () => ({}),
    });
    router.service(CardService, {
      authorize: async (req, ctx) => {
        this.authenticate(ctx.requestHeader);
        this.authorizeCalls.push(req);
        if (this.outage) throw this.outage;
        if (this.held) await new Promise<void>((resolve) => this.held!.push(resolve));
        if (!req.idempotencyKey) throw rejection("idempotency_key_missing", "idempotency_key is required");
        return this.remember(this.authorizeByKey, req.idempotencyKey, async () => this.decide(req));
      },
      settleBatch: async (req, ctx) => {
        this.authenticate(ctx.requestHeader);
        this.settleCalls.push(req);
        if (this.outage) throw this.outage;
        return this.remember(this.settleByKey, req.idempotencyKey, async () => this.settle(req));
      },
      void: () => {
        throw new ConnectError("not in the fake", Code.Unimplemented);
      },
      refund: () => {
        throw new ConnectError("not in the fake", Code.Unimplemented);
      },
      getAuthorization: (req) => {
        const a = this.authorizations.get(req.authCode);
        if (!a) throw rejection("authorization_not_found", "no such authorization");
        return { authorization: this.message(a) };
      },
    });
  }

  private decide(req: AuthorizeRequest): AuthorizeResponse {
    const number = req.card?.number ?? "";
    if (req.merchantAccountId !== FAKE_MERCHANT.accountId)
      throw rejection("not_account_owner", "not the merchant's account");
    for (const [reason, card] of Object.entries(FAKE_CARDS)) {
      if (reason !== "approved" && card === number) throw rejection(reason as Reason, `declined: ${reason}`);
    }
    let authCode: string;
    do authCode = randomUUID().replace(/-/g, "").slice(0, 6).toUpperCase();
    while (this.authorizations.has(authCode));
    const a: FakeAuthorization = {
      authCode,
      amountMinor: req.amountMinor,
      currency: req.currency,
      cardLast4: number.slice(-4),
      merchantReference: req.merchantReference,
      status: "approved",
      capturedMinor: 0n,
    };
    this.authorizations.set(authCode, a);
    return create(AuthorizeResponseSchema, { authorization: this.message(a) });
  }

  private settle(req: SettleBatchRequest): SettleBatchResponse {
    const results = req.items.map((item) => {
      const a = this.authorizations.get(item.authCode);
      const fail = (reason: string) => ({
        authCode: item.authCode,
        status: SettleItemStatus.FAILED,
        reason,
        capturedMinor: 0n,
        transactionId: "",
      });
      if (!a) return fail("authorization_not_found");
      if (a.status === "voided") return fail("authorization_voided");
      if (a.status === "captured") return fail("already_captured");
      if (item.amountMinor > a.amountMinor) return fail("amount_exceeds_authorization");
      a.status = "captured";
      a.capturedMinor = item.amountMinor;
      return {
        authCode: item.authCode,
        status: SettleItemStatus.CAPTURED,
        reason: "",
        capturedMinor: item.amountMinor,
        transactionId: `gateway-0:${randomUUID()}`,
      };
    });
    return create(SettleBatchResponseSchema, { batchId: `batch-${randomUUID()}`, results });
  }

  private message(a: FakeAuthorization) {
    return create(AuthorizationSchema, {
      authCode: a.authCode,
      status:
        a.status === "approved"
          ? AuthorizationStatus.APPROVED
          : a.status === "captured"
            ? AuthorizationStatus.CAPTURED
            : AuthorizationStatus.VOIDED,
      cardLast4: a.cardLast4,
      amountMinor: a.amountMinor,
      capturedMinor: a.capturedMinor,
      currency: a.currency,
      merchantAccountId: FAKE_MERCHANT.accountId,
      merchantReference: a.merchantReference,
    });
  }
}
