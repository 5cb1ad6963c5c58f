// Readiness on the ops port, as the kubelet sees it: /readyz is 200 once the
// gateway has recovered and listens, and 503 as soon as SIGTERM arrives, while
// the process is still draining in-flight work (so the Service stops sending
// new calls before the pod goes away). /healthz stays 200 throughout.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { PaymentService } from "@paygate/proto/gateway";
import { Stack } from "@paygate/testkit";

let stack: Stack;

before(async () => {
  // A long prepare timeout: a transfer to a frozen bank stays in flight for the whole shutdown grace.
  stack = await Stack.start({ prepareTimeoutMs: 60_000 });
});

after(async () => {
  await stack?.close();
});

async function status(port: number, path: string): Promise<number | string> {
  try {
    return (await fetch(`http://127.0.0.1:${port}${path}`)).status;
  } catch (e) {
    return (e as Error & { cause?: { code?: string } }).cause?.code ?? String(e);
  }
}

async function metric(port: number, name: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

test("gateway /readyz: 200 when serving, 503 while draining after SIGTERM; /healthz 200 until the port closes", async () => {
  const port = stack.gateway.metricsPort;
  assert.equal(await status(port, "/readyz"), 200);
  assert.equal(await status(port, "/healthz"), 200);

  // A transfer stuck in prepare at a frozen bank keeps the RPC server draining.
  const alice = stack.client(PaymentService, await stack.login("alice"));
  stack.bank("bank-b").freeze();
  const inFlight = alice
    .transfer({
      idempotencyKey: randomUUID(),
      fromAccountId: "bank-a/1001",
      toAccountId: "bank-b/2001",
      amountMinor: 100n,
      currency: "USD",
    })
    .catch((e: unknown) => e);
  let started = false;
  for (let i = 0; i < 100 && !started; i++) {
    started = (await metric(port, "paygate_2pc_in_doubt_transactions")) === 1;
    if (!started) await sleep(100);
  }
  assert.ok(started, "the transfer never reached prepare");

  const stopped = stack.gateway.stop();
  // SIGTERM is handled asynchronously: poll (bounded) until readiness drops. The
  // drain lasts the 5 s shutdown grace, so the port is still open when it does.
  let ready: number | string = 200;
  for (let i = 0; i < 200 && ready === 200; i++) {
    ready = await status(port, "/readyz");
    if (ready === 200) await sleep(10);
  }
  assert.equal(ready, 503, "not ready while shutting down");
  assert.equal(await status(port, "/healthz"), 200, "alive while draining");

  stack.bank("bank-b").thaw();
  const exit = await stopped;
  assert.equal(exit.code, 0, "clean exit after the drain");
  await inFlight;
  assert.equal(await status(port, "/readyz"), "ECONNREFUSED", "the ops port closes with the process");
});
