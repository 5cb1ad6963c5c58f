// The proto checks of `make test` (scripts/check-protos.sh) can fail: a copy
// of proto/ with one wire-breaking edit is refused by `buf breaking` against
// the recorded baseline, and an additive edit passes. The baseline itself is
// what the protos build to, minus additions (today's tree passes).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { promisify } from "node:util";
import { repoRoot } from "@paygate/testkit";

const run = promisify(execFile);
const buf = join(repoRoot, "node_modules", ".bin", "buf");
const baseline = join(repoRoot, "proto", "api-baseline.binpb");
const gatewayProto = join("paygate", "gateway", "v1", "gateway.proto");

async function breaking(protoDir: string): Promise<{ ok: boolean; output: string }> {
  try {
    const r = await run(buf, ["breaking", protoDir, "--against", baseline], { cwd: repoRoot });
    return { ok: true, output: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    return { ok: false, output: `${err.stdout ?? ""}${err.stderr ?? ""}` };
  }
}

describe("proto compatibility check", () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  function copyOfProtos(edit: (text: string) => string): string {
    const dir = mkdtempSync(join(tmpdir(), "paygate-protos-"));
    dirs.push(dir);
    cpSync(join(repoRoot, "proto"), dir, { recursive: true, filter: (src) => !src.endsWith(".binpb") });
    writeFileSync(join(dir, "buf.yaml"), "version: v2\nbreaking:\n  use:\n    - FILE\n");
    const file = join(dir, gatewayProto);
    const before = readFileSync(file, "utf8");
    const edited = edit(before);
    assert.notEqual(edited, before, "the edit changed the proto");
    writeFileSync(file, edited);
    return dir;
  }

  test("today's protos are compatible with the baseline", async () => {
    const r = await breaking(copyOfProtos((t) => `${t}\n// unchanged wire\n`));
    assert.ok(r.ok, r.output);
  });

  test("renumbering a field of TransferRequest is refused", async () => {
    const r = await breaking(
      copyOfProtos((t) => t.replace("string from_account_id = 2;", "string from_account_id = 42;")),
    );
    assert.ok(!r.ok, "buf breaking accepted a renumbered field");
    assert.match(r.output, /TransferRequest/);
  });

  test("removing an RPC is refused; adding one passes", async () => {
    const removed = await breaking(
      copyOfProtos((t) =>
        t.replace(/\n\s*rpc GetTransaction\(GetTransactionRequest\) returns \(GetTransactionResponse\);/, ""),
      ),
    );
    assert.ok(!removed.ok, "buf breaking accepted a removed RPC");
    assert.match(removed.output, /GetTransaction/);
    const added = await breaking(
      copyOfProtos((t) =>
        t.replace(
          "rpc GetBalance(GetBalanceRequest) returns (GetBalanceResponse);",
          "rpc GetBalance(GetBalanceRequest) returns (GetBalanceResponse);\n  rpc GetBalanceAgain(GetBalanceRequest) returns (GetBalanceResponse);",
        ),
      ),
    );
    assert.ok(added.ok, added.output);
  });
});
