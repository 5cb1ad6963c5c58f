// GetDecision calls to the gateway (DESIGN.md §3b): any replica answers for
// any txn, because decisions live in the shared store, so the bank dials
// COORDINATOR_URL — the gateway Service, or each replica's address on a
// laptop — never the replica named by the txn id (that name is for logs).
//
// A call goes to the URL that answered last; when that one fails the way a
// dead or hung replica fails (refused, reset, timed out, unavailable), the
// same call moves on to the next URL, at most once around the list and never
// more than COORDINATOR_ATTEMPTS_MAX times, so one lost replica never blocks
// resolution. Asking again elsewhere is always safe: GetDecision is
// insert-if-absent (presumed abort), so every replica gives the same answer.
//
// Over mTLS with this bank's own certificate (the gateway only answers bank
// identities). One transport (one HTTP/2 session) per URL, made lazily.
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { CoordinatorService, Decision } from "@paygate/proto/gateway";
import { createMtlsTransport, loadTls, type TlsFiles } from "@paygate/rpc";
import type { Decision as LocalDecision } from "./resolver.js";

export const GET_DECISION_TIMEOUT_MS = 5_000;
/** URLs tried by one GetDecision, however many are configured. */
export const COORDINATOR_ATTEMPTS_MAX = 8;

/**
 * Failures that say "this replica cannot answer now", where another one may.
 * The rest (a refused identity, a malformed txn id) would be refused the same
 * way by every replica: asking on would only hide them.
 */
const FAILOVER_CODES: ReadonlySet<Code> = new Set([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.Aborted,
  Code.Canceled,
  Code.Internal,
  Code.Unknown,
  Code.ResourceExhausted,
]);

export interface DecisionAskerOptions {
  /** Base URLs of gateway replicas (or one Service), in order of preference; at least one. */
  readonly urls: readonly string[];
  readonly tls: TlsFiles;
  /** Per attempt. */
  readonly timeoutMs?: number;
  readonly attemptsMax?: number;
  /** Per URL (trace propagation, client metrics). */
  readonly interceptors?: (baseUrl: string) => Interceptor[];
  /** A URL failed and the call moves on to `nextUrl` (for a log line). */
  readonly onFailover?: (event: {
    txnId: string;
    coordinator: string;
    url: string;
    nextUrl: string;
    err: ConnectError;
  }) => void;
}

/** (txnId, coordinator = the txn id's prefix, for messages only) -> the decision; rejects once every attempt failed. */
export type DecisionAsker = (txnId: string, coordinator: string) => Promise<LocalDecision>;

export function createDecisionAsker(options: DecisionAskerOptions): DecisionAsker {
  const { urls, tls } = options;
  if (urls.length === 0) throw new Error("createDecisionAsker needs at least one coordinator URL");
  const timeoutMs = options.timeoutMs ?? GET_DECISION_TIMEOUT_MS;
  const attempts = Math.min(urls.length, options.attemptsMax ?? COORDINATOR_ATTEMPTS_MAX);
  const clients = new Map<string, Client<typeof CoordinatorService>>();
  // Index of the URL to try first: the one that answered last.
  let preferred = 0;

  function clientFor(baseUrl: string): Client<typeof CoordinatorService> {
    let client = clients.get(baseUrl);
    if (!client) {
      // Certificates are read per new URL, so a rotation is picked up by the next one.
      client = createClient(
        CoordinatorService,
        createMtlsTransport({
          baseUrl,
          tls: loadTls(tls),
          timeoutMs,
          interceptors: options.interceptors?.(baseUrl) ?? [],
        }),
      );
      clients.set(baseUrl, client);
    }
    return client;
  }

  return async (txnId, coordinator) => {
    const start = preferred;
    const failures: string[] = [];
    for (let attempt = 0; attempt < attempts; attempt++) {
      const i = (start + attempt) % urls.length;
      const url = urls[i]!;
      let decision: Decision;
      try {
        decision = (await clientFor(url).getDecision({ txnId }, { timeoutMs })).decision;
      } catch (e) {
        const err = ConnectError.from(e);
        if (!FAILOVER_CODES.has(err.code)) throw err;
        failures.push(`${url}: ${err.message}`);
        // Concurrent asks that failed on the same URL move the preference once.
        if (preferred === i) preferred = (i + 1) % urls.length;
        if (attempt + 1 < attempts)
          options.onFailover?.({ txnId, coordinator, url, nextUrl: urls[(i + 1) % urls.length]!, err });
        continue;
      }
      preferred = i;
      switch (decision) {
        case Decision.COMMIT:
          return "commit";
        case Decision.ABORT:
          return "abort";
        default:
          throw new Error(`${url} answered no decision for ${txnId} (coordinator ${coordinator})`);
      }
    }
    throw new Error(
      `GetDecision for ${txnId} (coordinator ${coordinator}) failed at ${failures.length} of ${urls.length} COORDINATOR_URL entries: ${failures.join("; ")}`,
    );
  };
}
