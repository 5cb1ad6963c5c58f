// Who may call what: the one method -> rule table. Methods missing here are
// denied by the access interceptor (fail closed); handlers still check that
// the caller owns what they touch.
import type { DescService } from "@bufbuild/protobuf";
import {
  AdminService,
  AuthService,
  CardService,
  CoordinatorService,
  PaymentService,
  WebhookService,
} from "@paygate/proto/gateway";
import { bankOfIdentity, type AccessRule, type AccessTable } from "@paygate/rpc";

const SIGNED_IN: AccessRule = { kind: "roles", roles: ["customer", "merchant", "admin"] };
const ADMIN: AccessRule = { kind: "roles", roles: ["admin"] };
const MERCHANT: AccessRule = { kind: "roles", roles: ["merchant"] };
// A merchant hears of its card payments; a customer who is paid may want transfer.committed.
const CUSTOMER_OR_MERCHANT: AccessRule = { kind: "roles", roles: ["customer", "merchant"] };
const BANKS: AccessRule = {
  kind: "peer",
  allow: (id) => bankOfIdentity(id) !== undefined,
  describe: "a bank's certificate (spiffe://paygate.local/bank/<name>)",
};

function every(service: DescService, rule: AccessRule): [string, AccessRule][] {
  return service.methods.map((m) => [`${service.typeName}/${m.name}`, rule]);
}

export const gatewayAccessTable: AccessTable = Object.freeze(
  Object.fromEntries<AccessRule>([
    [`${AuthService.typeName}/Login`, { kind: "public" }],
    // Sign-up: public, rate-limited per client in the handler (DESIGN.md §11).
    [`${AuthService.typeName}/Register`, { kind: "public" }],
    [`${AuthService.typeName}/Logout`, SIGNED_IN],
    ...every(PaymentService, SIGNED_IN), // LinkBankAccount included: the caller links to themself
    ...every(AdminService, ADMIN), // IssueCard, IssueLinkCode, UnlinkBankAccount included
    ...every(CardService, MERCHANT),
    ...every(WebhookService, CUSTOMER_OR_MERCHANT), // the caller's own endpoints only, checked in the use cases
    ...every(CoordinatorService, BANKS),
  ]),
);
