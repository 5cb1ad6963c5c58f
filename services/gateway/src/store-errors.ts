// A store that cannot reach its database (PostgreSQL down, failing over)
// throws StoreUnavailableError from deep inside a use case. This interceptor
// (innermost) turns it into `unavailable` with reason store_unavailable, for
// unary calls and for a stream that breaks midway, so a client retries with
// the same key instead of seeing `internal`.
import type { Interceptor, StreamResponse } from "@connectrpc/connect";
import { rejection } from "@paygate/rpc";
import { StoreUnavailableError } from "./domain/ports.js";

const MESSAGE = "the gateway's store is unavailable; nothing acknowledged is lost; retry with the same idempotency key";

function translate(e: unknown): unknown {
  return e instanceof StoreUnavailableError ? rejection("store_unavailable", MESSAGE) : e;
}

async function* guarded<T>(messages: AsyncIterable<T>): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (e) {
    throw translate(e);
  }
}

export function createStoreErrorInterceptor(): Interceptor {
  return (next) => async (req) => {
    try {
      const res = await next(req);
      if (!res.stream) return res;
      const stream = res as StreamResponse;
      return { ...stream, message: guarded(stream.message) } as typeof res;
    } catch (e) {
      throw translate(e);
    }
  };
}
