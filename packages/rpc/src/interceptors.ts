// Server interceptors shared by every service. Index 0 is outermost:
//   [createLoggingInterceptor(log), createAccessInterceptor(table, authenticate)]
import { createContextKey, type Interceptor, type StreamResponse, type UnaryResponse } from "@connectrpc/connect";
import { isSpanContextValid, trace } from "@opentelemetry/api";
import { errorInfo, rejection } from "./errors.js";
import { peerKey } from "./identity.js";
import type { Logger } from "./logger.js";

export interface Caller {
  readonly userId: string;
  readonly roles: readonly string[];
}

/** The authenticated user of this call (set by the access interceptor). */
export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "authenticated caller" });

/**
 * Facts a handler adds to this call's one log line (retry flag, txn id, ...).
 * The logging interceptor sets a fresh object per call; handlers mutate it.
 */
export const logFieldsKey = createContextKey<Record<string, unknown>>({}, { description: "extra log fields" });

const LOGGED_REQUEST_FIELDS = ["idempotencyKey", "amountMinor", "currency", "fromAccountId", "toAccountId", "accountId", "txnId", "transactionId", "username"] as const;

function traceIdOf(header: Headers): string | undefined {
  // The active span (a trace interceptor outside this one) is right even for
  // calls that start a trace; the header is the fallback with tracing off.
  const sc = trace.getActiveSpan()?.spanContext();
  if (sc && isSpanContextValid(sc)) return sc.traceId;
  const tp = header.get("traceparent");
  const m = tp ? /^[0-9a-f]{2}-([0-9a-f]{32})-/.exec(tp) : null;
  return m?.[1];
}

/** One JSON line per call: method, caller, peer, ip, request facts, outcome, duration. */
export function createLoggingInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    const started = performance.now();
    const fields: Record<string, unknown> = {};
    req.contextValues.set(logFieldsKey, fields);
    if (!req.stream) {
      const msg = req.message as Record<string, unknown>;
      for (const f of LOGGED_REQUEST_FIELDS) {
        const v = msg[f];
        if (v !== undefined && v !== "" && v !== 0n) fields[f] = typeof v === "bigint" ? v.toString() : v;
      }
    }
    const line = (code: string, reason: string | undefined) => {
      const peer = req.contextValues.get(peerKey);
      const caller = req.contextValues.get(callerKey);
      logger.info(
        {
          method: `${req.service.typeName}/${req.method.name}`,
          caller: caller?.userId,
          peer: peer.identity,
          ip: peer.ip,
          ...fields,
          code,
          reason,
          durationMs: Math.round((performance.now() - started) * 1000) / 1000,
          traceId: traceIdOf(req.header),
        },
        "rpc",
      );
    };
    let res: UnaryResponse | StreamResponse;
    try {
      res = await next(req);
    } catch (e) {
      const info = errorInfo(e);
      line(codeName(info.code), info.reason);
      if (info.reason === "internal") logger.error({ err: e instanceof Error ? { message: e.message, stack: e.stack } : String(e), method: req.method.name }, "internal error");
      throw e;
    }
    if (!res.stream) {
      line("ok", undefined);
      return res;
    }
    const inner = res.message;
    return {
      ...res,
      message: (async function* () {
        try {
          yield* inner;
          line("ok", undefined);
        } catch (e) {
          const info = errorInfo(e);
          line(codeName(info.code), info.reason);
          throw e;
        }
      })(),
    };
  };
}

function codeName(code: number): string {
  // Connect's names: "invalid_argument", "failed_precondition", ...
  const names = ["ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists", "permission_denied", "resource_exhausted", "failed_precondition", "aborted", "out_of_range", "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated"];
  return names[code] ?? String(code);
}

/** Who may call a method. Methods absent from the table are denied (fail closed). */
export type AccessRule =
  | { readonly kind: "public" }
  | { readonly kind: "peer"; readonly allow: (identity: string) => boolean; readonly describe: string }
  | { readonly kind: "roles"; readonly roles: readonly string[] };

export type AccessTable = Readonly<Record<string, AccessRule>>;

export type Authenticate = (token: string) => Promise<Caller | "session_expired" | "unauthenticated">;

export function createAccessInterceptor(table: AccessTable, authenticate?: Authenticate): Interceptor {
  return (next) => async (req) => {
    const key = `${req.service.typeName}/${req.method.name}`;
    const rule = table[key];
    if (!rule) throw rejection("permission_denied", `no access rule for ${key}`);
    switch (rule.kind) {
      case "public":
        return next(req);
      case "peer": {
        const id = req.contextValues.get(peerKey).identity;
        if (id === undefined || !rule.allow(id)) {
          throw rejection("peer_not_allowed", `${key} may only be called by ${rule.describe}`, { peer: id ?? "" });
        }
        return next(req);
      }
      case "roles": {
        if (!authenticate) throw rejection("permission_denied", `${key} needs a session`);
        const header = req.header.get("authorization") ?? "";
        const m = /^Bearer\s+(\S+)$/i.exec(header);
        if (!m?.[1]) throw rejection("unauthenticated", "missing session: send 'authorization: Bearer <token>' from Login");
        const caller = await authenticate(m[1]);
        if (caller === "session_expired") throw rejection("session_expired", "the session has expired; log in again");
        if (caller === "unauthenticated") throw rejection("unauthenticated", "unknown or revoked session token");
        if (!caller.roles.some((r) => rule.roles.includes(r))) {
          throw rejection("permission_denied", `${key} needs one of the roles: ${rule.roles.join(", ")}`);
        }
        req.contextValues.set(callerKey, caller);
        return next(req);
      }
    }
  };
}
