// Server interceptors shared by every service. Index 0 is outermost:
//   [createLoggingInterceptor(log), createAccessInterceptor(table, authenticate)]
import { randomUUID } from "node:crypto";
import {
  Code,
  ConnectError,
  createContextKey,
  type Interceptor,
  type StreamResponse,
  type UnaryResponse,
} from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { isSpanContextValid, trace } from "@opentelemetry/api";
import { errorInfo, internalError, isExpectedError, rejection } from "./errors.js";
import { peerKey } from "./identity.js";
import type { Logger } from "./logger.js";
import type { Caller } from "@paygate/vocab";

// Caller is a vocabulary word (the auth use case makes it); re-exported for
// the routes that read it from a call's context next to callerKey.
export type { Caller } from "@paygate/vocab";

/** The authenticated user of this call (set by the access interceptor). */
export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "authenticated caller" });

/**
 * Facts a handler adds to this call's one log line (retry flag, txn id, ...).
 * The logging interceptor sets a fresh object per call; handlers mutate it.
 */
export const logFieldsKey = createContextKey<Record<string, unknown>>({}, { description: "extra log fields" });

const LOGGED_REQUEST_FIELDS = [
  "idempotencyKey",
  "amountMinor",
  "currency",
  "fromAccountId",
  "toAccountId",
  "accountId",
  "txnId",
  "transactionId",
  "username",
] as const;

function traceIdOf(header: Headers): string | undefined {
  // The active span (a trace interceptor outside this one) is right even for
  // calls that start a trace; the header is the fallback with tracing off.
  const sc = trace.getActiveSpan()?.spanContext();
  if (sc && isSpanContextValid(sc)) return sc.traceId;
  const tp = header.get("traceparent");
  const m = tp ? /^[0-9a-f]{2}-([0-9a-f]{32})-/.exec(tp) : null;
  return m?.[1];
}

function causeOf(e: unknown): Record<string, unknown> {
  if (!(e instanceof Error)) return { message: String(e) };
  const code = (e as { code?: unknown }).code;
  return { name: e.name, message: e.message, ...(code !== undefined ? { code: String(code) } : {}), stack: e.stack };
}

/**
 * One JSON line per call: method, caller, peer, ip, request facts, outcome, duration.
 *
 * It is also where an unexpected failure stops: the caller gets internalError
 * (a generic message and a fresh correlation id), the line gets the cause and
 * the same id, at level error. Interceptors outside this one (tracing) see
 * only what the caller sees.
 */
/**
 * For a streaming method connect-es decodes the request inside the handler,
 * so a malformed one fails here rather than before the interceptors: a
 * detail-less invalid_argument of its own ("protocol error: promised 9 bytes,
 * received 2", "cannot decode message ... from JSON"), or — its 2.1.2 defect —
 * `internal` for binary it cannot parse ("parse binary: ...") or a compressed
 * envelope it cannot decompress, or an envelope longer than readMaxBytes. All are the
 * caller's bad input and get invalid_argument with a typed detail. (Unary
 * calls are decoded before any interceptor: test/fuzz/known-defects.test.ts.)
 * Our own rejections always carry a detail, so none of them is taken for one.
 */
function malformedRequest(thrown: unknown): ConnectError | undefined {
  if (!(thrown instanceof ConnectError) || isExpectedError(thrown)) return undefined;
  const e: ConnectError = thrown;
  const decoding =
    e.code === Code.InvalidArgument ||
    (e.code === Code.ResourceExhausted && /larger than configured readMaxBytes/.test(e.rawMessage)) ||
    (e.code === Code.Internal &&
      /^(parse binary: |received compressed envelope, but do not know how to decompress)/.test(e.rawMessage));
  if (!decoding) return undefined;
  return rejection("invalid_argument", `the request could not be decoded: ${e.rawMessage.slice(0, 200)}`, {
    field: "body",
  });
}

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
    const line = (
      code: string,
      reason: string | undefined,
      unexpected?: { correlationId: string; err: Record<string, unknown> },
    ) => {
      const peer = req.contextValues.get(peerKey);
      const caller = req.contextValues.get(callerKey);
      (unexpected ? logger.error : logger.info).call(
        logger,
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
          ...unexpected,
        },
        "rpc",
      );
    };
    /** Logs the failure; returns what the caller may see of it. */
    const failed = (thrown: unknown): unknown => {
      // The call's own signal aborted (the client left, the server is closing): a cancellation, not a fault.
      const aborted =
        thrown instanceof Error && (thrown.name === "AbortError" || thrown.name === "TimeoutError")
          ? ConnectError.from(thrown)
          : thrown;
      const e = malformedRequest(aborted) ?? aborted;
      if (isExpectedError(e)) {
        const info = errorInfo(e);
        line(codeName(info.code), info.reason);
        return e;
      }
      const correlationId = randomUUID();
      line("internal", "internal", { correlationId, err: causeOf(e) });
      return internalError(correlationId);
    };
    let res: UnaryResponse | StreamResponse;
    try {
      res = await next(req);
    } catch (e) {
      throw failed(e);
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
          throw failed(e);
        }
      })(),
    };
  };
}

function codeName(code: number): string {
  // Connect's names ("invalid_argument", "failed_precondition", ...), from Connect itself.
  return code === 0 ? "ok" : codeToString(code as Code);
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
        if (!m?.[1])
          throw rejection("unauthenticated", "missing session: send 'authorization: Bearer <token>' from Login");
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
