// The HTTPS sender against a real local TLS server (the test CA's
// certificates): what is sent, what counts as delivered, what is never done
// (follow a redirect, trust a stranger's CA, connect to loopback unless allowed).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { rogueCerts, testCerts, tlsFilesFor } from "@paygate/testkit";
import { createHttpsWebhookSender } from "./webhook-sender.js";

interface Seen {
  readonly path: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

const seen: Seen[] = [];
let server: Server;
let rogue: Server;
let port = 0;
let roguePort = 0;
let hang: (() => void)[] = [];

function serve(files: { certFile: string; keyFile: string }): Server {
  return createServer({ cert: readFileSync(files.certFile), key: readFileSync(files.keyFile) }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      seen.push({ path: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      if (req.url === "/ok") return void res.writeHead(204).end();
      if (req.url === "/redirect") return void res.writeHead(302, { location: "https://127.0.0.1:1/elsewhere" }).end();
      if (req.url === "/hang") return void hang.push(() => res.end());
      res.writeHead(500, { "content-type": "text/plain" }).end(`oops\x1b[31m ${"x".repeat(20_000)}`);
    });
  });
}

async function listen(s: Server): Promise<number> {
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return (s.address() as AddressInfo).port;
}

before(async () => {
  server = serve(tlsFilesFor(testCerts(), "checkout"));
  rogue = serve(tlsFilesFor(rogueCerts(), "checkout"));
  port = await listen(server);
  roguePort = await listen(rogue);
});

after(() => {
  for (const h of hang) h();
  server.close();
  rogue.close();
});

const caFile = () => tlsFilesFor(testCerts(), "checkout").caFile;
const request = (url: string) => ({
  url,
  body: '{"id":"evt_1"}',
  headers: { "Content-Type": "application/json", "Paygate-Event-Id": "evt_1" },
});

test("a 2xx is delivered; the body and headers arrive as given", async () => {
  const sender = createHttpsWebhookSender({ timeoutMs: 5_000, allowLoopback: true, caFile: caFile() });
  assert.deepEqual(await sender.send(request(`https://127.0.0.1:${port}/ok`)), { statusCode: 204, error: "" });
  const last = seen[seen.length - 1]!;
  assert.equal(last.body, '{"id":"evt_1"}');
  assert.equal(last.headers["paygate-event-id"], "evt_1");
  assert.equal(last.headers["content-length"], "14");
  sender.close();
});

test("a non-2xx answer: its status and the first bytes of the answer, printable; a redirect is not followed", async () => {
  const sender = createHttpsWebhookSender({ timeoutMs: 5_000, allowLoopback: true, caFile: caFile() });
  const failed = await sender.send(request(`https://localhost:${port}/fail`));
  assert.equal(failed.statusCode, 500);
  assert.match(failed.error, /^HTTP 500: oops \[31m x+$/);
  assert.ok(failed.error.length <= 300, String(failed.error.length));
  const before = seen.length;
  const redirected = await sender.send(request(`https://127.0.0.1:${port}/redirect`));
  assert.equal(redirected.statusCode, 302);
  assert.match(redirected.error, /redirects are not followed/);
  assert.equal(seen.length, before + 1, "nothing sent to the redirect's target");
  sender.close();
});

test("no answer within the timeout, an unknown CA, a loopback address when loopback is not allowed: not delivered, status 0", async () => {
  const sender = createHttpsWebhookSender({ timeoutMs: 300, allowLoopback: true, caFile: caFile() });
  assert.deepEqual(await sender.send(request(`https://127.0.0.1:${port}/hang`)), {
    statusCode: 0,
    error: "no answer within 300 ms",
  });
  const strange = await sender.send(request(`https://localhost:${roguePort}/ok`));
  assert.equal(strange.statusCode, 0);
  assert.match(strange.error, /certificate|self.signed|issuer/i);
  sender.close();
  const guarded = createHttpsWebhookSender({ timeoutMs: 5_000, allowLoopback: false, caFile: caFile() });
  const before = seen.length;
  const refused = await guarded.send(request(`https://localhost:${port}/ok`));
  assert.equal(refused.statusCode, 0);
  assert.match(refused.error, /^EWEBHOOKADDR: localhost resolves to (127\.0\.0\.1|::1), which webhooks may not call$/);
  assert.equal(seen.length, before, "never connected");
  guarded.close();
});
