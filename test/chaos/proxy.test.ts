// The chaos proxy must really break links, or a chaos run proves nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { once } from "node:events";
import { startProxy } from "./proxy.js";

async function echoServer(): Promise<net.Server> {
  const s = net.createServer((c) => {
    c.on("error", () => {}); // the proxy resets links on purpose
    c.pipe(c);
  });
  s.listen(0, "127.0.0.1");
  await once(s, "listening");
  return s;
}

function roundTrip(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, "127.0.0.1", () => c.write(text));
    let got = "";
    c.setEncoding("utf8");
    c.on("data", (d: string) => {
      got += d;
      if (got.length >= text.length) {
        c.end();
        resolve(got);
      }
    });
    c.on("error", reject);
    c.on("close", () =>
      got.length < text.length ? reject(new Error(`closed after ${JSON.stringify(got)}`)) : undefined,
    );
  });
}

test("up passes bytes; cut refuses; delay keeps order; blackhole swallows; heal restores", async () => {
  const echo = await echoServer();
  const proxy = await startProxy("test", { host: "127.0.0.1", port: (echo.address() as net.AddressInfo).port });
  try {
    assert.equal(await roundTrip(proxy.port, "hello"), "hello");
    proxy.cut();
    await assert.rejects(roundTrip(proxy.port, "x"));
    proxy.heal();
    proxy.delay(50);
    // Many chunks, each delayed: they must come back whole and in order.
    const text = Array.from({ length: 200 }, (_, i) => `${i},`).join("");
    assert.equal(await roundTrip(proxy.port, text), text);
    proxy.heal();
    proxy.blackhole();
    const c = net.connect(proxy.port, "127.0.0.1");
    await once(c, "connect");
    let received = "";
    c.on("data", (d) => (received += String(d)));
    c.write("into the void");
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(received, "", "a blackholed link delivered bytes");
    c.destroy();
    proxy.heal();
    assert.equal(await roundTrip(proxy.port, "back"), "back");
  } finally {
    await proxy.close();
    echo.close();
  }
});
