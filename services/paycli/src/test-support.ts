// Shared by paycli's command tests: a temp PAYCLI_HOME with certificates from
// the script `make certs` uses, the CLI run in-process with captured output,
// and a small fake gateway (real Connect over real mTLS) whose answers the
// test scripts per destination account.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { timestampFromMs, timestampNow } from "@bufbuild/protobuf/wkt";
import {
  AuthService,
  PaymentService,
  Role,
  TransactionSchema,
  TransactionStatus,
  WebhookDeliveryStatus,
  WebhookEndpointStatus,
  WebhookService,
  type Transaction,
  type TransferRequest,
} from "@paygate/proto/gateway";
import { createLogger, rejection, startRpcServer, type Reason, type RpcServer } from "@paygate/rpc";
import type { RunOptions } from "./app.js";
import { runCli } from "./cli.js";
import { createSessionStore } from "./store/session-store.js";

export const repoRoot = resolve(fileURLToPath(new URL("../../..", import.meta.url)));

export interface TestHome {
  readonly dir: string;
  readonly home: string;
  readonly certs: string;
  env(gatewayPort: number, extra?: Record<string, string>): Record<string, string>;
  cleanup(): void;
}

export function makeTestHome(prefix = "paycli"): TestHome {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const certs = join(dir, "certs");
  execFileSync("bash", [join(repoRoot, "scripts/certs.sh"), certs], { stdio: "ignore" });
  const home = join(dir, "home");
  return {
    dir,
    home,
    certs,
    env: (gatewayPort, extra = {}) => ({
      PAYCLI_HOME: home,
      PAYGATE_URL: `https://127.0.0.1:${gatewayPort}`,
      PAYGATE_CA: join(certs, "ca.crt"),
      PAYGATE_CERT: join(certs, "paycli.crt"),
      PAYGATE_KEY: join(certs, "paycli.key"),
      PAYCLI_TIMEOUT_MS: "5000",
      ...extra,
    }),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A session as `paycli login alice` would leave it, without needing a gateway. */
export function writeSession(home: string, userId = "alice", token = `token-${userId}`): void {
  createSessionStore(join(home, "session.json")).save({
    gatewayUrl: "https://127.0.0.1:1",
    token,
    userId,
    username: userId,
    roles: ["customer"],
    expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
    accounts: [
      { accountId: "bank-a/1001", currency: "USD", bank: "bank-a" },
      { accountId: "bank-a/1002", currency: "EUR", bank: "bank-a" },
    ],
    accountsSeenAt: null,
  });
}

export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout parsed as the one JSON document --json promises. */
  json<T = Record<string, unknown>>(): T;
}

export async function runPaycli(
  argv: string[],
  env: Record<string, string>,
  overrides: Partial<RunOptions> = {},
): Promise<CliRun> {
  let stdout = "";
  let stderr = "";
  const code = await runCli({
    argv,
    env,
    cwd: process.cwd(),
    homeDir: tmpdir(),
    io: {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
      stdin: {
        isTTY: false,
        on: () => undefined,
        off: () => undefined,
        resume: () => undefined,
        pause: () => undefined,
      },
    },
    ...overrides,
  });
  return {
    code,
    stdout,
    stderr,
    json<T>() {
      try {
        return JSON.parse(stdout) as T;
      } catch {
        throw new Error(`stdout is not one JSON document (exit ${code}):\n${stdout}\nstderr:\n${stderr}`);
      }
    },
  };
}

/** A port nobody listens on (bound, then released). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

export interface FakeGateway {
  readonly server: RpcServer;
  /** Every Transfer call received, in order (replays included). */
  readonly calls: { key: string; to: string; authorization: string | null }[];
  /** Keys whose money "moved": each may appear once, whatever the replays. */
  readonly applied: string[];
  /** Committed transactions, as ListTransactions returns them. */
  readonly transactions: Transaction[];
  /** Register calls that created a user. */
  readonly registered: { username: string; password: string }[];
  /** RollSecret calls: the endpoint and the overlap asked for (undefined: the gateway's default). */
  readonly rolls: { endpointId: string; overlapSeconds: bigint | undefined }[];
  close(): Promise<void>;
}

/** The one account the fake gateway links (for alice), and what proves she holds it. */
export const LINKABLE = { accountId: "bank-a/1004", holder: "Dana Newcomer", code: "DANA-2026-BANK-A" } as const;

/** Destination accounts the fake gateway answers in a scripted way (well-formed ids: paycli checks them). */
export const SCRIPTED_ACCOUNTS = { broke: "bank-b/9001", busy: "bank-b/9002", expired: "bank-b/9003" } as const;

/**
 * Transfer answers by destination account (SCRIPTED_ACCOUNTS):
 *   broke      -> insufficient_funds (a decline; the decision is stored per key)
 *   busy       -> idempotency_key_in_use on the first call per key, then commits
 *   expired    -> session_expired (Unauthenticated)
 *   any other  -> commits
 * Like the real gateway, a key seen before gets its stored decision back.
 * Login accepts alice / "pw"; GetBalance and ListTransactions need her token.
 * Register refuses "alice" (taken) and short passwords; LinkBankAccount links LINKABLE only.
 * WebhookService: one endpoint (FAKE_ENDPOINT) with one failed delivery (FAKE_DELIVERY) and its two
 * attempts; CreateEndpoint admits https://hooks.example/ URLs only; unknown ids answer *_not_found.
 */
export const FAKE_ENDPOINT = "we_0123456789abcdef01234567";
export const FAKE_DELIVERY = "wd_0123456789abcdef01234567";

export async function startFakeGateway(certs: string, port: number): Promise<FakeGateway> {
  const state: FakeState = {
    calls: [],
    applied: [],
    decided: new Map(),
    busySeen: new Set(),
    transactions: [],
    registered: [],
    rolls: [],
    seq: 0n,
  };
  const server = await startRpcServer({
    host: "127.0.0.1",
    port,
    tls: { caFile: join(certs, "ca.crt"), certFile: join(certs, "gateway.crt"), keyFile: join(certs, "gateway.key") },
    logger: createLogger("fake-gateway", "silent"),
    interceptors: [],
    routes: (router) => {
      addFakeAuth(router, state);
      addFakeWebhooks(router, state);
      addFakePayments(router, state);
    },
  });
  const { calls, applied, transactions, registered, rolls } = state;
  return { server, calls, applied, transactions, registered, rolls, close: () => server.close(100) };
}

/** What the fake gateway has seen and decided, shared by its services. */
interface FakeState {
  readonly calls: FakeGateway["calls"];
  readonly applied: string[];
  readonly decided: Map<string, { request: TransferRequest; reason: Reason | null; txnId: string }>;
  readonly busySeen: Set<string>;
  readonly transactions: Transaction[];
  readonly registered: FakeGateway["registered"];
  readonly rolls: FakeGateway["rolls"];
  /** The last transaction sequence handed out. */
  seq: bigint;
}

function requireToken(header: Headers): void {
  if (header.get("authorization") !== "Bearer token-alice") throw rejection("unauthenticated", "no valid session");
}

/** Login (alice / "pw"), Logout, Register. */
function addFakeAuth(router: ConnectRouter, state: FakeState): void {
  router.service(AuthService, {
    login(req) {
      if (req.username !== "alice" || req.password !== "pw")
        throw rejection("invalid_credentials", "wrong username or password");
      return {
        sessionToken: "token-alice",
        userId: "alice",
        roles: [Role.CUSTOMER],
        expiresAt: timestampFromMs(Date.now() + 3_600_000),
      };
    },
    logout(_req, ctx) {
      requireToken(ctx.requestHeader);
      return {};
    },
    register(req) {
      if (req.username === "alice") throw rejection("username_taken", "username alice is taken", { field: "username" });
      if (req.password.length < 10)
        throw rejection("weak_password", "password must be at least 10 characters", { field: "password" });
      state.registered.push({ username: req.username, password: req.password });
      return {
        user: {
          userId: req.username,
          username: req.username,
          roles: [Role.CUSTOMER],
          displayName: req.displayName || req.username,
        },
      };
    },
  });
}

/** One endpoint with one failed delivery and its two attempts. */
function addFakeWebhooks(router: ConnectRouter, state: FakeState): void {
  const endpoint = {
    endpointId: FAKE_ENDPOINT,
    url: "https://hooks.example/in",
    eventTypes: ["capture.succeeded"],
    status: WebhookEndpointStatus.ENABLED,
    createdAt: timestampFromMs(1_767_225_600_000),
  };
  let deliveryStatus = WebhookDeliveryStatus.FAILED;
  const delivery = () => ({
    deliveryId: FAKE_DELIVERY,
    endpointId: FAKE_ENDPOINT,
    eventId: "evt_0123456789abcdef01234567",
    eventType: "capture.succeeded",
    objectId: "AB12CD",
    status: deliveryStatus,
    attempts: 2,
    lastStatusCode: 503,
    lastError: "HTTP 503: busy",
    createdAt: timestampFromMs(1_767_225_600_000),
  });
  const ownEndpoint = (id: string) => {
    if (id !== FAKE_ENDPOINT) throw rejection("endpoint_not_found", `no endpoint "${id}"`);
  };
  const ownDelivery = (id: string) => {
    if (id !== FAKE_DELIVERY) throw rejection("delivery_not_found", `no delivery "${id}"`);
  };
  router.service(WebhookService, {
    createEndpoint(req, ctx) {
      requireToken(ctx.requestHeader);
      if (!req.url.startsWith("https://hooks.example/"))
        throw rejection("webhook_host_not_allowed", "host is not in this gateway's allow-list of webhook hosts", {
          field: "url",
        });
      if (req.eventTypes.some((t) => !t.includes("."))) throw rejection("invalid_event_type", "unknown event type");
      return {
        endpoint: {
          ...endpoint,
          endpointId: "we_ffffffffffffffffffffffff",
          url: req.url,
          eventTypes: req.eventTypes,
        },
        secret: "whsec_fake-secret-shown-once",
      };
    },
    listEndpoints(_req, ctx) {
      requireToken(ctx.requestHeader);
      return { endpoints: [endpoint] };
    },
    deleteEndpoint(req, ctx) {
      requireToken(ctx.requestHeader);
      ownEndpoint(req.endpointId);
      return {};
    },
    rollSecret(req, ctx) {
      requireToken(ctx.requestHeader);
      ownEndpoint(req.endpointId);
      state.rolls.push({ endpointId: req.endpointId, overlapSeconds: req.overlapSeconds });
      return {
        secret: "whsec_rolled",
        previousExpiresAt: timestampFromMs(1_767_225_600_000 + Number(req.overlapSeconds ?? 86_400n) * 1000),
      };
    },
    listDeliveries(req, ctx) {
      requireToken(ctx.requestHeader);
      ownEndpoint(req.endpointId);
      return { deliveries: [delivery()], nextPageToken: "" };
    },
    getDelivery(req, ctx) {
      requireToken(ctx.requestHeader);
      ownDelivery(req.deliveryId);
      const attempt = (n: number) => ({
        attempt: n,
        at: timestampFromMs(1_767_225_600_000 + n * 10_000),
        statusCode: 503,
        latencyMs: 12n,
        error: "HTTP 503: busy",
      });
      return { delivery: delivery(), attempts: [attempt(1), attempt(2)] };
    },
    redeliver(req, ctx) {
      requireToken(ctx.requestHeader);
      ownDelivery(req.deliveryId);
      deliveryStatus = WebhookDeliveryStatus.PENDING;
      return { delivery: delivery() };
    },
  });
}

/** Balances, LinkBankAccount, ListTransactions and the scripted Transfer answers. */
function addFakePayments(router: ConnectRouter, state: FakeState): void {
  router.service(PaymentService, {
    getBalance(req, ctx) {
      requireToken(ctx.requestHeader);
      const all = [
        {
          accountId: "bank-a/1001",
          bank: "bank-a",
          ownerUserId: "alice",
          currency: "USD",
          balanceMinor: 100_000n,
          heldMinor: 2_500n,
          availableMinor: 97_500n,
        },
        {
          accountId: "bank-a/1002",
          bank: "bank-a",
          ownerUserId: "alice",
          currency: "EUR",
          balanceMinor: 50_000n,
          heldMinor: 0n,
          availableMinor: 50_000n,
        },
      ];
      const accounts = req.accountId === "" ? all : all.filter((a) => a.accountId === req.accountId);
      if (accounts.length === 0) throw rejection("account_not_found", `no account ${req.accountId}`);
      return { accounts };
    },
    linkBankAccount(req, ctx) {
      requireToken(ctx.requestHeader);
      const code = req.linkCode.replace(/[\s-]/g, "").toUpperCase();
      if (
        req.accountId !== LINKABLE.accountId ||
        req.holderName.toLowerCase() !== LINKABLE.holder.toLowerCase() ||
        code !== LINKABLE.code.replaceAll("-", "")
      ) {
        throw rejection("link_failed", "the account, the holder's name and the link code do not match");
      }
      return {
        account: {
          accountId: LINKABLE.accountId,
          bank: "bank-a",
          ownerUserId: "alice",
          currency: "USD",
          balanceMinor: 20_000n,
          heldMinor: 0n,
          availableMinor: 20_000n,
        },
      };
    },
    async *listTransactions(req, ctx) {
      requireToken(ctx.requestHeader);
      for (const t of state.transactions) if (t.sequence > req.afterSequence) yield { transaction: t };
    },
    transfer(req, ctx) {
      state.calls.push({
        key: req.idempotencyKey,
        to: req.toAccountId,
        authorization: ctx.requestHeader.get("authorization"),
      });
      if (req.toAccountId === SCRIPTED_ACCOUNTS.expired) throw rejection("session_expired", "session expired");
      let d = state.decided.get(req.idempotencyKey);
      if (d === undefined) {
        if (req.toAccountId === SCRIPTED_ACCOUNTS.busy && !state.busySeen.has(req.idempotencyKey)) {
          state.busySeen.add(req.idempotencyKey);
          throw rejection("idempotency_key_in_use", "request in progress, retry");
        }
        state.seq++;
        d = {
          request: req,
          reason: req.toAccountId === SCRIPTED_ACCOUNTS.broke ? "insufficient_funds" : null,
          txnId: `gateway-0:t${state.seq}`,
        };
        state.decided.set(req.idempotencyKey, d);
        if (d.reason === null) state.applied.push(req.idempotencyKey);
      }
      if (d.reason !== null) throw rejection(d.reason, "available 0.00 USD", { transaction_id: d.txnId });
      const found = state.transactions.find((t) => t.transactionId === d.txnId);
      if (found !== undefined) return { transaction: found };
      const transaction = create(TransactionSchema, {
        transactionId: d.txnId,
        sequence: state.seq,
        status: TransactionStatus.COMMITTED,
        fromAccountId: d.request.fromAccountId,
        toAccountId: d.request.toAccountId,
        amountMinor: d.request.amountMinor,
        currency: d.request.currency,
        memo: d.request.memo,
        idempotencyKey: d.request.idempotencyKey,
        createdAt: timestampNow(),
        decidedAt: timestampNow(),
      });
      state.transactions.push(transaction);
      return { transaction };
    },
  });
}
