// @paygate/bank/domain: the bank's vocabulary as code outside the service
// (the simulator in test/sim, the chaos checkers) may use it on purpose — the
// ledger's records and its one transaction port, what a Prepare carries and
// answers, the reconciliation rule. Anything not named here is the bank's own.
export type {
  Account,
  Deposit,
  Entry,
  Hold,
  HoldChange,
  Leg,
  LedgerTx,
  Txn,
  TxnState,
} from "./types.js";
export type { LegInput, PrepareOutcome } from "./participant.js";
export { reconcile, type AccountAudit } from "./reconcile.js";
export type { LinkTx } from "./links.js";
