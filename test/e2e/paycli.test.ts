// The real paycli bundle (dist/paycli.js) as a child process against a real
// stack (banks, gateway, Redis): payments queued while the gateway is down,
// a gateway killed right after it logged COMMIT, and paycli itself killed
// mid-send. Every payment keeps its idempotency key through all of it, and
// the balances at both banks prove each moved exactly once.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PaymentService, TransactionStatus } from "@paygate/proto/gateway";
import { paycliEnv, RedisServer, repoRoot, Stack } from "@paygate/testkit";

interface Run {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}
interface EntryDoc {
  key: string;
  state: string;
  transactionId: string | null;
}
interface QueueDoc {
  depth: number;
  pending: EntryDoc[];
  recent: EntryDoc[];
}

const PAYCLI = join(repoRoot, "dist", "paycli.js");
/** A hung paycli fails the test instead of hanging it (a guard, not a timing assertion). */
const RUN_GUARD_MS = 120_000;

describe("paycli end to end", () => {
  let redis: RedisServer;
  let stack: Stack;
  let home: string;
  let alice: ReturnType<typeof stack.client<typeof PaymentService>>;
  let bob: ReturnType<typeof stack.client<typeof PaymentService>>;
  const keys: string[] = [];

  before(async () => {
    assert.ok(existsSync(PAYCLI), `${PAYCLI} is missing: run \`node scripts/build.mjs\``);
    redis = await RedisServer.start();
    // A loaded test machine can stall Redis replies past the 200 ms default; a timeout
    // would be answered correctly by the log, but the assertions on Redis's contents need it.
    stack = await Stack.start({ redisUrl: redis.url, gatewayEnv: { REDIS_COMMAND_TIMEOUT_MS: "2000" } });
    home = mkdtempSync(join(tmpdir(), "paycli-e2e-"));
    alice = stack.client(PaymentService, await stack.login("alice"));
    bob = stack.client(PaymentService, await stack.login("bob"));
    const login = await paycli(["login", "alice"]);
    assert.equal(login.code, 0, login.stderr);
  });
  after(async () => {
    await stack?.close();
    await redis?.close();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  function paycli(argv: string[], extraEnv: Record<string, string> = {}): Promise<Run> {
    const child = spawn(process.execPath, ["--enable-source-maps", PAYCLI, ...argv], {
      cwd: repoRoot,
      env: {
        ...paycliEnv(stack, home),
        PAYCLI_TIMEOUT_MS: "5000",
        PAYCLI_BACKOFF_BASE_MS: "50",
        PAYCLI_BACKOFF_CAP_MS: "400",
        ...extraEnv,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const guard = setTimeout(() => child.kill("SIGKILL"), RUN_GUARD_MS);
    return new Promise((resolve, reject) => {
      child.on("error", reject);
      child.on("close", (code, signal) => {
        clearTimeout(guard);
        resolve({ code, signal, stdout, stderr });
      });
    });
  }

  const json = <T>(r: Run): T => {
    try {
      return JSON.parse(r.stdout) as T;
    } catch {
      throw new Error(`paycli printed no JSON (code ${r.code}):\n${r.stdout}\n${r.stderr}`);
    }
  };

  async function balances(): Promise<{ alice: bigint; bob: bigint }> {
    const [a, b] = await Promise.all([
      alice.getBalance({ accountId: "bank-a/1001" }),
      bob.getBalance({ accountId: "bank-b/2001" }),
    ]);
    return { alice: a.accounts[0]!.balanceMinor, bob: b.accounts[0]!.balanceMinor };
  }

  async function movedExactly(before: { alice: bigint; bob: bigint }, amountMinor: bigint): Promise<void> {
    const now = await balances();
    assert.equal(now.alice, before.alice - amountMinor, "alice debited exactly once");
    assert.equal(now.bob, before.bob + amountMinor, "bob credited exactly once");
  }

  /** The gateway's history: how many COMMITTED txns each key has. */
  async function committedPerKey(): Promise<Map<string, number>> {
    const m = new Map<string, number>();
    for await (const r of alice.listTransactions({ afterSequence: 0n })) {
      const t = r.transaction!;
      if (t.status === TransactionStatus.COMMITTED) m.set(t.idempotencyKey, (m.get(t.idempotencyKey) ?? 0) + 1);
    }
    return m;
  }

  async function drain(): Promise<QueueDoc> {
    const sync = await paycli(["sync", "--watch", "--json"]);
    assert.equal(sync.code, 0, `sync --watch: ${sync.stdout}\n${sync.stderr}`);
    const queue = json<QueueDoc>(await paycli(["queue", "--json"]));
    assert.equal(queue.depth, 0, "the queue is empty");
    return queue;
  }

  test("three payments queued while the gateway is down are each paid once by sync", async () => {
    const before = await balances();
    await stack.gateway.stop();
    const queued: string[] = [];
    for (const amount of ["1.00", "2.00", "3.00"]) {
      const r = await paycli([
        "pay",
        "bank-b/2001",
        amount,
        "--from",
        "bank-a/1001",
        "--memo",
        `offline ${amount}`,
        "--json",
      ]);
      assert.equal(r.code, 3, `pay exits 3 (queued): ${r.stderr}`);
      const doc = json<{ key: string; state: string }>(r);
      assert.equal(doc.state, "queued");
      queued.push(doc.key);
    }
    assert.equal(json<QueueDoc>(await paycli(["queue", "--json"])).depth, 3);

    await stack.gateway.start();
    await movedExactly(before, 0n);
    const queue = await drain();
    for (const k of queued) assert.equal(queue.recent.find((e) => e.key === k)?.state, "committed", `key ${k}`);
    await movedExactly(before, 600n);
    const perKey = await committedPerKey();
    for (const k of queued) assert.equal(perKey.get(k), 1, `key ${k} committed once`);
    // Nothing left to send: a second sync moves nothing.
    assert.equal((await paycli(["sync", "--json"])).code, 0);
    await movedExactly(before, 600n);
    keys.push(...queued);
    await stack.assertConserved();
  });

  test("gateway killed right after it logged COMMIT: after the restart the replay is answered, not repeated", async () => {
    const before = await balances();
    await stack.gateway.restart({ PAYGATE_FAULTPOINTS: "gateway.after_commit_logged" });
    const key = randomUUID();
    const r = await paycli(["pay", "bank-b/2001", "4.00", "--from", "bank-a/1001", "--key", key, "--json"]);
    assert.equal(r.code, 3, `the connection died: the payment stays queued: ${r.stdout}\n${r.stderr}`);
    const exit = await stack.gateway.waitForExit();
    assert.equal(exit.signal, "SIGKILL", "the fault point killed the gateway");

    await stack.gateway.start();
    const queue = await drain();
    const entry = queue.recent.find((e) => e.key === key);
    assert.equal(entry?.state, "committed");
    await movedExactly(before, 400n);
    assert.equal((await committedPerKey()).get(key), 1);
    const txn = await alice.getTransaction({ transactionId: entry!.transactionId! });
    assert.equal(txn.transaction?.idempotencyKey, key, "paycli recorded the txn the dead gateway had committed");
    assert.ok(
      stack.gateway.find((l) => l.msg === "rpc" && l.idempotencyKey === key && l.retry === true).length >= 1,
      "the replay is logged as a retry",
    );
    // The dead gateway's in-flight claim in Redis was cleared by its restarted self, from its log.
    assert.equal(
      stack.gateway.find(
        (l) => l.msg === "took over a stale in-flight claim of this replica" && l.idempotencyKey === key,
      ).length,
      1,
    );
    keys.push(key);
    await stack.assertConserved();
  });

  test("paycli killed after enqueue, before send: the next sync pays once", async () => {
    const before = await balances();
    const key = randomUUID();
    const r = await paycli(["pay", "bank-b/2001", "5.00", "--from", "bank-a/1001", "--key", key, "--json"], {
      PAYCLI_FAULTPOINT: "after_enqueue",
    });
    assert.equal(r.signal, "SIGKILL", `killed at the fault point: ${r.stderr}`);
    await movedExactly(before, 0n);
    const queue = await drain();
    assert.equal(queue.recent.find((e) => e.key === key)?.state, "committed");
    await movedExactly(before, 500n);
    assert.equal((await committedPerKey()).get(key), 1);
    keys.push(key);
    await stack.assertConserved();
  });

  test("paycli killed after the gateway answered, before recording: the next sync is answered, not repeated", async () => {
    const before = await balances();
    const key = randomUUID();
    const r = await paycli(["pay", "bank-b/2001", "6.00", "--from", "bank-a/1001", "--key", key, "--json"], {
      PAYCLI_FAULTPOINT: "after_send_before_record",
    });
    assert.equal(r.signal, "SIGKILL", `killed at the fault point: ${r.stderr}`);
    await movedExactly(before, 600n);
    const queue = await drain();
    assert.equal(queue.recent.find((e) => e.key === key)?.state, "committed");
    await movedExactly(before, 600n);
    assert.equal((await committedPerKey()).get(key), 1);
    keys.push(key);
    await stack.assertConserved();
  });

  test("every key paycli used committed exactly once", async (t) => {
    const perKey = await committedPerKey();
    for (const k of keys) assert.equal(perKey.get(k), 1, `key ${k}`);
    t.diagnostic(`${keys.length} payments through paycli, each committed once`);
  });
});
