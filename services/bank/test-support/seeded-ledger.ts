// The domain tests' starting point: an in-memory ledger with some of a bank's
// seed accounts opened, and transaction ids as the gateway makes them.
import { openSeedAccounts, type SeedAccountInput } from "../src/domain/ledger.js";
import { createMemoryLedger, type MemoryLedger } from "./memory-ledger.js";

/** Opens `accounts` (with their opening entries) at `bank` in `ledger`, as the seed does at first start. */
export function openTestAccounts(
  ledger: MemoryLedger,
  bank: string,
  accounts: readonly SeedAccountInput[],
  nowMs: number,
): MemoryLedger {
  ledger.transact((tx) => openSeedAccounts(tx, bank, accounts, nowMs));
  return ledger;
}

/** A new in-memory ledger with `accounts` opened at `bank`. */
export function createSeededLedger(bank: string, accounts: readonly SeedAccountInput[], nowMs: number): MemoryLedger {
  return openTestAccounts(createMemoryLedger(), bank, accounts, nowMs);
}

/** A counter of coordinator transaction ids: gateway-0:00000000-0000-4000-8000-000000000001, then ...002, and so on. */
export function txnIdSequence(): () => string {
  let seq = 0;
  return () => `gateway-0:00000000-0000-4000-8000-${String(++seq).padStart(12, "0")}`;
}
