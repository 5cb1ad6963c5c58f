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
import { timestampFromMs, timestampNow } from "@bufbuild/protobuf/wkt";
import { AuthService, PaymentService, Role, TransactionSchema, TransactionStatus, type Transaction, type TransferRequest } from "@paygate/proto/gateway";
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

export async function runPaycli(argv: string[], env: Record<string, string>, overrides: Partial<RunOptions> = {}): Promise<CliRun> {
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
      stdin: { isTTY: false, on: () => undefined, off: () => undefined, resume: () => undefined, pause: () => undefined },
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
  close(): Promise<void>;
}

/**
 * Transfer answers by destination account:
 *   "bank-b/broke"   -> insufficient_funds (a decline; the decision is stored per key)
 *   "bank-b/busy"    -> idempotency_key_in_use on the first call per key, then commits
 *   "bank-b/expired" -> session_expired (Unauthenticated)
 *   anything else    -> commits
 * Like the real gateway, a key seen before gets its stored decision back.
 * Login accepts alice / "pw"; GetBalance and ListTransactions need her token.
 */
export async function startFakeGateway(certs: string, port: number): Promise<FakeGateway> {
  const calls: FakeGateway["calls"] = [];
  const applied: string[] = [];
  const decided = new Map<string, { request: TransferRequest; reason: Reason | null; txnId: string }>();
  const busySeen = new Set<string>();
  const transactions: Transaction[] = [];
  let seq = 0n;
  const requireToken = (header: Headers) => {
    if (header.get("authorization") !== "Bearer token-alice") throw rejection("unauthenticated", "no valid session");
  };
  const server = await startRpcServer({
    host: "127.0.0.1",
    port,
    tls: { caFile: join(certs, "ca.crt"), certFile: join(certs, "gateway.crt"), keyFile: join(certs, "gateway.key") },
    logger: createLogger("fake-gateway", "silent"),
    interceptors: [],
    routes: (router) =>
      router
        .service(AuthService, {
          login(req) {
            if (req.username !== "alice" || req.password !== "pw") throw rejection("invalid_credentials", "wrong username or password");
            return { sessionToken: "token-alice", userId: "alice", roles: [Role.CUSTOMER], expiresAt: timestampFromMs(Date.now() + 3_600_000) };
          },
          logout(_req, ctx) {
            requireToken(ctx.requestHeader);
            return {};
          },
        })
        .service(PaymentService, {
        getBalance(req, ctx) {
          requireToken(ctx.requestHeader);
          const all = [
            { accountId: "bank-a/1001", bank: "bank-a", ownerUserId: "alice", currency: "USD", balanceMinor: 100_000n, heldMinor: 2_500n, availableMinor: 97_500n },
            { accountId: "bank-a/1002", bank: "bank-a", ownerUserId: "alice", currency: "EUR", balanceMinor: 50_000n, heldMinor: 0n, availableMinor: 50_000n },
          ];
          const accounts = req.accountId === "" ? all : all.filter((a) => a.accountId === req.accountId);
          if (accounts.length === 0) throw rejection("account_not_found", `no account ${req.accountId}`);
          return { accounts };
        },
        async *listTransactions(req, ctx) {
          requireToken(ctx.requestHeader);
          for (const t of transactions) if (t.sequence > req.afterSequence) yield { transaction: t };
        },
        transfer(req, ctx) {
          calls.push({ key: req.idempotencyKey, to: req.toAccountId, authorization: ctx.requestHeader.get("authorization") });
          if (req.toAccountId === "bank-b/expired") throw rejection("session_expired", "session expired");
          let d = decided.get(req.idempotencyKey);
          if (d === undefined) {
            if (req.toAccountId === "bank-b/busy" && !busySeen.has(req.idempotencyKey)) {
              busySeen.add(req.idempotencyKey);
              throw rejection("idempotency_key_in_use", "request in progress, retry");
            }
            seq++;
            d = { request: req, reason: req.toAccountId === "bank-b/broke" ? "insufficient_funds" : null, txnId: `gateway-0:t${seq}` };
            decided.set(req.idempotencyKey, d);
            if (d.reason === null) applied.push(req.idempotencyKey);
          }
          if (d.reason !== null) throw rejection(d.reason, "available 0.00 USD", { transaction_id: d.txnId });
          const found = transactions.find((t) => t.transactionId === d.txnId);
          if (found !== undefined) return { transaction: found };
          const transaction = create(TransactionSchema, {
              transactionId: d.txnId,
              sequence: seq,
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
          transactions.push(transaction);
          return { transaction };
        },
      }),
  });
  return { server, calls, applied, transactions, close: () => server.close(100) };
}
