// The security matrix: every RPC of every service (read from the generated
// service descriptors, so a new RPC is in the matrix the moment it is in a
// .proto) x every identity, against a real stack (gateway, two banks, credit
// bureau; real mTLS). The expected cell comes from the services' own access
// tables, which are in turn held to the written policy below: if the policy,
// the table or the behaviour disagree, this test fails.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { file_paygate_bank_v1_bank } from "@paygate/proto/bank";
import { file_paygate_bureau_v1_bureau } from "@paygate/proto/bureau";
import { ErrorDetailSchema } from "@paygate/proto/common";
import {
  AdminService,
  AuthService,
  file_paygate_gateway_v1_gateway,
  PaymentService,
  Role,
  WebhookService,
} from "@paygate/proto/gateway";
import {
  bankIdentity,
  clientIdentity,
  createMtlsTransport,
  errorInfo,
  GATEWAY_IDENTITY,
  type AccessRule,
  type AccessTable,
} from "@paygate/rpc";
import { rejectsWith, rogueCerts, Stack, tlsFilesFor } from "@paygate/testkit";
import { bankAccessTable } from "@paygate/bank/access";
import { bureauAccessTable } from "@paygate/credit-bureau/access";
import { gatewayAccessTable } from "@paygate/gateway/access";

type Outcome = "allowed" | "denied" | "refused";

/** Reasons only the access layer (interceptor, TLS) gives: anything else means the handler ran. */
const DENIAL_REASONS = new Set(["unauthenticated", "session_expired", "permission_denied", "peer_not_allowed"]);

type Session = "none" | "valid" | "expired" | "revoked";

interface Identity {
  readonly name: string;
  /** Client certificate file name, from the test CA (or the rogue CA). */
  readonly cert: string;
  readonly rogue?: boolean;
  /** What the certificate's URI SAN says. */
  readonly peer: string;
  readonly session: Session;
  readonly user?: string;
  readonly roles: readonly string[];
}

const IDENTITIES: readonly Identity[] = [
  { name: "no session", cert: "paycli", peer: clientIdentity("paycli"), session: "none", roles: [] },
  {
    name: "customer",
    cert: "paycli",
    peer: clientIdentity("paycli"),
    session: "valid",
    user: "alice",
    roles: ["customer"],
  },
  {
    name: "other customer",
    cert: "paycli",
    peer: clientIdentity("paycli"),
    session: "valid",
    user: "bob",
    roles: ["customer"],
  },
  {
    name: "merchant",
    cert: "checkout",
    peer: clientIdentity("checkout"),
    session: "valid",
    user: "shop",
    roles: ["merchant"],
  },
  { name: "admin", cert: "admin", peer: clientIdentity("admin"), session: "valid", user: "admin", roles: ["admin"] },
  {
    name: "wrong-CA certificate",
    cert: "paycli",
    rogue: true,
    peer: clientIdentity("paycli"),
    session: "valid",
    user: "alice",
    roles: ["customer"],
  },
  {
    name: "wrong-CA gateway certificate",
    cert: "gateway",
    rogue: true,
    peer: GATEWAY_IDENTITY,
    session: "none",
    roles: [],
  },
  {
    name: "expired token",
    cert: "paycli",
    peer: clientIdentity("paycli"),
    session: "expired",
    user: "carol",
    roles: ["customer"],
  },
  {
    name: "revoked token",
    cert: "paycli",
    peer: clientIdentity("paycli"),
    session: "revoked",
    user: "carol",
    roles: ["customer"],
  },
  { name: "bank certificate", cert: "bank-a", peer: bankIdentity("bank-a"), session: "none", roles: [] },
  {
    name: "bank certificate + admin session",
    cert: "bank-a",
    peer: bankIdentity("bank-a"),
    session: "valid",
    user: "admin",
    roles: ["admin"],
  },
  { name: "gateway certificate", cert: "gateway", peer: GATEWAY_IDENTITY, session: "none", roles: [] },
];

/**
 * The written policy (DESIGN.md §5), per service so a new method inherits its
 * service's rule. Login and Register (sign-up) are the only public methods.
 */
function policy(service: DescService, method: DescMethod, id: Identity): Outcome {
  if (id.rogue) return "refused";
  const signedIn = id.session === "valid";
  switch (service.typeName) {
    case "paygate.gateway.v1.AuthService":
      return method.name === "Login" || method.name === "Register" || signedIn ? "allowed" : "denied";
    case "paygate.gateway.v1.PaymentService":
      return signedIn ? "allowed" : "denied";
    case "paygate.gateway.v1.AdminService":
      return signedIn && id.roles.includes("admin") ? "allowed" : "denied";
    case "paygate.gateway.v1.CardService":
      return signedIn && id.roles.includes("merchant") ? "allowed" : "denied";
    case "paygate.gateway.v1.WebhookService":
      // A merchant's card payments, a paid customer's transfers; an admin has no events of its own.
      return signedIn && (id.roles.includes("merchant") || id.roles.includes("customer")) ? "allowed" : "denied";
    case "paygate.gateway.v1.CoordinatorService":
      return id.peer.startsWith("spiffe://paygate.local/bank/") ? "allowed" : "denied";
    case "paygate.bank.v1.ParticipantService":
    case "paygate.bank.v1.LedgerService":
    case "paygate.bank.v1.LinkService":
    case "paygate.bureau.v1.CreditBureauService":
      return id.peer === GATEWAY_IDENTITY ? "allowed" : "denied";
    default:
      throw new Error(`no written policy for ${service.typeName}: add it here and to DESIGN.md`);
  }
}

/** What the access table says. */
function fromTable(table: AccessTable, service: DescService, method: DescMethod, id: Identity): Outcome {
  if (id.rogue) return "refused";
  const rule: AccessRule | undefined = table[`${service.typeName}/${method.name}`];
  if (!rule) return "denied"; // fail closed
  switch (rule.kind) {
    case "public":
      return "allowed";
    case "peer":
      return rule.allow(id.peer) ? "allowed" : "denied";
    case "roles":
      return id.session === "valid" && id.roles.some((r) => rule.roles.includes(r)) ? "allowed" : "denied";
  }
}

interface Target {
  readonly server: string;
  readonly url: () => string;
  readonly table: AccessTable;
  readonly services: readonly DescService[];
}

describe("security matrix", () => {
  let stack: Stack;
  const tokens = new Map<string, string>();
  const expiredTokens: string[] = [];
  let revokedToken = "";
  const transports = new Map<string, Transport>();

  before(async () => {
    // hooks.invalid never resolves: endpoints can be registered, nothing is ever delivered.
    stack = await Stack.start({
      bureau: true,
      gatewayEnv: { LOGIN_FAILURES_MAX: "3", LOGIN_LOCKOUT_MS: "3000", WEBHOOK_ALLOWED_HOSTS: "hooks.invalid" },
    });
    // Expired tokens: log in while the gateway hands out 1 ms sessions, then
    // restart it with the normal lifetime (sessions are durable rows).
    await stack.gateway.restart({ SESSION_TTL_MS: "1" });
    for (let i = 0; i < 64; i++) expiredTokens.push(await stack.login("carol"));
    await stack.gateway.restart();
    for (const u of ["alice", "bob", "shop", "admin"]) tokens.set(u, await stack.login(u));
    revokedToken = await stack.login("carol");
    await stack.client(AuthService, revokedToken).logout({});
  });
  after(async () => stack?.close());

  function transport(url: string, id: Identity, token: string | undefined): Transport {
    const key = `${url}|${id.name}|${token ?? ""}`;
    let t = transports.get(key);
    if (!t) {
      const auth: Interceptor = (next) => (req) => {
        if (token) req.header.set("authorization", `Bearer ${token}`);
        return next(req);
      };
      const certs = id.rogue ? rogueCerts() : stack.certs;
      // The CA file is always ours: a rogue client still checks the server properly.
      const tls = { ...tlsFilesFor(certs, id.cert), caFile: tlsFilesFor(stack.certs, id.cert).caFile };
      t = createMtlsTransport({ baseUrl: url, tls, timeoutMs: 15_000, interceptors: [auth], reload: false });
      transports.set(key, t);
    }
    return t;
  }

  async function tokenFor(id: Identity, fresh: boolean): Promise<string | undefined> {
    switch (id.session) {
      case "none":
        return undefined;
      case "expired": {
        const t = expiredTokens.pop();
        assert.ok(t, "ran out of expired tokens: make more in before()");
        return t;
      }
      case "revoked":
        return revokedToken;
      case "valid":
        // Logout revokes the token it is called with: give it its own.
        return fresh ? stack.login(id.user!) : tokens.get(id.user!);
    }
  }

  async function call(client: Client<DescService>, method: DescMethod): Promise<void> {
    const fn = (client as unknown as Record<string, (req: object) => unknown>)[method.localName]!;
    switch (method.methodKind) {
      case "unary":
        await fn({});
        return;
      case "server_streaming":
        for await (const _ of fn({}) as AsyncIterable<unknown>) break;
        return;
      default:
        throw new Error(`the matrix does not drive ${method.methodKind} methods yet (${method.name})`);
    }
  }

  /** Runs one cell; returns what happened and a short description. */
  async function observe(
    target: Target,
    service: DescService,
    method: DescMethod,
    id: Identity,
  ): Promise<{ outcome: Outcome; detail: string }> {
    const token = await tokenFor(id, method.name === "Logout");
    const client = createClient(service, transport(target.url(), id, token));
    try {
      await call(client, method);
      return { outcome: "allowed", detail: "ok" };
    } catch (e) {
      const info = errorInfo(e);
      const detail = `${Code[info.code]}/${info.reason}`;
      // A handshake failure carries no server detail; its client-side code is not stable (STACK-NOTES).
      const serverSpoke = e instanceof ConnectError && e.findDetails(ErrorDetailSchema).length > 0;
      if (!serverSpoke && info.code !== Code.Internal) return { outcome: "refused", detail };
      if (info.code === Code.Internal) return { outcome: "allowed", detail: `${detail} (INTERNAL: ${info.message})` };
      return { outcome: DENIAL_REASONS.has(info.reason) ? "denied" : "allowed", detail };
    }
  }

  test("every RPC x every identity: behaviour = access table = written policy", async (t) => {
    const targets: Target[] = [
      {
        server: "gateway",
        url: () => stack.gatewayUrl,
        table: gatewayAccessTable,
        services: file_paygate_gateway_v1_gateway.services,
      },
      {
        server: "bank-a",
        url: () => stack.bankUrls.get("bank-a")!,
        table: bankAccessTable,
        services: file_paygate_bank_v1_bank.services,
      },
      {
        server: "credit-bureau",
        url: () => stack.bureauUrl,
        table: bureauAccessTable,
        services: file_paygate_bureau_v1_bureau.services,
      },
    ];
    const problems: string[] = [];
    const rows: string[] = [];
    let cells = 0;
    for (const target of targets) {
      for (const service of target.services) {
        for (const method of service.methods) {
          const marks: string[] = [];
          for (const id of IDENTITIES) {
            const want = policy(service, method, id);
            const table = fromTable(target.table, service, method, id);
            const got = await observe(target, service, method, id);
            cells++;
            const where = `${target.server} ${service.name}/${method.name} as ${id.name}`;
            if (table !== want) problems.push(`${where}: the access table says ${table}, the policy says ${want}`);
            if (got.outcome !== table)
              problems.push(`${where}: ${got.outcome} (${got.detail}), the access table says ${table}`);
            if (got.detail.includes("INTERNAL"))
              problems.push(`${where}: Internal for a request the handler should reject cleanly: ${got.detail}`);
            marks.push(got.outcome === "allowed" ? "A" : got.outcome === "denied" ? "-" : "x");
          }
          rows.push(`${marks.join(" ")}  ${target.server} ${service.name}/${method.name}`);
        }
      }
    }
    t.diagnostic(
      `matrix: ${cells} cells (${cells / IDENTITIES.length} RPCs x ${IDENTITIES.length} identities); A allowed, - denied, x refused at TLS`,
    );
    t.diagnostic(`columns: ${IDENTITIES.map((i, n) => `${n + 1}=${i.name}`).join(", ")}`);
    for (const r of rows) t.diagnostic(r);
    assert.deepEqual(problems, []);
    // Every method the gateway serves has a rule (fail-closed is the fallback, not the plan).
    for (const target of targets) {
      for (const s of target.services)
        for (const m of s.methods)
          assert.ok(
            target.table[`${s.typeName}/${m.name}`],
            `${target.server}: ${s.typeName}/${m.name} has no access rule`,
          );
    }
    await stack.assertConserved();
  });

  test("what a stranger learns from linking: a wrong code, a wrong name, an unknown account, another's account and an unknown bank answer exactly alike", async () => {
    const stranger = stack.client(PaymentService, tokens.get("bob"));
    const tries = [
      { accountId: "bank-a/1004", holderName: "Dana Newcomer", linkCode: "WRONG-CODE-0001" }, // a real, unlinked account; a wrong code
      { accountId: "bank-a/1004", holderName: "Someone Else", linkCode: "DANA-TEST-LINK-A" }, // the right code, a wrong name
      { accountId: "bank-a/9999", holderName: "Dana Newcomer", linkCode: "DANA-TEST-LINK-A" }, // no such account
      { accountId: "bank-a/1001", holderName: "Alice", linkCode: "DANA-TEST-LINK-A" }, // alice's
      { accountId: "bank-z/1004", holderName: "Dana Newcomer", linkCode: "DANA-TEST-LINK-A" }, // no such bank
    ];
    const answers = [];
    for (const req of tries)
      answers.push(await rejectsWith(stranger.linkBankAccount(req), Code.FailedPrecondition, "link_failed"));
    for (const a of answers)
      assert.deepEqual(a, answers[0], "every refusal reads the same: code, reason, message, metadata");
    assert.deepEqual(answers[0]!.metadata, {});
    // The failures made it nobody's, and its holder still links it.
    const carol = stack.client(PaymentService, await stack.login("carol"));
    assert.equal(
      (
        await carol.linkBankAccount({
          accountId: "bank-a/1004",
          holderName: "Dana Newcomer",
          linkCode: "DANA-TEST-LINK-A",
        })
      ).account?.ownerUserId,
      "carol",
    );
    await rejectsWith(stranger.getBalance({ accountId: "bank-a/1004" }), Code.PermissionDenied, "not_account_owner");
  });

  test("an expired session says session_expired once, then it is gone", async () => {
    const t = expiredTokens.pop()!;
    const client = stack.client(PaymentService, t);
    await rejectsWith(client.getBalance({}), Code.Unauthenticated, "session_expired");
    await rejectsWith(client.getBalance({}), Code.Unauthenticated, "unauthenticated");
  });

  test("handlers check ownership: another customer sees and moves nothing of alice's", async () => {
    const alice = stack.client(PaymentService, tokens.get("alice"));
    const bob = stack.client(PaymentService, tokens.get("bob"));
    const txn = (
      await alice.transfer({
        idempotencyKey: randomUUID(),
        fromAccountId: "bank-a/1001",
        toAccountId: "bank-b/2002",
        amountMinor: 7n,
        currency: "USD",
      })
    ).transaction!;
    const before = await alice.getBalance({ accountId: "bank-a/1001" });
    await rejectsWith(bob.getBalance({ accountId: "bank-a/1001" }), Code.PermissionDenied, "not_account_owner");
    await rejectsWith(
      bob.transfer({
        idempotencyKey: randomUUID(),
        fromAccountId: "bank-a/1001",
        toAccountId: "bank-b/2001",
        amountMinor: 1n,
        currency: "USD",
      }),
      Code.PermissionDenied,
      "not_account_owner",
    );
    await rejectsWith(bob.getTransaction({ transactionId: txn.transactionId }), Code.NotFound, "transaction_not_found");
    const seen: string[] = [];
    for await (const r of bob.listTransactions({})) seen.push(r.transaction!.transactionId);
    assert.ok(!seen.includes(txn.transactionId), "bob's history shows alice's transfer");
    // A merchant and an admin are not alice either.
    await rejectsWith(
      stack.client(PaymentService, tokens.get("shop")).getBalance({ accountId: "bank-a/1001" }),
      Code.PermissionDenied,
      "not_account_owner",
    );
    assert.deepEqual(await alice.getBalance({ accountId: "bank-a/1001" }), before);
    await stack.assertConserved();
  });

  test("webhooks: another user's endpoint or delivery answers exactly like an unknown one, and is left untouched", async () => {
    const alice = stack.client(WebhookService, tokens.get("alice"));
    const bob = stack.client(WebhookService, tokens.get("bob"));
    const { endpoint } = await alice.createEndpoint({
      url: "https://hooks.invalid/alice",
      eventTypes: ["transfer.committed"],
    });
    const id = endpoint!.endpointId;
    const unknown = "we_ffffffffffffffffffffffff";
    const same = (
      theirs: { message: string; metadata: Record<string, string> },
      none: { message: string; metadata: Record<string, string> },
    ) =>
      assert.deepEqual(
        JSON.parse(JSON.stringify(theirs).replaceAll(id, "ID")),
        JSON.parse(JSON.stringify(none).replaceAll(unknown, "ID")),
      );
    for (const call of [
      (endpointId: string) => bob.deleteEndpoint({ endpointId }),
      (endpointId: string) => bob.rollSecret({ endpointId }),
      (endpointId: string) => bob.listDeliveries({ endpointId }),
    ]) {
      same(
        await rejectsWith(call(id), Code.NotFound, "endpoint_not_found"),
        await rejectsWith(call(unknown), Code.NotFound, "endpoint_not_found"),
      );
    }
    assert.deepEqual((await bob.listEndpoints({})).endpoints, []);
    assert.deepEqual(
      (await alice.listEndpoints({})).endpoints.map((e) => e.endpointId),
      [id],
      "alice's endpoint is still there",
    );
    await rejectsWith(
      bob.getDelivery({ deliveryId: "wd_ffffffffffffffffffffffff" }),
      Code.NotFound,
      "delivery_not_found",
    );
    await rejectsWith(
      alice.createEndpoint({ url: "https://hooks.example/", eventTypes: ["transfer.committed"] }),
      Code.PermissionDenied,
      "webhook_host_not_allowed",
    );
    await rejectsWith(
      alice.createEndpoint({ url: `${stack.gatewayUrl}/`, eventTypes: ["transfer.committed"] }),
      Code.PermissionDenied,
      "webhook_host_not_allowed",
    );
    await alice.deleteEndpoint({ endpointId: id });
  });

  test("login lockout: repeated failures lock one user (even with the right password), others are unaffected, the lock expires", async () => {
    const admin = stack.client(AdminService, tokens.get("admin"));
    const username = `victim-${randomUUID().slice(0, 8)}`;
    const password = "correct horse battery staple";
    await admin.createUser({ username, password, roles: [Role.CUSTOMER], displayName: "Victim" });
    const auth = stack.client(AuthService);
    for (let i = 0; i < 2; i++)
      await rejectsWith(auth.login({ username, password: `wrong-${i}` }), Code.Unauthenticated, "invalid_credentials");
    // The failure that reaches LOGIN_FAILURES_MAX (3) already answers with the lock; then even the right password is locked out.
    await rejectsWith(auth.login({ username, password: "wrong-2" }), Code.ResourceExhausted, "login_locked");
    const locked = await rejectsWith(auth.login({ username, password }), Code.ResourceExhausted, "login_locked");
    assert.ok(Number(locked.metadata.retry_after_ms) > 0, "the lock says when to retry");
    // Another user logs in normally; an unknown user gets the same answer as a wrong password.
    assert.ok((await auth.login({ username: "bob", password: "bob-test-password" })).sessionToken);
    await rejectsWith(
      auth.login({ username: `nobody-${randomUUID().slice(0, 8)}`, password }),
      Code.Unauthenticated,
      "invalid_credentials",
    );
    // The lock is LOGIN_LOCKOUT_MS (3 s here); wait it out.
    await new Promise((r) => setTimeout(r, 3500));
    const s = await auth.login({ username, password });
    assert.ok(s.sessionToken.length > 20);
  });
});
