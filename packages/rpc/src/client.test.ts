// A peer (or the network) that garbles bytes on an mTLS connection must fail
// the calls on it, not kill the calling process: connect-node 2.1.2 let a
// second TLS error of a session escape as an uncaught exception, which took
// the gateway down in the chaos runs. node:test fails this test on any
// uncaught exception.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { once } from "node:events";
import { createClient } from "@connectrpc/connect";
import { AuthService } from "@paygate/proto/gateway";
import { testCerts, tlsFilesFor } from "@paygate/testkit";
import { createMtlsTransport } from "./client.js";
import { createLogger } from "./logger.js";
import { startRpcServer } from "./server.js";

test("garbled TLS records fail the calls and leave the process running", async () => {
  const certs = testCerts();
  const server = await startRpcServer({
    host: "127.0.0.1",
    port: 0,
    tls: tlsFilesFor(certs, "gateway"),
    routes: (router) => router.service(AuthService, { login: () => ({ sessionToken: "t" }), logout: () => ({}) }),
    interceptors: [],
    logger: createLogger("client-test", "silent"),
  });
  let garble = false;
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((c) => {
    const up = net.connect(server.port, "127.0.0.1");
    for (const s of [c, up]) {
      sockets.add(s);
      s.on("error", () => {});
    }
    c.pipe(up);
    up.on("data", (d: Buffer) => {
      if (garble && d.length > 8) {
        const copy = Buffer.from(d);
        copy[copy.length - 3]! ^= 0xff;
        d = copy;
      }
      c.write(d);
    });
  });
  proxy.listen(0, "127.0.0.1");
  await once(proxy, "listening");
  const client = createClient(
    AuthService,
    createMtlsTransport({
      baseUrl: `https://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`,
      tls: tlsFilesFor(certs, "paycli"),
      timeoutMs: 3000,
      reload: false,
    }),
  );
  // Client and server share this process and connect-node unrefs idle
  // sessions: keep the event loop alive while a call waits for its answer.
  const keepAlive = setInterval(() => {}, 1000);
  try {
    assert.equal((await client.login({})).sessionToken, "t");
    garble = true;
    for (let i = 0; i < 5; i++) await assert.rejects(client.login({}));
    garble = false;
    // A fresh session works again, and no stray session error was thrown meanwhile.
    assert.equal((await client.login({})).sessionToken, "t");
    await new Promise((r) => setTimeout(r, 200));
  } finally {
    clearInterval(keepAlive);
    for (const s of sockets) s.destroy();
    proxy.close();
    // A server-side TLS socket whose records were garbled never becomes an
    // HTTP/2 session, so close() may wait on it forever: do not wait long.
    await Promise.race([server.close(100), new Promise((r) => setTimeout(r, 1000))]);
  }
});
