import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
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
      nodeOptions: { ca: m.ca, cert: m.cert, key: m.key },
      pingIntervalMs: 10_000,
      idleConnectionTimeoutMs: 60_000,
    });
  if ("ca" in options.tls) return make(options.tls);
  let inner = make(loadTls(options.tls));
  if (options.reload !== false) {
    watchTls(options.tls, (m) => (inner = make(m)), () => {
      // Half-written files: keep the working transport; the next change retries.
    });
  }
  return {
    unary: (...args) => inner.unary(...args),
    stream: (...args) => inner.stream(...args),
  };
}
