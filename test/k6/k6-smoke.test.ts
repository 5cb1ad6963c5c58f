// CI smoke run of the k6 scripts: k6 (built with `go install` into .tools/ by
// scripts/tools.sh when missing) drives bench/k6/cross-bank.js for a few
// seconds with a few VUs against a real stack over gRPC + mTLS. It asserts
// correctness, not speed: k6's own thresholds pass (every check, i.e. every
// transfer committed; the latency bound is set to the client timeout), the
// payer lost exactly what k6 saw committed, and money is conserved.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PaymentService } from "@paygate/proto/gateway";
import { repoRoot, Stack, TEST_PASSWORD_SUFFIX, tlsFilesFor } from "@paygate/testkit";

function run(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
    // Progress of a first-time k6 build goes to the console as it happens.
    child.stderr.setEncoding("utf8").on("data", (c: string) => {
      stderr += c;
      if (cmd.endsWith("tools.sh")) process.stderr.write(c);
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** The k6 binary; builds it if missing. A machine that cannot build it fails the test. */
async function k6Binary(): Promise<string> {
  const r = await run(join(repoRoot, "scripts", "tools.sh"), ["k6"]);
  assert.equal(
    r.code,
    0,
    `scripts/tools.sh k6 failed (Go and the Go module proxy are needed):\n${r.stderr.slice(-4000)}`,
  );
  return r.stdout.trim().split("\n").pop()!;
}

test("k6 cross-bank script passes its thresholds against a real stack, and money is conserved", async () => {
  const k6 = await k6Binary();
  const stack = await Stack.start();
  const out = mkdtempSync(join(tmpdir(), "paygate-k6-"));
  try {
    const token = await stack.login("alice");
    const alice = stack.client(PaymentService, token);
    const before = (await alice.getBalance({ accountId: "bank-a/1001" })).accounts[0]!.balanceMinor;
    const tls = tlsFilesFor(stack.certs, "paycli");
    const summary = join(out, "summary.json");
    const r = await run(
      k6,
      ["run", "--quiet", "--no-color", "--summary-export", summary, join(repoRoot, "bench", "k6", "cross-bank.js")],
      {
        GATEWAY_ADDR: new URL(stack.gatewayUrl).host,
        CA: tls.caFile,
        CERT: tls.certFile,
        KEY: tls.keyFile,
        PROTO_DIR: join(repoRoot, "proto"),
        PAYERS: `alice:alice${TEST_PASSWORD_SUFFIX}:bank-a/1001`,
        TO_ACCOUNTS: "bank-b/2001",
        VUS: "4",
        DURATION: "3s",
        // The smoke test asserts correctness; timing goals live in bench/.
        P99_MS: "30000",
        CHECKS_RATE: "1",
        K6_NO_USAGE_REPORT: "true",
      },
    );
    assert.equal(
      r.code,
      0,
      `k6 exited ${r.code} (a threshold failed or the script broke):\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`,
    );

    const metrics = (JSON.parse(readFileSync(summary, "utf8")) as { metrics: Record<string, Record<string, number>> })
      .metrics;
    const passes = metrics.checks?.passes ?? 0;
    assert.ok(passes > 0, `k6 made no committed transfer: ${JSON.stringify(metrics.checks)}`);
    assert.equal(metrics.checks?.fails ?? 0, 0);

    const after = (await alice.getBalance({ accountId: "bank-a/1001" })).accounts[0]!.balanceMinor;
    assert.equal(before - after, BigInt(passes), "the payer lost exactly one minor unit per committed transfer k6 saw");
    const rec = await stack.assertConserved();
    assert.equal(rec.conserved, true);
  } finally {
    await stack.close();
    rmSync(out, { recursive: true, force: true });
  }
});
