// The directions of a two-phase-commit leg, the one word both ends of the
// bank participant API share without its protobuf types: the gateway's name
// for each (ports.ts's LegDirection, also the value name of the wire enum
// paygate.bank.v1.LegDirection) and the name the bank's ledger records it
// under (bank domain/types.ts's Direction). The gateway's bank client
// (services/gateway/src/banks.ts) sends a leg by the first; the simulator
// (test/sim/world.ts), which hands its banks the gateway's legs without the
// wire, turns one into the other here rather than by a table of its own.
export const LEG_DIRECTIONS = {
  DEBIT: "debit",
  CREDIT: "credit",
  AUTH_HOLD: "auth_hold",
  CAPTURE: "capture",
  RELEASE: "release",
} as const;

export type LegDirection = keyof typeof LEG_DIRECTIONS;
export type LedgerDirection = (typeof LEG_DIRECTIONS)[LegDirection];

/** The ledger's name for a leg's direction. */
export const ledgerDirectionOf = (d: LegDirection): LedgerDirection => LEG_DIRECTIONS[d];
