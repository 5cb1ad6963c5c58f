// Who may call the bank: its access table, read by the access interceptor
// (main.ts) and by the security matrix test (package export "./access").
import { LedgerService, LinkService, ParticipantService } from "@paygate/proto/bank";
import { GATEWAY_IDENTITY, type AccessTable } from "@paygate/rpc";

/** Only the gateway's certificate may call the bank at all. */
const gatewayOnly = { kind: "peer", allow: (id: string) => id === GATEWAY_IDENTITY, describe: "the gateway" } as const;

export const bankAccessTable: AccessTable = Object.fromEntries(
  [ParticipantService, LedgerService, LinkService].flatMap((s) =>
    s.methods.map((m) => [`${s.typeName}/${m.name}`, gatewayOnly]),
  ),
);
