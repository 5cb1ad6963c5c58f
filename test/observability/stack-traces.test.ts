// One payment, one trace, across real processes: the paycli bundle pays
// through the gateway process, which runs 2PC against two bank processes;
// every process exports OTLP/HTTP to the in-process receiver because
// OTEL_EXPORTER_OTLP_ENDPOINT is set. Nothing links the processes but the
// traceparent header their interceptors carry.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { paycliEnv, repoRoot, Stack } from "@paygate/testkit";
import {
  describeSpan,
  PAYCLI_TRANSFER_TREE,
  SPAN_KIND,
  spanTree,
  startOtlpReceiver,
  type OtlpReceiver,
} from "./otlp-receiver.js";

const run = promisify(execFile);
// Everything a span may carry: the RPC conventions and telemetry's whitelist of
// business facts. A card number, a memo or an account id has no key here.
const ALLOWED_ATTRIBUTES = new Set([
  "rpc.system",
  "rpc.service",
  "rpc.method",
  "rpc.connect_rpc.error_code",
  "paygate.transaction_id",
  "paygate.amount_minor",
  "paygate.currency",
  "paygate.outcome",
  "paygate.reason",
  "paygate.batch.size",
]);

let receiver: OtlpReceiver;
let stack: Stack;
let home: string;

before(async () => {
  receiver = await startOtlpReceiver();
  const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url };
  stack = await Stack.start({ gatewayEnv: otel, bankEnv: otel });
  home = mkdtempSync(join(tmpdir(), "paygate-paycli-trace-"));
});

after(async () => {
  await stack?.close();
  await receiver?.close();
  if (home) rmSync(home, { recursive: true, force: true });
});

async function paycli(args: string[]): Promise<string> {
  const env = { ...paycliEnv(stack, home), OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url };
  const { stdout } = await run(process.execPath, [join(repoRoot, "dist", "paycli.js"), ...args], {
    env,
    cwd: home,
    timeout: 60_000,
  });
  return stdout;
}

test("a paycli payment is one trace: paycli -> gateway -> both banks, with the right parents and facts", async () => {
  await paycli(["login", "alice"]);
  const paid = JSON.parse(
    await paycli(["pay", "bank-b/2001", "12.34", "--from", "bank-a/1001", "--memo", "trace me", "--json"]),
  ) as { state: string; entry: { transactionId: string | null } };
  assert.equal(paid.state, "committed");
  const txnId = paid.entry.transactionId;
  assert.ok(txnId);
  // paycli flushed its spans before exiting; a graceful stop makes each service flush its own.
  await Promise.all([stack.gateway, ...stack.banks.values()].map((p) => p.stop()));
  for (const p of [stack.gateway, ...stack.banks.values()])
    assert.equal(p.lastExit?.code, 0, `${p.name} exited cleanly`);

  const root = receiver.spans.filter((s) => s.service === "paycli" && s.name.endsWith("/Transfer"));
  assert.equal(root.length, 1, "paycli exported one Transfer span");
  const trace = receiver.spans.filter((s) => s.traceId === root[0]!.traceId);
  assert.deepEqual(spanTree(trace), PAYCLI_TRANSFER_TREE);
  // Each gateway client span has exactly one server child: bank-a's and bank-b's spans hang off different calls.
  for (const c of trace.filter((s) => s.service === "gateway" && s.kind === SPAN_KIND.client)) {
    assert.equal(trace.filter((s) => s.parentSpanId === c.spanId).length, 1, `one child of ${c.name}`);
  }

  const gwTransfer = trace.find((s) => s.service === "gateway" && s.kind === SPAN_KIND.server)!;
  assert.equal(gwTransfer.attributes["paygate.transaction_id"], txnId);
  assert.equal(gwTransfer.attributes["paygate.amount_minor"], "1234");
  assert.equal(gwTransfer.attributes["paygate.currency"], "USD");
  assert.equal(gwTransfer.attributes["paygate.outcome"], "committed");
  for (const bank of ["bank-a", "bank-b"]) {
    const prepare = trace.find((s) => s.service === bank && s.name.endsWith("/Prepare"))!;
    assert.equal(prepare.attributes["paygate.transaction_id"], txnId, `${bank} Prepare`);
    assert.equal(prepare.attributes["paygate.outcome"], "voted_yes", `${bank} Prepare`);
    const commit = trace.find((s) => s.service === bank && s.name.endsWith("/Commit"))!;
    assert.equal(commit.attributes["paygate.outcome"], "committed", `${bank} Commit`);
  }
  for (const s of trace) assert.equal(s.statusCode === 2, false, `${describeSpan(s)} is not an error`);
  // Only whitelisted keys on any span paygate exported, in any trace.
  const keys = new Set(receiver.spans.flatMap((s) => Object.keys(s.attributes)));
  assert.deepEqual(
    [...keys].filter((k) => !ALLOWED_ATTRIBUTES.has(k)),
    [],
  );
  assert.ok(
    !JSON.stringify(receiver.spans, (_, v: unknown) => (typeof v === "bigint" ? v.toString() : v)).includes("trace me"),
    "the memo is in no span",
  );

  // The services' log lines for these calls carry the same trace id.
  const traceId = root[0]!.traceId;
  const rpcLine = (p: typeof stack.gateway, method: string) =>
    p.find((l) => l.msg === "rpc" && l.method === method && l.transactionId === txnId).at(0) ??
    p.find((l) => l.msg === "rpc" && l.method === method && l.txnId === txnId).at(0);
  assert.equal(
    rpcLine(stack.gateway, "paygate.gateway.v1.PaymentService/Transfer")?.traceId,
    traceId,
    "gateway Transfer log line",
  );
  for (const bank of stack.banks.values())
    assert.equal(
      rpcLine(bank, "paygate.bank.v1.ParticipantService/Prepare")?.traceId,
      traceId,
      `${bank.name} Prepare log line`,
    );
});
