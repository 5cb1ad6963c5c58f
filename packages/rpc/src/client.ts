import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager, type ConnectTransportOptions } from "@connectrpc/connect-node";
import { loadTls, watchTls, type TlsFiles, type TlsMaterial } from "./tls.js";

export interface MtlsTransportOptions {
  readonly baseUrl: string;
  readonly tls: TlsFiles | TlsMaterial;
  readonly timeoutMs?: number;
  readonly interceptors?: Interceptor[];
  /** With file paths: re-read them when they change (certificate rotation). Default true. */
  readonly reload?: boolean;
}

/**
 * Connect protocol (binary) over HTTP/2 with a client certificate. One
 * transport keeps one HTTP/2 session per origin and reuses it for every call.
 * Given file paths, a rotated certificate is picked up for new calls without a
 * restart (calls in flight finish on the old session).
 */
export function createMtlsTransport(options: MtlsTransportOptions): Transport {
  const make = (m: TlsMaterial) =>
    createConnectTransport({
      baseUrl: options.baseUrl,
      httpVersion: "2",
      useBinaryFormat: true,
      defaultTimeoutMs: options.timeoutMs,
      interceptors: options.interceptors ?? [],
      sessionManager: guardSessions(
        new Http2SessionManager(
          options.baseUrl,
          { pingIntervalMs: 10_000, idleConnectionTimeoutMs: 60_000 },
          { ca: m.ca, cert: m.cert, key: m.key },
        ),
      ),
    });
  if ("ca" in options.tls) return make(options.tls);
  let inner = make(loadTls(options.tls));
  if (options.reload !== false) {
    watchTls(
      options.tls,
      (m) => (inner = make(m)),
      () => {
        // Half-written files: keep the working transport; the next change retries.
      },
    );
  }
  return {
    unary: (...args) => inner.unary(...args),
    stream: (...args) => inner.stream(...args),
  };
}

/**
 * connect-node 2.1.2 removes its "error" listener from an HTTP/2 session once
 * it has given up on it; a second error from that session (e.g. TLS "bad
 * record mac" after a peer or the network garbles bytes) then has no listener
 * and kills the process as an uncaught exception. The first error still fails
 * the calls on the session; later ones are only swallowed here. Found by
 * test/chaos (regression test: client.test.ts).
 */
function guardSessions(
  inner: Http2SessionManager,
): NonNullable<Extract<ConnectTransportOptions, { httpVersion: "2" }>["sessionManager"]> {
  const guarded = new WeakSet<object>();
  return {
    get authority() {
      return inner.authority;
    },
    notifyResponseByteRead: (stream: Parameters<Http2SessionManager["notifyResponseByteRead"]>[0]) =>
      inner.notifyResponseByteRead(stream),
    async request(...args: Parameters<Http2SessionManager["request"]>) {
      const stream = await inner.request(...args);
      const session = stream.session;
      if (session && !guarded.has(session)) {
        guarded.add(session);
        session.on("error", () => {});
      }
      return stream;
    },
  };
}
