// Who may call what: customers only their own accounts, admins the admin API,
// only the gateway's certificate the banks, nobody without a certificate from
// the paygate CA.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import http2 from "node:http2";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AdminService, AuthService, CoordinatorService, PaymentService, WebhookService } from "@paygate/proto/gateway";
import { LedgerService, ParticipantService } from "@paygate/proto/bank";
import { refused, rejectsWith, rogueCerts, Stack } from "@paygate/testkit";

describe("access control", () => {
  let stack: Stack;
  before(async () => {
    stack = await Stack.start({
      gatewayEnv: { SESSION_TTL_MS: "1500", LOGIN_FAILURES_MAX: "3", LOGIN_LOCKOUT_MS: "60000" },
    });
  });
  after(async () => stack?.close());

  test("a customer cannot read or debit another customer's account", async () => {
    const alice = stack.client(PaymentService, await stack.login("alice"));
    await rejectsWith(alice.getBalance({ accountId: "bank-b/2001" }), Code.PermissionDenied, "not_account_owner");
    await rejectsWith(
      alice.transfer({
        idempotencyKey: randomUUID(),
        fromAccountId: "bank-b/2001",
        toAccountId: "bank-a/1001",
        amountMinor: 100n,
        currency: "USD",
      }),
      Code.PermissionDenied,
      "not_account_owner",
    );
    const mine = await alice.getBalance({});
    assert.deepEqual(mine.accounts.map((a) => a.accountId).sort(), ["bank-a/1001", "bank-a/1003"]);
    // Bob's transaction is invisible to Alice.
    const bob = stack.client(PaymentService, await stack.login("bob"));
    const t = await bob.transfer({
      idempotencyKey: randomUUID(),
      fromAccountId: "bank-b/2001",
      toAccountId: "bank-b/2002",
      amountMinor: 5n,
      currency: "USD",
    });
    await rejectsWith(
      alice.getTransaction({ transactionId: t.transaction!.transactionId }),
      Code.NotFound,
      "transaction_not_found",
    );
    await stack.assertConserved();
  });

  test("the admin API needs the admin role", async () => {
    const alice = stack.client(AdminService, await stack.login("alice"));
    await rejectsWith(
      alice.deposit({ idempotencyKey: randomUUID(), accountId: "bank-a/1001", amountMinor: 100n, currency: "USD" }),
      Code.PermissionDenied,
      "permission_denied",
    );
    await rejectsWith(alice.reconcile({}), Code.PermissionDenied, "permission_denied");
  });

  test("webhook endpoints: customers and merchants only; with no allow-list (the default) no URL is accepted, not even the gateway's own", async () => {
    await rejectsWith(
      stack.client(WebhookService, await stack.login("admin")).listEndpoints({}),
      Code.PermissionDenied,
      "permission_denied",
    );
    await rejectsWith(stack.client(WebhookService).listEndpoints({}), Code.Unauthenticated, "unauthenticated");
    const shop = stack.client(WebhookService, await stack.login("shop"));
    for (const url of [
      "https://shop.example/hook",
      `${stack.gatewayUrl}/`,
      "https://127.0.0.1:8443/hook",
      "https://localhost/hook",
    ]) {
      await rejectsWith(
        shop.createEndpoint({ url, eventTypes: ["capture.succeeded"] }),
        Code.PermissionDenied,
        "webhook_host_not_allowed",
      );
    }
    await rejectsWith(
      shop.createEndpoint({ url: "http://shop.example/hook", eventTypes: ["capture.succeeded"] }),
      Code.InvalidArgument,
      "invalid_webhook_url",
    );
    assert.deepEqual((await shop.listEndpoints({})).endpoints, []);
    const alice = stack.client(WebhookService, await stack.login("alice"));
    assert.deepEqual((await alice.listEndpoints({})).endpoints, []);
  });

  test("only banks may ask the coordinator for decisions", async () => {
    const admin = stack.client(CoordinatorService, await stack.login("admin"));
    await rejectsWith(
      admin.getDecision({ txnId: `gateway-0:${randomUUID()}` }),
      Code.PermissionDenied,
      "peer_not_allowed",
    );
  });

  test("only the gateway's certificate may call a bank", async () => {
    const asPaycli = stack.bankClient(ParticipantService, "bank-a", "paycli");
    await rejectsWith(
      asPaycli.commit({ txnId: `gateway-0:${randomUUID()}` }),
      Code.PermissionDenied,
      "peer_not_allowed",
    );
    const ledgerAsAdmin = stack.bankClient(LedgerService, "bank-a", "admin");
    await rejectsWith(
      ledgerAsAdmin.deposit({ depositId: "x", accountId: "bank-a/1001", amountMinor: 1_000_000n, currency: "USD" }),
      Code.PermissionDenied,
      "peer_not_allowed",
    );
    // Another bank's certificate is not the gateway either.
    const asBankB = stack.bankClient(ParticipantService, "bank-a", "bank-b");
    await rejectsWith(asBankB.abort({ txnId: `gateway-0:${randomUUID()}` }), Code.PermissionDenied, "peer_not_allowed");
    await stack.assertConserved();
  });

  test("a client without a certificate, or with one from another CA, is refused by gateway and banks", async () => {
    const ca = readFileSync(join(stack.certs, "ca.crt"));
    const rogue = rogueCerts();
    for (const url of [stack.gatewayUrl, ...stack.bankUrls.values()]) {
      const noCert = createClient(
        AuthService,
        createConnectTransport({ baseUrl: url, httpVersion: "2", nodeOptions: { ca } }),
      );
      await refused(noCert.login({ username: "alice", password: "alice-test-password" }));
      const otherCa = createClient(
        AuthService,
        createConnectTransport({
          baseUrl: url,
          httpVersion: "2",
          nodeOptions: {
            ca,
            cert: readFileSync(join(rogue, "gateway.crt")),
            key: readFileSync(join(rogue, "gateway.key")),
          },
        }),
      );
      await refused(otherCa.login({ username: "alice", password: "alice-test-password" }));
    }
    // And the handshake itself fails (no handler ran): raw HTTP/2 with no certificate.
    await refused(
      new Promise((resolve, reject) => {
        const s = http2.connect(stack.gatewayUrl, { ca });
        s.on("error", reject);
        const r = s.request({
          ":path": "/paygate.gateway.v1.AuthService/Login",
          ":method": "POST",
          "content-type": "application/json",
        });
        r.on("error", reject);
        r.on("response", (h) => {
          s.close();
          resolve(h);
        });
        r.end("{}");
      }),
    );
  });

  test("repeated login failures lock the login, and sessions expire", async () => {
    const auth = stack.client(AuthService);
    for (let i = 0; i < 2; i++)
      await rejectsWith(
        auth.login({ username: "carol", password: "wrong" }),
        Code.Unauthenticated,
        "invalid_credentials",
      );
    // The failure that reaches LOGIN_FAILURES_MAX (3) locks this client out, and says so.
    await rejectsWith(auth.login({ username: "carol", password: "wrong" }), Code.ResourceExhausted, "login_locked");
    // Locked now, even with the right password.
    await rejectsWith(
      auth.login({ username: "carol", password: "carol-test-password" }),
      Code.ResourceExhausted,
      "login_locked",
    );
    // Unknown users get the same answer as wrong passwords.
    await rejectsWith(auth.login({ username: "mallory", password: "x" }), Code.Unauthenticated, "invalid_credentials");
    const token = await stack.login("bob");
    const bob = stack.client(PaymentService, token);
    await bob.getBalance({});
    await new Promise((r) => setTimeout(r, 2000));
    await rejectsWith(bob.getBalance({}), Code.Unauthenticated, "session_expired");
    // Logout revokes a session at once.
    const t2 = await stack.login("bob");
    await stack.client(AuthService, t2).logout({});
    await rejectsWith(stack.client(PaymentService, t2).getBalance({}), Code.Unauthenticated, "unauthenticated");
  });
});
