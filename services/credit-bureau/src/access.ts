// Who may call the credit bureau: its access table, read by the access
// interceptor (main.ts) and by the security matrix test (package export "./access").
import { CreditBureauService } from "@paygate/proto/bureau";
import { GATEWAY_IDENTITY, type AccessTable } from "@paygate/rpc";

/** A credit report is personal data: only the gateway's certificate may ask. */
const gatewayOnly = { kind: "peer", allow: (id: string) => id === GATEWAY_IDENTITY, describe: "the gateway" } as const;

export const bureauAccessTable: AccessTable = Object.freeze(
  Object.fromEntries(
    CreditBureauService.methods.map((m) => [`${CreditBureauService.typeName}/${m.name}`, gatewayOnly]),
  ),
);
