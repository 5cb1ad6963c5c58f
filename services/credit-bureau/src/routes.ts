// Proto <-> domain for CreditBureauService, and who may call it. No rules here.
import type { ConnectRouter } from "@connectrpc/connect";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { CreditBureauService } from "@paygate/proto/bureau";
import { GATEWAY_IDENTITY, logFieldsKey, rejection, type AccessTable } from "@paygate/rpc";
import type { Bureau } from "./domain/report.js";

/** A credit report is personal data: only the gateway's certificate may ask. */
const gatewayOnly = { kind: "peer", allow: (id: string) => id === GATEWAY_IDENTITY, describe: "the gateway" } as const;

export const bureauAccessTable: AccessTable = Object.freeze(
  Object.fromEntries(
    CreditBureauService.methods.map((m) => [`${CreditBureauService.typeName}/${m.name}`, gatewayOnly]),
  ),
);

export function bureauRoutes(bureau: Bureau): (router: ConnectRouter) => void {
  return (router) => {
    router.service(CreditBureauService, {
      fetchCreditReport(req, ctx) {
        ctx.values.get(logFieldsKey).userId = req.userId.slice(0, 64);
        const r = bureau.fetch(req.userId);
        if (!r.ok) throw rejection(r.reason, r.message, { user_id: req.userId.slice(0, 64) });
        const report = r.value;
        return {
          report: {
            userId: report.userId,
            score: report.score,
            openCreditMinor: report.openCreditMinor,
            currency: report.currency,
            utilisationBps: report.utilisationBps,
            delinquencies: report.delinquencies,
            reportTime: timestampFromMs(report.reportTimeMs),
          },
        };
      },
    });
  };
}
