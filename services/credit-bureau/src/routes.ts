// Proto <-> domain for CreditBureauService (who may call it: access.ts). No rules here.
import type { ConnectRouter } from "@connectrpc/connect";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { CreditBureauService } from "@paygate/proto/bureau";
import { logFieldsKey, rejection } from "@paygate/rpc";
import type { Bureau } from "./domain/report.js";

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
