// The checkout's second listener: the gateway's webhooks, over HTTPS (server
// authentication only: the gateway proves itself by the signature, not by a
// client certificate, as it would to any merchant's server).
//
//   POST /webhooks/paygate   verify -> dedup by event id -> update orders
//     200 {"status":"stored"|"duplicate"}   delivered (the gateway stops retrying)
//     400 {"reason": ...}                   bad signature, timestamp or body (the gateway retries; a
//                                           forged or replayed request never gets in)
//     413 {"reason":"body_too_large"}
//     503 {"reason":"store_unavailable"}    not stored: the gateway retries later
import https from "node:https";
import type http from "node:http";
import { readFileSync } from "node:fs";
import type { Logger } from "@paygate/rpc";
import { watchTls } from "@paygate/rpc";
import { SIGNATURE_HEADER } from "@paygate/webhook-signature";
import type { WebhookReceiver } from "./domain/webhooks.js";

export const WEBHOOK_PATH = "/webhooks/paygate";

export interface WebhookServerDeps {
  readonly receiver: WebhookReceiver;
  readonly certFile: string;
  readonly keyFile: string;
  readonly bodyMaxBytes: number;
  readonly logger: Logger;
}

class TooLarge extends Error {}

async function rawBody(req: http.IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"] ?? "0");
  if (declared > maxBytes) throw new TooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new TooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

export interface WebhookServer {
  readonly server: https.Server;
  /** Stops watching the certificate files. */
  stopWatching(): void;
}

export function createWebhookServer(deps: WebhookServerDeps): WebhookServer {
  const log = deps.logger;
  const server = https.createServer(
    { cert: readFileSync(deps.certFile), key: readFileSync(deps.keyFile), minVersion: "TLSv1.2" },
    (req, res) => {
      const started = performance.now();
      const facts: Record<string, unknown> = {
        eventId: req.headers["paygate-event-id"],
        eventType: req.headers["paygate-event-type"],
      };
      const reply = (status: number, json: unknown) => {
        if (res.headersSent) return;
        const body = JSON.stringify(json);
        res.writeHead(status, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
          "cache-control": "no-store",
        });
        res.end(body);
      };
      handle(req, facts)
        .then(
          ([status, json]) => {
            reply(status, json);
            return status;
          },
          (e: unknown) => {
            if (e instanceof TooLarge) {
              // The rest is discarded, not buffered (requestTimeout bounds how long), and the connection not reused.
              res.setHeader("connection", "close");
              reply(413, { reason: "body_too_large" });
              req.resume();
              return 413;
            }
            // Not stored (disk full, I/O error): the gateway keeps the delivery and retries.
            log.error(
              { err: e instanceof Error ? { message: e.message, stack: e.stack } : String(e), ...facts },
              "webhook not stored",
            );
            reply(503, { reason: "store_unavailable" });
            return 503;
          },
        )
        .then((status) =>
          log.info(
            {
              method: req.method,
              path: (req.url ?? "").split("?")[0],
              status,
              ...facts,
              durationMs: Math.round((performance.now() - started) * 10) / 10,
            },
            "webhook",
          ),
        );
    },
  );

  async function handle(req: http.IncomingMessage, facts: Record<string, unknown>): Promise<[number, unknown]> {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== WEBHOOK_PATH) return [404, { reason: "not_found" }];
    if (req.method !== "POST") return [405, { reason: "method_not_allowed" }];
    const bytes = await rawBody(req, deps.bodyMaxBytes);
    let body: string;
    try {
      body = utf8.decode(bytes);
    } catch {
      facts.reason = "malformed_event";
      return [400, { reason: "malformed_event", message: "the body is not UTF-8" }];
    }
    const signature = req.headers[SIGNATURE_HEADER.toLowerCase()];
    const outcome = deps.receiver.receive(Array.isArray(signature) ? signature.join(",") : signature, body);
    switch (outcome.kind) {
      case "refused":
        facts.reason = outcome.reason;
        return [400, { reason: outcome.reason, message: outcome.message }];
      case "duplicate":
        facts.outcome = "duplicate";
        return [200, { status: "duplicate", event_id: outcome.eventId }];
      case "stored":
        facts.outcome = "stored";
        facts.ordersChanged = outcome.ordersChanged;
        return [200, { status: "stored", event_id: outcome.eventId }];
    }
  }

  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  // A rotated certificate (cert-manager renews it in place) is served to new connections without a restart.
  const stopWatching = watchTls(
    { caFile: deps.certFile, certFile: deps.certFile, keyFile: deps.keyFile },
    (m) => {
      server.setSecureContext({ cert: m.cert, key: m.key, minVersion: "TLSv1.2" });
      log.info({ cert: deps.certFile }, "webhook receiver certificate reloaded");
    },
    (e) => log.error({ err: String(e) }, "webhook receiver certificate reload failed; keeping the previous one"),
  );
  return { server, stopWatching };
}
