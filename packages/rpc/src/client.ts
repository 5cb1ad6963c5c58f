import type { Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Interceptor } from "@connectrpc/connect";
import { loadTls, type TlsFiles, type TlsMaterial } from "./tls.js";

export interface MtlsTransportOptions {
  readonly baseUrl: string;
  readonly tls: TlsFiles | TlsMaterial;
  readonly timeoutMs?: number;
  readonly interceptors?: Interceptor[];
}

/**
 * Connect protocol (binary) over HTTP/2 with a client certificate. One
 * transport keeps one HTTP/2 session per origin and reuses it for every call.
 */
export function createMtlsTransport(options: MtlsTransportOptions): Transport {
  const m = "ca" in options.tls ? options.tls : loadTls(options.tls);
  return createConnectTransport({
    baseUrl: options.baseUrl,
    httpVersion: "2",
    useBinaryFormat: true,
    defaultTimeoutMs: options.timeoutMs,
    interceptors: options.interceptors ?? [],
    nodeOptions: { ca: m.ca, cert: m.cert, key: m.key },
    pingIntervalMs: 10_000,
    idleConnectionTimeoutMs: 60_000,
  });
}
