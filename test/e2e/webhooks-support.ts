// A merchant's webhook receiver for the end-to-end tests: a real HTTPS server
// in the test process (a test-CA certificate, which the gateway trusts through
// WEBHOOK_CA_FILE's default, its own CA) that verifies every delivery with
// @paygate/webhook-signature and records it. Each path is one endpoint with
// its own secrets; a path answers 2xx only for a verified delivery.
import https from "node:https";
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tlsFilesFor } from "@paygate/testkit";
import { verifySignature } from "@paygate/webhook-signature";

export interface Delivery {
  readonly path: string;
  readonly eventId: string;
  readonly type: string;
  readonly objectId: string;
  readonly headerEventId: string;
  readonly signature: string;
  readonly body: string;
  readonly data: Record<string, unknown>;
  readonly verified: boolean;
  /** v1 entries in the signature header. */
  readonly v1Count: number;
}

export class WebhookReceiver {
  readonly deliveries: Delivery[] = [];
  /** Per path: the secrets it verifies with. */
  readonly secrets = new Map<string, string[]>();
  private server: https.Server | undefined;
  port = 0;

  constructor(private readonly certs: string) {}

  url(path: string): string {
    return `https://127.0.0.1:${this.port}${path}`;
  }

  /** Listens (again) on the same port as before, or a free one the first time. */
  async start(): Promise<void> {
    const tls = tlsFilesFor(this.certs, "checkout");
    const server = https.createServer(
      { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) },
      (req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          const body = Buffer.concat(chunks).toString("utf8");
          const path = (req.url ?? "").split("?")[0]!;
          const signature = String(req.headers["paygate-signature"] ?? "");
          const verified = verifySignature(
            signature,
            body,
            this.secrets.get(path) ?? [],
            Math.floor(Date.now() / 1000),
          ).ok;
          let parsed: { id?: string; type?: string; object_id?: string; data?: Record<string, unknown> } = {};
          try {
            parsed = JSON.parse(body) as typeof parsed;
          } catch {
            // recorded as is; unverified bodies are answered 400 below anyway
          }
          this.deliveries.push({
            path,
            eventId: parsed.id ?? "",
            type: parsed.type ?? "",
            objectId: parsed.object_id ?? "",
            headerEventId: String(req.headers["paygate-event-id"] ?? ""),
            signature,
            body,
            data: parsed.data ?? {},
            verified,
            v1Count: signature.split(",").filter((p) => p.startsWith("v1=")).length,
          });
          res
            .writeHead(verified ? 200 : 400, { "content-type": "application/json" })
            .end(JSON.stringify(verified ? { ok: true } : { reason: "signature_mismatch" }));
        });
      },
    );
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Stops listening and drops open connections: the gateway's next attempts are refused. */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    const closed = new Promise<void>((r) => s.close(() => r()));
    s.closeAllConnections();
    await closed;
  }

  verifiedAt(path: string): Delivery[] {
    return this.deliveries.filter((d) => d.path === path && d.verified);
  }

  /** Waits (bounded) until `pred` holds for the verified deliveries at `path`; throws with what arrived if it never does. */
  async waitFor(path: string, pred: (ds: Delivery[]) => boolean, what: string, attemptsMax = 600): Promise<Delivery[]> {
    for (let i = 0; i < attemptsMax; i++) {
      const ds = this.verifiedAt(path);
      if (pred(ds)) return ds;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(
      `${what}: not delivered to ${path}; got ${JSON.stringify(this.deliveries.filter((d) => d.path === path).map((d) => [d.type, d.objectId, d.verified]))}`,
    );
  }
}

/** Polls `probe` (bounded) until it returns a value; throws `what` otherwise. */
export async function eventually<T>(
  probe: () => Promise<T | undefined> | T | undefined,
  what: string,
  attemptsMax = 600,
): Promise<T> {
  for (let i = 0; i < attemptsMax; i++) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`never happened: ${what}`);
}
