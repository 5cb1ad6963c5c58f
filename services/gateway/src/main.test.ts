// Service test: the real gateway process (main.ts) over mTLS against two small
// in-process fake banks. The lead's e2e suite runs the real banks; this one
// checks the wiring: access rules, routes, streaming, recovery after a crash.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { Code, ConnectError, createClient, type ConnectRouter } from "@connectrpc/connect";
import { LedgerService, LegDirection, ParticipantService, Vote, type PrepareRequest } from "@paygate/proto/bank";
import {
  AdminService,
  AuthService,
  CoordinatorService,
  Decision,
  PaymentService,
  Role,
  TransactionStatus,
} from "@paygate/proto/gateway";
import { createLogger, createMtlsTransport, errorInfo, rejection, startRpcServer, type RpcServer } from "@paygate/rpc";
import { parseSeed } from "@paygate/seed";

// A hang guard, not a timing goal: a broken test fails instead of blocking the suite.
const TEST_TIMEOUT_MS = 60_000;
const ROOT = resolve(import.meta.dirname, "../../..");
const SEED_FILE = join(ROOT, "config/seed.yaml");
const tmp = mkdtempSync(join(tmpdir(), "gateway-service-"));
const certs = join(tmp, "certs");
const tlsOf = (name: string) => ({
  caFile: join(certs, "ca.crt"),
  certFile: join(certs, `${name}.crt`),
  keyFile: join(certs, `${name}.key`),
});

interface FakeAccount {
  owner: string;
  currency: string;
  balance: bigint;
  held: bigint;
  deposited: bigint;
}

/** Just enough of a bank: holds on prepare, apply on commit, idempotent commit/abort. */
function fakeBank(name: string) {
  const accounts = new Map<string, FakeAccount>();
  for (const a of parseSeed(readFileSync(SEED_FILE, "utf8")).accounts) {
    if (a.bank === name)
      accounts.set(a.id, {
        owner: a.owner,
        currency: a.currency,
        balance: a.openingMinor,
        held: 0n,
        deposited: a.openingMinor,
      });
  }
  const prepared = new Map<
    string,
    { legs: { accountId: string; direction: LegDirection; amountMinor: bigint }[]; at: number }
  >();
  const decided = new Map<string, "COMMIT" | "ABORT">();
  let nextNumber = 9000;
  const view = (id: string) => {
    const a = accounts.get(id);
    if (!a) throw rejection("account_not_found", id);
    return {
      accountId: id,
      ownerUserId: a.owner,
      currency: a.currency,
      balanceMinor: a.balance,
      heldMinor: a.held,
      availableMinor: a.balance - a.held,
    };
  };
  const routes = (router: ConnectRouter) => {
    const participant = {
      prepare(req: PrepareRequest) {
        if (decided.has(req.txnId)) return { vote: Vote.NO, reason: "txn_aborted" };
        if (prepared.has(req.txnId)) return { vote: Vote.YES };
        for (const l of req.legs) {
          const a = accounts.get(l.accountId);
          if (!a) return { vote: Vote.NO, reason: "account_not_found" };
          if (l.direction === LegDirection.DEBIT && l.ownerUserId && l.ownerUserId !== a.owner)
            return { vote: Vote.NO, reason: "not_account_owner" };
          if (l.direction === LegDirection.DEBIT && a.balance - a.held < l.amountMinor)
            return { vote: Vote.NO, reason: "insufficient_funds" };
        }
        for (const l of req.legs)
          if (l.direction === LegDirection.DEBIT) accounts.get(l.accountId)!.held += l.amountMinor;
        prepared.set(req.txnId, {
          legs: req.legs.map((l) => ({ accountId: l.accountId, direction: l.direction, amountMinor: l.amountMinor })),
          at: Date.now(),
        });
        return { vote: Vote.YES };
      },
      commit(req: { txnId: string }) {
        if (decided.get(req.txnId) === "COMMIT") return {};
        const p = prepared.get(req.txnId);
        if (!p) throw rejection("unknown_txn", req.txnId);
        for (const l of p.legs) {
          const a = accounts.get(l.accountId)!;
          if (l.direction === LegDirection.DEBIT) {
            a.held -= l.amountMinor;
            a.balance -= l.amountMinor;
          } else a.balance += l.amountMinor;
        }
        prepared.delete(req.txnId);
        decided.set(req.txnId, "COMMIT");
        return {};
      },
      abort(req: { txnId: string }) {
        const p = prepared.get(req.txnId);
        for (const l of p?.legs ?? [])
          if (l.direction === LegDirection.DEBIT) accounts.get(l.accountId)!.held -= l.amountMinor;
        prepared.delete(req.txnId);
        if (!decided.has(req.txnId)) decided.set(req.txnId, "ABORT");
        return {};
      },
    };
    /** Commits that ride along a PrepareBatch are applied first, each answered on its own (DESIGN.md §3.3). */
    const commitResult = (txnId: string) => {
      try {
        participant.commit({ txnId });
        return {};
      } catch (e) {
        return { error: { reason: "unknown_txn", message: String(e) } };
      }
    };
    router.service(ParticipantService, {
      ...participant,
      prepareBatch(req) {
        const commitResults = req.commitTxnIds.map(commitResult);
        return {
          results: req.items.map((i) => ({ outcome: { case: "response" as const, value: participant.prepare(i) } })),
          commitResults,
        };
      },
      commitBatch: (req) => ({ results: req.txnIds.map(commitResult) }),
    });
    router.service(LedgerService, {
      getAccount: (req) => ({ account: view(req.accountId) }),
      openAccount(req) {
        const id = `${name}/${nextNumber++}`;
        accounts.set(id, { owner: req.ownerUserId, currency: req.currency, balance: 0n, held: 0n, deposited: 0n });
        return { account: view(id) };
      },
      deposit(req) {
        const a = accounts.get(req.accountId);
        if (!a) throw rejection("account_not_found", req.accountId);
        a.balance += req.amountMinor;
        a.deposited += req.amountMinor;
        return { account: view(req.accountId) };
      },
      totals() {
        const sums = new Map<string, { balance: bigint; held: bigint; deposited: bigint }>();
        for (const a of accounts.values()) {
          const s = sums.get(a.currency) ?? { balance: 0n, held: 0n, deposited: 0n };
          sums.set(a.currency, {
            balance: s.balance + a.balance,
            held: s.held + a.held,
            deposited: s.deposited + a.deposited,
          });
        }
        return {
          bank: name,
          currencies: [...sums].map(([currency, s]) => ({
            currency,
            balanceMinor: s.balance,
            heldMinor: s.held,
            depositedMinor: s.deposited,
          })),
          prepared: [...prepared.keys()].map((txnId) => ({ txnId })),
          ledgerConsistent: true,
        };
      },
      async *listEntries() {},
    });
  };
  return { routes, accounts, prepared };
}

const banks = { "bank-a": fakeBank("bank-a"), "bank-b": fakeBank("bank-b") };
const bankServers: RpcServer[] = [];
type Line = Record<string, unknown>;
interface Gateway {
  proc: ChildProcess;
  port: number;
  lines: Line[];
  /** Resolves with the first log line (seen or coming) that matches. */
  waitForLine(match: (l: Line) => boolean): Promise<Line>;
}
let gateway: Gateway | undefined;

async function startGateway(extraEnv: Record<string, string> = {}): Promise<Gateway> {
  const env = {
    PATH: process.env.PATH ?? "",
    GATEWAY_PORT: "0",
    METRICS_PORT: "0",
    GATEWAY_DATA_DIR: join(tmp, "data"),
    SEED_FILE,
    BANKS: `bank-a=https://127.0.0.1:${bankServers[0]?.port},bank-b=https://127.0.0.1:${bankServers[1]?.port}`,
    TLS_CA_FILE: tlsOf("gateway").caFile,
    TLS_CERT_FILE: tlsOf("gateway").certFile,
    TLS_KEY_FILE: tlsOf("gateway").keyFile,
    PREPARE_TIMEOUT_MS: "3000",
    REDRIVE_INTERVAL_MS: "100",
    LOG_LEVEL: "info",
    ...extraEnv,
  };
  const proc = spawn(process.execPath, ["--import", "tsx", join(ROOT, "services/gateway/src/main.ts")], {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  // If this test process dies early (a timeout), the gateway must not outlive it.
  process.once("exit", () => proc.kill("SIGKILL"));
  const lines: Line[] = [];
  const waiters: { match: (l: Line) => boolean; resolve: (l: Line) => void }[] = [];
  let stderr = "";
  proc.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const port = await new Promise<number>((resolvePort, reject) => {
    createInterface({ input: proc.stdout! }).on("line", (line) => {
      const j = JSON.parse(line) as Line;
      lines.push(j);
      for (const w of waiters.filter((x) => x.match(j))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(j);
      }
      if (j.msg === "listening") resolvePort(j.port as number);
    });
    proc.once("exit", (code) => reject(new Error(`gateway exited with ${code}: ${stderr}`)));
  });
  const waitForLine = (match: (l: Line) => boolean) =>
    new Promise<Line>((resolveLine) => {
      const seen = lines.find(match);
      if (seen) resolveLine(seen);
      else waiters.push({ match, resolve: resolveLine });
    });
  return { proc, port, lines, waitForLine };
}

function exited(proc: ChildProcess): Promise<number | null> {
  return proc.exitCode !== null || proc.signalCode !== null
    ? Promise.resolve(proc.exitCode)
    : new Promise((r) => proc.once("exit", (code) => r(code)));
}

function clients(port: number, certName = "paycli") {
  const transport = createMtlsTransport({ baseUrl: `https://127.0.0.1:${port}`, tls: tlsOf(certName), reload: false });
  return {
    auth: createClient(AuthService, transport),
    pay: createClient(PaymentService, transport),
    admin: createClient(AdminService, transport),
    coord: createClient(CoordinatorService, transport),
  };
}

async function reasonOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ConnectError, String(e));
    return errorInfo(e).reason;
  }
  return "ok";
}

/** Polls a condition that follows an RPC's effects asynchronously (a hang guard, not a timing goal). */
async function eventually(what: string, cond: () => boolean, attemptsMax = 500): Promise<void> {
  for (let i = 0; i < attemptsMax && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), `gave up waiting for ${what}`);
}

async function login(port: number, username: string, password: string): Promise<{ authorization: string }> {
  const r = await clients(port).auth.login({ username, password });
  return { authorization: `Bearer ${r.sessionToken}` };
}

before(async () => {
  // bank-c: a bank's certificate that takes part in none of the test's transfers.
  execFileSync(join(ROOT, "scripts/certs.sh"), [certs, "bank-c"], { stdio: "ignore" });
  const logger = createLogger("fake-bank", "silent");
  for (const name of ["bank-a", "bank-b"] as const) {
    bankServers.push(
      await startRpcServer({
        host: "127.0.0.1",
        port: 0,
        tls: tlsOf(name),
        routes: banks[name].routes,
        interceptors: [],
        logger,
      }),
    );
  }
  gateway = await startGateway();
});

after(async () => {
  gateway?.proc.kill("SIGKILL");
  for (const s of bankServers) await s.close(100);
  rmSync(tmp, { recursive: true, force: true });
});

test("login, transfer, balance, history and replay over mTLS", { timeout: TEST_TIMEOUT_MS }, async () => {
  const port = gateway!.port;
  const c = clients(port);
  assert.equal(await reasonOf(c.auth.login({ username: "alice", password: "nope-nope-nope" })), "invalid_credentials");
  const session = await c.auth.login({ username: "alice", password: "alice-demo-2026" });
  assert.deepEqual(session.roles, [Role.CUSTOMER]);
  const headers = { authorization: `Bearer ${session.sessionToken}` };

  assert.equal(await reasonOf(c.pay.getBalance({})), "unauthenticated");
  const transfer = {
    idempotencyKey: "svc-1",
    fromAccountId: "bank-a/1001",
    toAccountId: "bank-b/2001",
    amountMinor: 2500n,
    currency: "USD",
    memo: "hi",
  };
  const res = await c.pay.transfer(transfer, { headers });
  assert.equal(res.transaction?.status, TransactionStatus.COMMITTED);
  // The reply may leave once COMMIT is durable, before both Commits are acknowledged.
  await eventually(
    "both Commits applied",
    () =>
      banks["bank-a"].accounts.get("bank-a/1001")?.balance === 97_500n &&
      banks["bank-b"].accounts.get("bank-b/2001")?.balance === 52_500n,
  );

  // The same request again.
  const replay = await c.pay.transfer(transfer, { headers });
  assert.equal(replay.transaction?.transactionId, res.transaction?.transactionId);
  assert.equal(banks["bank-a"].accounts.get("bank-a/1001")?.balance, 97_500n, "a replay moves no money");
  // The log line is written as the reply leaves: wait for it to come through the pipe.
  const line = await gateway!.waitForLine(
    (l) => l.method === "paygate.gateway.v1.PaymentService/Transfer" && l.retry === true,
  );
  assert.equal(line.transactionId, res.transaction?.transactionId);
  assert.equal(line.idempotencyKey, "svc-1");
  assert.equal(line.code, "ok");
  assert.ok(
    gateway!.lines.every(
      (l) => !JSON.stringify(l).includes("alice-demo-2026") && !JSON.stringify(l).includes(session.sessionToken),
    ),
    "no secrets in logs",
  );

  const declined = c.pay.transfer(
    {
      idempotencyKey: "svc-2",
      fromAccountId: "bank-a/1001",
      toAccountId: "bank-b/2001",
      amountMinor: 10_000_000n,
      currency: "USD",
      memo: "",
    },
    { headers },
  );
  assert.equal(await reasonOf(declined), "insufficient_funds");
  assert.equal(banks["bank-a"].accounts.get("bank-a/1001")?.held, 0n, "the hold was released");

  const balances = await c.pay.getBalance({}, { headers });
  assert.deepEqual(
    balances.accounts.map((a) => [a.accountId, a.balanceMinor]),
    [
      ["bank-a/1001", 97_500n],
      ["bank-a/1002", 50_000n],
    ],
  );
  assert.equal(await reasonOf(c.pay.getBalance({ accountId: "bank-b/2001" }, { headers })), "not_account_owner");

  const bob = await login(port, "bob", "bob-demo-2026");
  assert.equal(
    await reasonOf(c.pay.getTransaction({ transactionId: res.transaction?.transactionId ?? "" }, { headers: bob })),
    "ok",
    "the recipient sees it",
  );
  const shop = await login(port, "shop", "shop-demo-2026");
  assert.equal(
    await reasonOf(c.pay.getTransaction({ transactionId: res.transaction?.transactionId ?? "" }, { headers: shop })),
    "transaction_not_found",
  );

  const history: bigint[] = [];
  for await (const m of c.pay.listTransactions({}, { headers })) history.push(m.transaction?.sequence ?? -1n);
  assert.deepEqual(history, [1n, 2n]);
});

test("a follower gets newly decided transactions and stops when it cancels", { timeout: TEST_TIMEOUT_MS }, async () => {
  const c = clients(gateway!.port);
  const bob = await login(gateway!.port, "bob", "bob-demo-2026");
  const alice = await login(gateway!.port, "alice", "alice-demo-2026");
  let last = 0n;
  for await (const m of c.pay.listTransactions({}, { headers: bob })) last = m.transaction?.sequence ?? last;
  const controller = new AbortController();
  const seen: string[] = [];
  const following = (async () => {
    try {
      for await (const m of c.pay.listTransactions(
        { afterSequence: last, follow: true },
        { headers: bob, signal: controller.signal },
      )) {
        seen.push(m.transaction?.memo ?? "");
        if (seen.length === 2) controller.abort();
      }
    } catch (e) {
      assert.equal(ConnectError.from(e).code, Code.Canceled);
    }
  })();
  for (const memo of ["one", "two"]) {
    await c.pay.transfer(
      {
        idempotencyKey: `follow-${memo}`,
        fromAccountId: "bank-a/1001",
        toAccountId: "bank-b/2001",
        amountMinor: 1n,
        currency: "USD",
        memo,
      },
      { headers: alice },
    );
  }
  await following;
  assert.deepEqual(seen, ["one", "two"]);
});

test("access rules: admins only for AdminService, bank certificates only for GetDecision", {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const port = gateway!.port;
  const alice = await login(port, "alice", "alice-demo-2026");
  const admin = await login(port, "admin", "admin-demo-2026");
  const c = clients(port);
  assert.equal(await reasonOf(c.admin.reconcile({}, { headers: alice })), "permission_denied");
  const r = await c.admin.reconcile({}, { headers: admin });
  assert.deepEqual(
    r.banks.map((b) => [b.bank, b.reachable, b.ledgerConsistent]),
    [
      ["bank-a", true, true],
      ["bank-b", true, true],
    ],
  );
  assert.equal(r.conserved, true);
  assert.deepEqual(r.inDoubt, []);

  const txnId = "gateway-0:11111111-2222-4333-8444-555555555555";
  assert.equal(await reasonOf(c.coord.getDecision({ txnId })), "peer_not_allowed");
  const asBank = clients(port, "bank-b");
  assert.equal((await asBank.coord.getDecision({ txnId })).decision, Decision.ABORT);
  assert.equal(await reasonOf(asBank.coord.getDecision({ txnId: "nonsense" })), "invalid_txn_id");
  // Only a participant may ask: another bank's certificate cannot force a presumed abort (issue 13 #3).
  const paid = await c.pay.transfer(
    {
      idempotencyKey: "access-1",
      fromAccountId: "bank-a/1001",
      toAccountId: "bank-b/2001",
      amountMinor: 1n,
      currency: "USD",
      memo: "",
    },
    { headers: alice },
  );
  const paidId = paid.transaction?.transactionId ?? "";
  const stranger = await clients(port, "bank-c")
    .coord.getDecision({ txnId: paidId })
    .then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
  assert.equal(stranger?.code, Code.PermissionDenied);
  assert.equal(errorInfo(stranger!).reason, "not_participant");
  assert.equal((await asBank.coord.getDecision({ txnId: paidId })).decision, Decision.COMMIT);

  const user = await c.admin.createUser(
    { username: "carol", password: "carol-pass-2026", roles: [Role.CUSTOMER], displayName: "Carol" },
    { headers: admin },
  );
  assert.equal(user.user?.userId, "carol");
  assert.equal(
    await reasonOf(
      c.admin.createUser(
        { username: "carol", password: "carol-pass-2026", roles: [Role.CUSTOMER] },
        { headers: admin },
      ),
    ),
    "username_taken",
  );
  assert.equal(
    await reasonOf(
      c.admin.createUser({ username: "dave", password: "short", roles: [Role.CUSTOMER] }, { headers: admin }),
    ),
    "weak_password",
  );
  const opened = await c.admin.openAccount(
    { ownerUserId: "carol", bank: "bank-b", currency: "USD" },
    { headers: admin },
  );
  assert.match(opened.account?.accountId ?? "", /^bank-b\/\d+$/);
  assert.equal(
    await reasonOf(c.admin.openAccount({ ownerUserId: "carol", bank: "bank-z", currency: "USD" }, { headers: admin })),
    "bank_not_found",
  );
  const dep = await c.admin.deposit(
    { idempotencyKey: "dep-1", accountId: opened.account?.accountId ?? "", amountMinor: 700n, currency: "USD" },
    { headers: admin },
  );
  assert.equal(dep.account?.balanceMinor, 700n);
  const carol = await login(port, "carol", "carol-pass-2026");
  const bal = await c.pay.getBalance({}, { headers: carol });
  assert.deepEqual(
    bal.accounts.map((a) => a.balanceMinor),
    [700n],
  );
});

test("a login lockout is per client: guesses through one certificate do not lock the user out through another", {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  const port = gateway!.port;
  const guesser = clients(port, "paycli");
  // LOGIN_FAILURES_MAX defaults to 5; the fifth guess already answers with the lock.
  const guesses: string[] = [];
  for (let i = 0; i < 5; i++)
    guesses.push(await reasonOf(guesser.auth.login({ username: "shop", password: `guess-${i}-guess` })));
  assert.deepEqual(guesses, [
    "invalid_credentials",
    "invalid_credentials",
    "invalid_credentials",
    "invalid_credentials",
    "login_locked",
  ]);
  assert.equal(await reasonOf(guesser.auth.login({ username: "shop", password: "shop-demo-2026" })), "login_locked");
  // Before issue 13 #8 the username itself was locked, for everyone.
  const session = await clients(port, "admin").auth.login({ username: "shop", password: "shop-demo-2026" });
  assert.deepEqual(session.roles, [Role.MERCHANT]);
});

test("a crash after COMMIT is logged is finished by recovery on restart", { timeout: TEST_TIMEOUT_MS }, async () => {
  gateway!.proc.kill("SIGTERM");
  assert.equal(await exited(gateway!.proc), 0, "SIGTERM is a clean exit");
  gateway = await startGateway({ PAYGATE_FAULTPOINTS: "gateway.after_commit_logged" });
  const alice = await login(gateway.port, "alice", "alice-demo-2026");
  const before = banks["bank-b"].accounts.get("bank-b/2001")!.balance;
  const c = clients(gateway.port);
  const transfer = {
    idempotencyKey: "crash-1",
    fromAccountId: "bank-a/1001",
    toAccountId: "bank-b/2001",
    amountMinor: 100n,
    currency: "USD",
    memo: "",
  };
  const dying = c.pay.transfer(transfer, { headers: alice });
  assert.notEqual(await reasonOf(dying), "ok");
  await exited(gateway.proc);
  assert.equal(banks["bank-b"].prepared.size, 1, "prepared, decision logged, Commit never sent");
  assert.equal(banks["bank-b"].accounts.get("bank-b/2001")!.balance, before);

  gateway = await startGateway();
  // Recovery redrives before "listening": the Commit has already been sent.
  assert.equal(banks["bank-b"].prepared.size, 0);
  assert.equal(banks["bank-b"].accounts.get("bank-b/2001")!.balance, before + 100n);
  const alice2 = await login(gateway.port, "alice", "alice-demo-2026");
  // The same request again, to the restarted gateway.
  const replay = await clients(gateway.port).pay.transfer(transfer, { headers: alice2 });
  assert.equal(replay.transaction?.status, TransactionStatus.COMMITTED);
  assert.equal(banks["bank-b"].accounts.get("bank-b/2001")!.balance, before + 100n);
});

test("bad configuration exits 2 with every problem listed", { timeout: TEST_TIMEOUT_MS }, async () => {
  const proc = spawn(process.execPath, ["--import", "tsx", join(ROOT, "services/gateway/src/main.ts")], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? "",
      GATEWAY_PORT: "x",
      PAYGATE_FAULTPOINTS: "gateway.nope",
      BANKS: "bank-a=http://x",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  proc.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  assert.equal(await exited(proc), 2);
  for (const frag of ["GATEWAY_PORT", "gateway.nope", "https://"])
    assert.ok(stderr.includes(frag), `${frag} missing in ${stderr}`);
});
