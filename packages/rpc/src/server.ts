// One way to serve Connect over mTLS: HTTP/2 with HTTP/1.1 allowed (so curl
// can post Connect JSON), client certificates required and verified against
// the paygate CA, rotated certificate files picked up without a restart.
import http2 from "node:http2";
import { fromJsonString, type DescMessage, type DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { listen } from "@paygate/telemetry";
import { rejection } from "./errors.js";
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
    routes: (router) => options.routes(strictJsonRouter(router)),
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
  const port = await listen(server, options.port, options.host);
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

// ---- unknown fields in JSON requests

/** "cannot decode message paygate.x.v1.Y from JSON: key \"bogus\" is unknown" (@bufbuild/protobuf's wording). */
const UNKNOWN_KEY = /^cannot decode (?:message )?(\S+) from JSON: key "(.*)" is unknown$/;

/**
 * JSON options for one method's requests that refuse unknown keys with a
 * typed invalid_argument naming the key. connect-es parses a unary body
 * before any interceptor runs and answers a parse error with a bare
 * InvalidArgument; the text decoder is the one hook that runs during that
 * parse, and a ConnectError thrown from it reaches the caller unchanged. So the
 * decoder parses strictly (a second parse, JSON requests only) and otherwise
 * leaves the parse to connect-es as before. Binary requests are untouched:
 * skipping unknown fields is how protobuf lets schemas evolve.
 */
function strictJsonOptions(input: DescMessage) {
  const utf8 = new TextDecoder();
  return {
    textDecoder: {
      decode(bytes?: Uint8Array): string {
        const text = utf8.decode(bytes);
        try {
          fromJsonString(input, text, { ignoreUnknownFields: false });
        } catch (e) {
          const m = e instanceof Error ? UNKNOWN_KEY.exec(e.message) : null;
          if (m) throw rejection("invalid_argument", `unknown field "${m[2]}" in ${m[1]}`, { field: m[2] ?? "" });
          // Anything else (bad JSON, a wrong type) connect-es reports in its own parse.
        }
        return text;
      },
    },
  };
}

/**
 * The router handed to a service's routes: each method registered on its own
 * (router.rpc), so each gets JSON options that know its request type.
 * Methods a service leaves out answer Unimplemented, as router.service does.
 */
function strictJsonRouter(router: ConnectRouter): ConnectRouter {
  type Options = Parameters<ConnectRouter["rpc"]>[2];
  const register = (method: DescMethod, impl: unknown, options: Options) =>
    router.rpc(method, impl as never, {
      ...options,
      jsonOptions: { ...options?.jsonOptions, ...strictJsonOptions(method.input) },
    });
  const strict: ConnectRouter = {
    handlers: router.handlers,
    service(service, implementation, options) {
      for (const method of service.methods) {
        const fn = (implementation as Record<string, unknown>)[method.localName];
        const impl =
          typeof fn === "function"
            ? fn.bind(implementation)
            : () => {
                throw new ConnectError(`${service.typeName}.${method.name} is not implemented`, Code.Unimplemented);
              };
        register(method, impl, options);
      }
      return strict;
    },
    rpc(method, impl, options) {
      register(method, impl, options);
      return strict;
    },
  };
  return strict;
}
