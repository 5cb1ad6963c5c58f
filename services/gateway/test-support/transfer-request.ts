// The transfer the coordinator's and the idempotency fast path's tests send
// unless a test says otherwise: alice's bank-a/1001 pays bob's bank-b/2001.
import type { TransferRequest } from "../src/domain/transfer-rules.js";

/** 25.00 USD from bank-a/1001 to bank-b/2001 under key-1, with `over` replacing any field. */
export const transferRequest = (over: Partial<TransferRequest> = {}): TransferRequest => ({
  idempotencyKey: "key-1",
  fromAccountId: "bank-a/1001",
  toAccountId: "bank-b/2001",
  amountMinor: 2500n,
  currency: "USD",
  memo: "rent",
  ...over,
});
