// What every route file needs: a use case's Result as a Connect answer, the
// caller the access interceptor found, the call's log fields.
import type { HandlerContext } from "@connectrpc/connect";
import { callerKey, logFieldsKey, rejection, type Caller } from "@paygate/rpc";
import type { Result } from "./domain/model.js";

/** The value, or the Failure as a Connect error with its reason from the error table. */
export function unwrap<T>(r: Result<T>): T {
  if (!r.ok) throw rejection(r.reason, r.message, r.metadata ? { ...r.metadata } : {});
  return r.value;
}

export function callerOf(ctx: HandlerContext): Caller {
  const caller = ctx.values.get(callerKey);
  // The access interceptor sets it for every role-guarded method.
  if (!caller) throw rejection("unauthenticated", "no session");
  return caller;
}

export const logFields = (ctx: HandlerContext): Record<string, unknown> => ctx.values.get(logFieldsKey);
