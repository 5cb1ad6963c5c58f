// GetDecision calls to the coordinator replica named by a txn id's prefix,
// over mTLS with this bank's own certificate (the gateway only answers bank
// identities). One transport (one HTTP/2 session) per replica, made lazily.
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { CoordinatorService, Decision } from "@paygate/proto/gateway";
import { createMtlsTransport, loadTls, type TlsFiles } from "@paygate/rpc";
import type { Decision as LocalDecision } from "./resolver.js";

export const GET_DECISION_TIMEOUT_MS = 5_000;

export function createDecisionAsker(
  urls: ReadonlyMap<string, string>,
  tls: TlsFiles,
  timeoutMs = GET_DECISION_TIMEOUT_MS,
  /** Per replica (trace propagation, client metrics). */
  interceptors: (coordinator: string) => Interceptor[] = () => [],
): (txnId: string, coordinator: string) => Promise<LocalDecision> {
  const clients = new Map<string, Client<typeof CoordinatorService>>();
  return async (txnId, coordinator) => {
    let client = clients.get(coordinator);
    if (!client) {
      const baseUrl = urls.get(coordinator);
      if (!baseUrl) throw new Error(`no COORDINATOR_URLS entry for replica ${JSON.stringify(coordinator)}`);
      // Certificates are read per new replica, so a rotation is picked up by the next one.
      client = createClient(CoordinatorService, createMtlsTransport({ baseUrl, tls: loadTls(tls), timeoutMs, interceptors: interceptors(coordinator) }));
      clients.set(coordinator, client);
    }
    const res = await client.getDecision({ txnId }, { timeoutMs });
    switch (res.decision) {
      case Decision.COMMIT:
        return "commit";
      case Decision.ABORT:
        return "abort";
      default:
        throw new Error(`coordinator ${coordinator} answered no decision for ${txnId}`);
    }
  };
}
