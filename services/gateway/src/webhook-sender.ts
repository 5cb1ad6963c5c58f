// The dispatcher's WebhookSender over node:https: one POST per attempt,
// bounded in time end to end (DNS, connect, TLS, the answer), redirects never
// followed (a 3xx is a failed attempt like any non-2xx), at most a few KiB of
// the answer read for the attempt's error text. Endpoint certificates are
// checked against the system roots plus WEBHOOK_CA_FILE (by default the
// gateway's own CA, so `make up`'s dev certificates work).
//
// The URL was checked against the allow-list already; here the name's DNS
// answer is checked too, at connect time: a host that resolves to loopback
// (unless WEBHOOK_ALLOW_LOOPBACK) or to a link-local address (cloud metadata)
// is refused, so a name cannot be re-pointed at the gateway's own machine
// after it was registered (DNS rebinding). Nothing here logs: the attempt's
// outcome (never a header, so never a signature or secret) goes back to the
// dispatcher.
import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions, type LookupOneOptions } from "node:dns";
import { existsSync, readFileSync } from "node:fs";
import { Agent, request } from "node:https";
import { rootCertificates } from "node:tls";
import type { WebhookAnswer, WebhookRequest, WebhookSender } from "./domain/webhook-dispatcher.js";
import { isLinkLocalAddress, isLoopbackHost } from "./domain/webhook-urls.js";

/** The answer's body read for the error text; the rest is dropped unread. */
export const ANSWER_BYTES_MAX = 4096;
const ERROR_TEXT_MAX = 300;

export interface WebhookSenderOptions {
  readonly timeoutMs: number;
  readonly allowLoopback: boolean;
  /** PEM roots trusted next to the system's; "" or a missing file = the system's only. */
  readonly caFile: string;
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** A refusal of the resolved address, with an errno-like code so it reads like any connect failure. */
function refused(message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code: "EWEBHOOKADDR" });
}

/** dns.lookup, refusing answers this gateway must not connect to. */
export function guardedLookup(allowLoopback: boolean) {
  return (hostname: string, options: LookupOneOptions | LookupAllOptions, callback: LookupCallback): void => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      const list = addresses;
      const bad = list.find((a) => isLinkLocalAddress(a.address) || (!allowLoopback && isLoopbackHost(a.address)));
      if (bad) return callback(refused(`${hostname} resolves to ${bad.address}, which webhooks may not call`), []);
      if (list.length === 0) return callback(refused(`${hostname} has no address`), []);
      if ((options as LookupAllOptions).all) return callback(null, list);
      return callback(null, list[0]!.address, list[0]!.family);
    });
  };
}

/** Printable, short: what a receiver said is shown in the delivery log and paycli. */
function printable(text: string): string {
  return text
    .replace(/[\x00-\x1f\x7f]+/g, " ")
    .trim()
    .slice(0, ERROR_TEXT_MAX);
}

function describe(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  const code = typeof err?.code === "string" ? `${err.code}: ` : "";
  return printable(`${code}${err instanceof Error ? err.message : String(e)}`);
}

export function createHttpsWebhookSender(o: WebhookSenderOptions): WebhookSender & { close(): void } {
  const extra = o.caFile !== "" && existsSync(o.caFile) ? [readFileSync(o.caFile, "utf8")] : [];
  const agent = new Agent({ keepAlive: false, ca: [...rootCertificates, ...extra], maxCachedSessions: 64 });
  const lookup = guardedLookup(o.allowLoopback);

  function send(r: WebhookRequest): Promise<WebhookAnswer> {
    return new Promise<WebhookAnswer>((resolve) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const finish = (a: WebhookAnswer) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(a);
      };
      const body = Buffer.from(r.body, "utf8");
      let req: ReturnType<typeof request>;
      try {
        req = request(r.url, {
          method: "POST",
          agent,
          lookup: lookup as never,
          headers: { ...r.headers, "Content-Length": String(body.length) },
        });
      } catch (e) {
        finish({ statusCode: 0, error: describe(e) });
        return;
      }
      timer = setTimeout(() => {
        finish({ statusCode: 0, error: `no answer within ${o.timeoutMs} ms` });
        req.destroy();
      }, o.timeoutMs);
      req.on("error", (e) => finish({ statusCode: 0, error: describe(e) }));
      req.on("response", (res) => {
        const status = res.statusCode ?? 0;
        const chunks: Buffer[] = [];
        let size = 0;
        const done = () => {
          const text = printable(Buffer.concat(chunks).subarray(0, ANSWER_BYTES_MAX).toString("utf8"));
          if (status >= 200 && status <= 299) finish({ statusCode: status, error: "" });
          else if (status >= 300 && status <= 399)
            finish({
              statusCode: status,
              error: `HTTP ${status}: redirects are not followed${res.headers.location ? ` (to ${printable(String(res.headers.location)).slice(0, 120)})` : ""}`,
            });
          else
            finish({
              statusCode: status,
              error: (text === "" ? `HTTP ${status}` : `HTTP ${status}: ${text}`).slice(0, ERROR_TEXT_MAX),
            });
          res.destroy();
        };
        res.on("data", (chunk: Buffer) => {
          chunks.push(chunk);
          size += chunk.length;
          if (size >= ANSWER_BYTES_MAX) done();
        });
        res.on("end", done);
        res.on("error", done);
        res.on("close", done);
      });
      req.end(body);
    });
  }

  return { send, close: () => agent.destroy() };
}
