// The process contract (config errors exit 2, "listening" with the port,
// SIGTERM exits 0) and crash recovery at each named fault point: the bank is
// killed with SIGKILL between "logged" and "answered" and restarted on the
// same data directory.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { rmSync } from "node:fs";
import { join } from "node:path";
import type { ConnectRouter } from "@connectrpc/connect";
import { LegDirection, Vote } from "@paygate/proto/bank";
import { CoordinatorService, Decision } from "@paygate/proto/gateway";
import { createLogger, startRpcServer, type RpcServer } from "@paygate/rpc";
import { freePort } from "@paygate/testkit";
import {
  assertLedgerConsistent,
  bankClients,
  makeTestDir,
  newTxnId,
  repoRoot,
  tlsFiles,
  type TestDir,
} from "./test-support.js";

interface Running {
  readonly child: ChildProcess;
  readonly port: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly lines: Array<Record<string, unknown>>;
}

/** Every child this file starts, so a failing test cannot leave one running. */
const children = new Set<ChildProcess>();

async function startBank(env: Record<string, string>): Promise<Running> {
  const child = spawn(process.execPath, ["--import", "tsx", join(repoRoot, "services/bank/src/main.ts")], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", METRICS_PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  const exited = once(child, "exit").then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }));
  const lines: Array<Record<string, unknown>> = [];
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  let buffered = "";
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>;
        buffered = buffered.slice(nl + 1);
        lines.push(line);
        if (line.msg === "listening") resolve(line.port as number);
      }
    });
    void exited.then((e) => reject(new Error(`bank exited before listening (${JSON.stringify(e)}): ${stderr}`)));
  });
  assert.equal(typeof port, "number");
  return { child, port, exited, lines };
}

describe("bank process", () => {
  let t: TestDir;
  let coordinator: RpcServer;
  const decisions = new Map<string, Decision>();
  let env: Record<string, string>;

  before(async () => {
    t = makeTestDir("bank-main");
    coordinator = await startRpcServer({
      host: "127.0.0.1",
      port: 0,
      tls: tlsFiles(t.certs, "gateway"),
      routes: (router: ConnectRouter) =>
        router.service(CoordinatorService, {
          getDecision: (req) => ({ decision: decisions.get(req.txnId) ?? Decision.ABORT }),
        }),
      interceptors: [],
      logger: createLogger("coordinator-stub", "silent"),
    });
    const tls = tlsFiles(t.certs, "bank-a");
    env = {
      BANK_NAME: "bank-a",
      BANK_PORT: "0",
      BANK_DATA_DIR: join(t.dir, "bank-a"),
      SEED_FILE: t.seedFile,
      TLS_CA_FILE: tls.caFile,
      TLS_CERT_FILE: tls.certFile,
      TLS_KEY_FILE: tls.keyFile,
      COORDINATOR_URL: `https://127.0.0.1:${coordinator.port}`,
      // Long enough that nothing is in doubt while a test drives the txn itself.
      PREPARE_TIMEOUT_MS: "600000",
      RESOLVE_INTERVAL_MS: "50",
    };
  });

  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    await coordinator.close(100);
    t.cleanup();
  });

  test("configuration problems are listed on stderr and exit 2", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", join(repoRoot, "services/bank/src/main.ts")], {
      cwd: repoRoot,
      env: {
        PATH: process.env.PATH ?? "",
        BANK_NAME: "Bank A",
        BANK_PORT: "99999",
        PAYGATE_FAULTPOINTS: "bank.no_such_point",
        COORDINATOR_URL: "https://127.0.0.1:50050,http://127.0.0.1:50060",
        COORDINATOR_URLS: "gateway-0=https://127.0.0.1:50050",
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr!.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    const [code] = (await once(child, "exit")) as [number | null];
    assert.equal(code, 2);
    for (const frag of [
      "BANK_NAME",
      "BANK_PORT",
      "bank.no_such_point",
      "COORDINATOR_URL: needs https",
      "COORDINATOR_URLS \\(replica=URL pairs\\) is replaced",
    ])
      assert.match(stderr, new RegExp(frag.replace(".", "\\.")));
  });

  test("each fault point kills the process at its step; the restarted bank recovers from its ledger", async () => {
    const legs = [
      {
        accountId: "bank-a/1001",
        direction: LegDirection.DEBIT,
        amountMinor: 1_000n,
        currency: "USD",
        ownerUserId: "alice",
      },
      {
        accountId: "bank-a/1002",
        direction: LegDirection.CREDIT,
        amountMinor: 1_000n,
        currency: "USD",
        ownerUserId: "",
      },
    ];
    const txnId = newTxnId();

    // 1. PREPARED is durable but the YES never leaves the process.
    let bank = await startBank({ ...env, PAYGATE_FAULTPOINTS: "bank.after_prepare_logged" });
    await assert.rejects(bankClients(bank.port, t.certs, "gateway").participant.prepare({ txnId, legs }));
    assert.deepEqual(await bank.exited, { code: null, signal: "SIGKILL" });
    // The seed is never read again: the restarted bank must not need it.
    rmSync(t.seedFile);

    // 2. Restarted: the hold is back; Commit arrives and the process dies before applying it.
    bank = await startBank({ ...env, PAYGATE_FAULTPOINTS: "bank.before_commit_apply" });
    let gw = bankClients(bank.port, t.certs, "gateway");
    const held = (await gw.ledger.getAccount({ accountId: "bank-a/1001" })).account!;
    assert.deepEqual([held.balanceMinor, held.heldMinor], [100_000n, 1_000n]);
    assert.equal((await gw.participant.prepare({ txnId, legs })).vote, Vote.YES, "a re-delivered prepare is YES again");
    await assert.rejects(gw.participant.commit({ txnId }));
    assert.equal((await bank.exited).signal, "SIGKILL");

    // 3. Nothing was applied; this time the process dies after applying, before the ack.
    bank = await startBank({ ...env, PAYGATE_FAULTPOINTS: "bank.after_commit_applied" });
    gw = bankClients(bank.port, t.certs, "gateway");
    assert.equal((await gw.ledger.getAccount({ accountId: "bank-a/1001" })).account!.balanceMinor, 100_000n);
    await assert.rejects(gw.participant.commit({ txnId }));
    assert.equal((await bank.exited).signal, "SIGKILL");

    // 4. The coordinator re-sends Commit: acknowledged, applied exactly once.
    bank = await startBank(env);
    gw = bankClients(bank.port, t.certs, "gateway");
    await gw.participant.commit({ txnId });
    const a = (await gw.ledger.getAccount({ accountId: "bank-a/1001" })).account!;
    assert.deepEqual([a.balanceMinor, a.heldMinor], [99_000n, 0n]);
    assert.equal((await gw.ledger.getAccount({ accountId: "bank-a/1002" })).account!.balanceMinor, 6_000n);
    await assertLedgerConsistent(gw.ledger);

    // Graceful stop: SIGTERM exits 0.
    bank.child.kill("SIGTERM");
    assert.deepEqual(await bank.exited, { code: 0, signal: null });
  });

  test("after a crash, prepared txns already past the timeout are settled by asking the coordinator", async () => {
    const commitId = newTxnId();
    const abortId = newTxnId();
    decisions.set(commitId, Decision.COMMIT); // abortId: the stub presumes abort
    let bank = await startBank(env);
    let gw = bankClients(bank.port, t.certs, "gateway");
    for (const txnId of [commitId, abortId]) {
      const r = await gw.participant.prepare({
        txnId,
        legs: [
          {
            accountId: "bank-a/1001",
            direction: LegDirection.DEBIT,
            amountMinor: 500n,
            currency: "USD",
            ownerUserId: "",
          },
          {
            accountId: "bank-a/1002",
            direction: LegDirection.CREDIT,
            amountMinor: 500n,
            currency: "USD",
            ownerUserId: "",
          },
        ],
      });
      assert.equal(r.vote, Vote.YES);
    }
    bank.child.kill("SIGKILL");
    await bank.exited;

    bank = await startBank({ ...env, PREPARE_TIMEOUT_MS: "1" });
    gw = bankClients(bank.port, t.certs, "gateway");
    let totals = await gw.ledger.totals({});
    for (let i = 0; i < 200 && totals.prepared.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 25));
      totals = await gw.ledger.totals({});
    }
    assert.deepEqual(totals.prepared, []);
    const credited: string[] = [];
    for await (const r of gw.ledger.listEntries({ accountId: "bank-a/1002" })) credited.push(r.entry!.txnId);
    assert.ok(credited.includes(commitId), "the txn the coordinator committed is applied");
    assert.ok(!credited.includes(abortId), "the txn the coordinator presumed aborted is not");
    const a = (await gw.ledger.getAccount({ accountId: "bank-a/1001" })).account!;
    assert.deepEqual([a.balanceMinor, a.heldMinor], [98_500n, 0n]);
    await assertLedgerConsistent(gw.ledger);
    bank.child.kill("SIGTERM");
    assert.equal((await bank.exited).code, 0);
  });

  test("given two coordinator URLs, the first a dead port, an in-doubt txn is resolved through the second", async () => {
    const deadUrl = `https://127.0.0.1:${await freePort()}`; // nothing listens there
    const liveUrl = `https://127.0.0.1:${coordinator.port}`;
    const txnId = newTxnId("gateway-5"); // names a replica no URL belongs to: only logs say it
    decisions.set(txnId, Decision.COMMIT);
    const bank = await startBank({ ...env, COORDINATOR_URL: `${deadUrl},${liveUrl}`, PREPARE_TIMEOUT_MS: "200" });
    const gw = bankClients(bank.port, t.certs, "gateway");
    const before = (await gw.ledger.getAccount({ accountId: "bank-a/1001" })).account!;
    const legs = [
      { accountId: "bank-a/1001", direction: LegDirection.DEBIT, amountMinor: 700n, currency: "USD", ownerUserId: "" },
      { accountId: "bank-a/1002", direction: LegDirection.CREDIT, amountMinor: 700n, currency: "USD", ownerUserId: "" },
    ];
    assert.equal((await gw.participant.prepare({ txnId, legs })).vote, Vote.YES);
    let totals = await gw.ledger.totals({});
    for (let i = 0; i < 400 && totals.prepared.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 25));
      totals = await gw.ledger.totals({});
    }
    assert.deepEqual(totals.prepared, [], "resolved although the first URL never answers");
    const a = (await gw.ledger.getAccount({ accountId: "bank-a/1001" })).account!;
    assert.deepEqual(
      [a.balanceMinor, a.heldMinor],
      [before.balanceMinor - 700n, 0n],
      "the coordinator's COMMIT is applied",
    );
    const failover = bank.lines.find((l) => l.msg === "GetDecision failed at this coordinator URL; trying the next");
    assert.deepEqual(
      [failover?.url, failover?.nextUrl, failover?.coordinator, failover?.txnId],
      [deadUrl, liveUrl, "gateway-5", txnId],
    );
    const resolved = bank.lines.find((l) => l.msg === "in-doubt txn resolved");
    assert.deepEqual([resolved?.txnId, resolved?.coordinator, resolved?.decision], [txnId, "gateway-5", "commit"]);
    await assertLedgerConsistent(gw.ledger);
    bank.child.kill("SIGTERM");
    assert.equal((await bank.exited).code, 0);
  });
});
