import assert from "node:assert/strict";
import { Code } from "@connectrpc/connect";
import { errorInfo, type ErrorInfo } from "@paygate/rpc";

/** Awaits a call that must fail with this Connect code and typed reason. */
export async function rejectsWith(call: Promise<unknown>, code: Code, reason: string): Promise<ErrorInfo> {
  let info: ErrorInfo | undefined;
  try {
    await call;
  } catch (e) {
    info = errorInfo(e);
  }
  assert.ok(info, `expected ${Code[code]}/${reason}, but the call succeeded`);
  assert.equal(info.reason, reason, `reason: ${JSON.stringify(info)}`);
  assert.equal(Code[info.code], Code[code], `code for ${reason}: ${info.message}`);
  return info;
}

/** Awaits a call that must be refused before any handler runs (TLS handshake). */
export async function refused(call: Promise<unknown>): Promise<void> {
  let failed = false;
  try {
    await call;
  } catch {
    failed = true;
  }
  assert.ok(failed, "expected the connection to be refused, but the call succeeded");
}
