// The credit bureau client: FetchCreditReport over mTLS with the gateway's
// own certificate (the bureau answers only the gateway's identity). It
// implements the cards domain's CreditReports port and never throws: an
// unknown user is "user_not_found", anything else "bureau_unavailable".
import { Code, createClient, type Interceptor } from "@connectrpc/connect";
import { CreditBureauService } from "@paygate/proto/bureau";
import { createMtlsTransport, errorInfo, type TlsFiles } from "@paygate/rpc";
import type { CreditReports } from "./domain/cards-ports.js";

export interface BureauClientOptions {
  readonly url: string;
  readonly tls: TlsFiles;
  readonly timeoutMs: number;
  readonly interceptors?: Interceptor[];
}

export function createBureauClient(o: BureauClientOptions): CreditReports {
  // File paths: a rotated gateway certificate is picked up without a restart.
  const client = createClient(
    CreditBureauService,
    createMtlsTransport({ baseUrl: o.url, tls: o.tls, timeoutMs: o.timeoutMs, interceptors: o.interceptors ?? [] }),
  );
  return {
    async fetch(userId) {
      try {
        const res = await client.fetchCreditReport({ userId }, { timeoutMs: o.timeoutMs });
        if (!res.report) return { ok: false, reason: "bureau_unavailable", message: "the bureau sent an empty report" };
        return {
          ok: true,
          report: { userId: res.report.userId, score: res.report.score, delinquencies: res.report.delinquencies },
        };
      } catch (e) {
        const info = errorInfo(e);
        if (info.code === Code.NotFound) return { ok: false, reason: "user_not_found", message: info.message };
        return { ok: false, reason: "bureau_unavailable", message: `${info.reason}: ${info.message}` };
      }
    },
  };
}
