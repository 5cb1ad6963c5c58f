// The simplest throughput figure: N transfers sequentially, then N at a fixed
// concurrency, against a real stack (processes, mTLS, durable SQLite).
//   node --import tsx bench/transfer-loop.ts [--n 1000] [--concurrency 32]
// Prints transfers/s and latency percentiles; asserts nothing (figures only),
// except that money was conserved afterwards.
import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import { PaymentService } from "@paygate/proto/gateway";
import { Stack } from "@paygate/testkit";

const { values } = parseArgs({
  options: { n: { type: "string", default: "1000" }, concurrency: { type: "string", default: "32" } },
});
const n = Number(values.n);
const concurrency = Number(values.concurrency);

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function run(label: string, alice: ReturnType<Stack["client"]>, total: number, lanes: number) {
  const latencies: number[] = [];
  let next = 0;
  let failures = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (next < total) {
        const i = next++;
        const t0 = performance.now();
        try {
          await (alice as unknown as { transfer: (r: object) => Promise<unknown> }).transfer({
            idempotencyKey: randomUUID(),
            fromAccountId: "bank-a/1001",
            toAccountId: i % 2 ? "bank-b/2001" : "bank-a/1002",
            amountMinor: 1n,
            currency: "USD",
          });
        } catch {
          failures++;
        }
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const secs = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const row = {
    label,
    transfers: total,
    concurrency: lanes,
    failures,
    perSecond: Math.round(total / secs),
    p50ms: +pct(latencies, 50).toFixed(1),
    p90ms: +pct(latencies, 90).toFixed(1),
    p99ms: +pct(latencies, 99).toFixed(1),
  };
  console.log(JSON.stringify(row));
  return row;
}

const stack = await Stack.start({ prepareTimeoutMs: 10_000 });
try {
  const alice = stack.client(PaymentService, await stack.login("alice"));
  await run("warm-up", alice, 50, 4);
  await run("sequential", alice, n, 1);
  await run(`concurrency ${concurrency}`, alice, n, concurrency);
  const r = await stack.assertConserved();
  console.log(JSON.stringify({ conserved: r.conserved }));
} finally {
  await stack.close();
}
