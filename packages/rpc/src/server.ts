// One way to serve Connect over mTLS: HTTP/2 with HTTP/1.1 allowed (so curl
// can post Connect JSON), client certificates required and verified against
// the paygate CA, rotated certificate files picked up without a restart.
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { peerContextValues } from "./identity.js";
import { loadTls, watchTls, type TlsFiles } from "./tls.js";
import type { Logger } from "./logger.js";

export interface RpcServerOptions {
  readonly host: string;
  readonly port: number;
  readonly tls: TlsFiles;
  readonly routes: (router: ConnectRouter) => void;
  readonly interceptors: Interceptor[];
  readonly logger: Logger;
  /** Upper bound on one request body (bytes). */
  readonly readMaxBytes?: number;
}

export interface RpcServer {
  readonly port: number;
  /** Stops accepting, lets in-flight calls finish for up to graceMs, then cuts. */
  close(graceMs?: number): Promise<void>;
}

export async function startRpcServer(options: RpcServerOptions): Promise<RpcServer> {
  const { logger } = options;
  const material = loadTls(options.tls);
  const handler = connectNodeAdapter({
    routes: options.routes,
    interceptors: options.interceptors,
    contextValues: peerContextValues,
    readMaxBytes: options.readMaxBytes ?? 1024 * 1024,
  });
  const server = http2.createSecureServer(
    {
      ...material,
      requestCert: true,
      rejectUnauthorized: true,
      allowHTTP1: true,
      minVersion: "TLSv1.2",
    },
    handler,
  );
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  // Handshake failures (no cert, wrong CA) are expected noise, not crashes.
  server.on("tlsClientError", (err) => logger.debug({ err: err.message }, "tls handshake refused"));
  const stopWatching = watchTls(
    options.tls,
    (m) => {
      server.setSecureContext({ ...m });
      logger.info({ cert: options.tls.certFile }, "tls certificates reloaded");
    },
    (e) => logger.error({ err: String(e) }, "tls reload failed; keeping the previous certificates"),
  );
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    async close(graceMs = 5000) {
      stopWatching();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sessions) s.close();
      const timer = setTimeout(() => {
        for (const s of sessions) s.destroy();
      }, graceMs);
      await closed;
      clearTimeout(timer);
    },
  };
}
