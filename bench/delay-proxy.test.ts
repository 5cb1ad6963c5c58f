import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { once } from "node:events";
import { startDelayProxy } from "./delay-proxy.js";

test("the delay proxy forwards every byte in order and adds at least its delay per round trip", async () => {
  const echo = net.createServer((s) => s.pipe(s));
  echo.listen(0, "127.0.0.1");
  await once(echo, "listening");
  const proxy = await startDelayProxy({
    targetHost: "127.0.0.1",
    targetPort: (echo.address() as net.AddressInfo).port,
    delayMs: 20,
  });
  try {
    const sock = net.connect(proxy.port, "127.0.0.1");
    await once(sock, "connect");
    const chunks: Buffer[] = [];
    sock.on("data", (c: Buffer) => chunks.push(c));
    const payload = Buffer.from(Array.from({ length: 2000 }, (_, i) => `${i},`).join(""));
    const t0 = performance.now();
    // Many small writes: order must survive the per-chunk timers.
    for (let at = 0; at < payload.length; at += 97) sock.write(payload.subarray(at, at + 97));
    while (Buffer.concat(chunks).length < payload.length) await once(sock, "data");
    const elapsed = performance.now() - t0;
    assert.deepEqual(Buffer.concat(chunks), payload);
    // Timers never fire early by more than the loop's clock granularity.
    assert.ok(elapsed >= 19, `round trip took ${elapsed} ms, expected >= 20`);
    sock.destroy();
  } finally {
    await proxy.close();
    echo.close();
  }
});
