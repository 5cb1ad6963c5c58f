// @paygate/bank/use-cases: the bank without its transport, for code outside
// the service that runs real banks in memory (the simulator in test/sim): the
// use cases over a LedgerStore, the in-doubt resolver, and the store port they
// need (a type only: nothing here opens SQLite). The domain's records are
// @paygate/bank/domain; main.ts wires these to Connect and SQLite.
export { createBank, type Bank } from "./bank.js";
export { createResolver, type Resolver } from "./resolver.js";
export type { LedgerStore, PreparedRef } from "./store/ledger-store.js";
