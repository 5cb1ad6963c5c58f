// A raw HTTP/2 client for sending bytes no generated client would send:
// mTLS, one session per identity, the whole response (headers, body,
// trailers) or what went wrong at the transport.
import http2, { type ClientHttp2Session, type IncomingHttpHeaders } from "node:http2";
import { readFileSync } from "node:fs";
import type { TlsFiles } from "@paygate/rpc";

export interface RawResponse {
  /** The stream was still open at the deadline after the response started (a follower). */
  readonly open?: boolean;
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  readonly trailers: IncomingHttpHeaders;
}

export type RawResult =
  | { readonly ok: true; readonly res: RawResponse }
  | { readonly ok: false; readonly error: string };

export interface RawClient {
  post(path: string, headers: Record<string, string>, body: Uint8Array, timeoutMs?: number): Promise<RawResult>;
  /** Sessions the server tore down (GOAWAY / ENHANCE_YOUR_CALM) and we replaced. */
  readonly sessionResets: number;
  close(): void;
}

/** Bytes read from one response at most (a fuzz answer is small; a runaway one is a finding). */
const RESPONSE_BYTES_MAX = 4 * 1024 * 1024;

export function createRawClient(baseUrl: string, tls: TlsFiles): RawClient {
  const ca = readFileSync(tls.caFile);
  const cert = readFileSync(tls.certFile);
  const key = readFileSync(tls.keyFile);
  let session: ClientHttp2Session | undefined;

  function connect(): ClientHttp2Session {
    if (session && !session.closed && !session.destroyed) return session;
    const s = http2.connect(baseUrl, { ca, cert, key });
    s.on("error", () => {}); // surfaced per request
    session = s;
    return s;
  }

  let sessionResets = 0;

  // nghttp2's flood protection: a client that keeps sending DATA on streams the
  // server already answered (bodies over readMaxBytes) gets its whole session
  // refused (rst code 11, ENHANCE_YOUR_CALM). That is the server defending
  // itself, not a failed request: start a new session and send it again, once.
  async function post(
    path: string,
    headers: Record<string, string>,
    body: Uint8Array,
    timeoutMs = 20_000,
  ): Promise<RawResult> {
    const first = await once(path, headers, body, timeoutMs);
    if (first.ok || !/rst code 11\)|GOAWAY|session/i.test(first.error)) return first;
    sessionResets++;
    session?.destroy();
    session = undefined;
    return once(path, headers, body, timeoutMs);
  }

  function once(
    path: string,
    headers: Record<string, string>,
    body: Uint8Array,
    timeoutMs: number,
  ): Promise<RawResult> {
    return new Promise<RawResult>((resolve) => {
      let settled = false;
      const done = (r: RawResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(r);
      };
      const timer = setTimeout(() => {
        req.close(http2.constants.NGHTTP2_CANCEL);
        if (status !== 0)
          done({ ok: true, res: { open: true, status, headers: resHeaders, body: Buffer.concat(chunks), trailers } });
        else done({ ok: false, error: `no answer within ${timeoutMs} ms` });
      }, timeoutMs);
      let req: http2.ClientHttp2Stream;
      try {
        req = connect().request({ ":method": "POST", ":path": path, ...headers });
      } catch (e) {
        clearTimeout(timer);
        return resolve({
          ok: false,
          error: `session refused a new stream: ${e instanceof Error ? e.message : String(e)}`,
        });
      }
      let status = 0;
      let resHeaders: IncomingHttpHeaders = {};
      let trailers: IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      let size = 0;
      req.on("response", (h) => {
        status = Number(h[":status"]);
        resHeaders = h;
      });
      req.on("trailers", (t) => (trailers = t));
      req.on("data", (c: Buffer) => {
        size += c.length;
        if (size <= RESPONSE_BYTES_MAX) chunks.push(c);
      });
      req.on("end", () => {
        if (status === 0)
          return done({ ok: false, error: `stream ended without response headers (rst code ${req.rstCode})` });
        done({ ok: true, res: { status, headers: resHeaders, body: Buffer.concat(chunks), trailers } });
      });
      req.on("error", (e: Error) => done({ ok: false, error: `stream error: ${e.message} (rst code ${req.rstCode})` }));
      req.end(Buffer.from(body));
    });
  }

  return {
    post,
    get sessionResets() {
      return sessionResets;
    },
    close() {
      session?.close();
    },
  };
}
