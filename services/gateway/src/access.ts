// Who may call what: the one method -> rule table. Methods missing here are
// denied by the access interceptor (fail closed); handlers still check that
// the caller owns what they touch.
import type { DescService } from "@bufbuild/protobuf";
import { AdminService, AuthService, CardService, CoordinatorService, PaymentService } from "@paygate/proto/gateway";
import { bankOfIdentity, type AccessRule, type AccessTable } from "@paygate/rpc";

const SIGNED_IN: AccessRule = { kind: "roles", roles: ["customer", "merchant", "admin"] };
const ADMIN: AccessRule = { kind: "roles", roles: ["admin"] };
const MERCHANT: AccessRule = { kind: "roles", roles: ["merchant"] };
const BANKS: AccessRule = { kind: "peer", allow: (id) => bankOfIdentity(id) !== undefined, describe: "a bank's certificate (spiffe://paygate.local/bank/<name>)" };

function every(service: DescService, rule: AccessRule): [string, AccessRule][] {
  return service.methods.map((m) => [`${service.typeName}/${m.name}`, rule]);
}

export const gatewayAccessTable: AccessTable = Object.freeze(
  Object.fromEntries<AccessRule>([
    [`${AuthService.typeName}/Login`, { kind: "public" }],
    [`${AuthService.typeName}/Logout`, SIGNED_IN],
    ...every(PaymentService, SIGNED_IN),
    ...every(AdminService, ADMIN), // IssueCard included
    ...every(CardService, MERCHANT),
    ...every(CoordinatorService, BANKS),
  ]),
);
