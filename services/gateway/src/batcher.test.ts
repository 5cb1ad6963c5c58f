import { test } from "node:test";
import assert from "node:assert/strict";
import { createBatcher } from "./batcher.js";

function recorder(
  opts: { itemsMax?: number; inflightMax?: number; fail?: (items: readonly number[]) => boolean } = {},
) {
  const sent: number[][] = [];
  const release: Array<() => void> = [];
  const batcher = createBatcher<number, string>({
    itemsMax: opts.itemsMax ?? 100,
    inflightMax: opts.inflightMax ?? 1,
    send: (items) => {
      sent.push([...items]);
      return new Promise((resolve, reject) => {
        release.push(() =>
          opts.fail?.(items) ? reject(new Error("bank down")) : resolve(items.map((i) => `done ${i}`)),
        );
      });
    },
  });
  return { batcher, sent, release };
}

const tick = () => new Promise((r) => setImmediate(r));

test("items submitted in one tick leave as one batch; answers go back in order", async () => {
  const { batcher, sent, release } = recorder();
  const answers = [1, 2, 3].map((i) => batcher.submit(i));
  await tick();
  assert.deepEqual(sent, [[1, 2, 3]]);
  release.shift()!();
  assert.deepEqual(await Promise.all(answers), ["done 1", "done 2", "done 3"]);
});

test("while inflightMax batches are on the wire, new items wait and then leave together", async () => {
  const { batcher, sent, release } = recorder({ inflightMax: 1 });
  const first = batcher.submit(1);
  await tick();
  const later = [2, 3, 4].map((i) => batcher.submit(i));
  await tick();
  await tick();
  assert.deepEqual(sent, [[1]], "nothing leaves while the first batch is out");
  assert.equal(batcher.queued, 3);
  release.shift()!();
  assert.equal(await first, "done 1");
  await tick();
  assert.deepEqual(sent, [[1], [2, 3, 4]]);
  release.shift()!();
  assert.deepEqual(await Promise.all(later), ["done 2", "done 3", "done 4"]);
});

test("itemsMax splits a burst; inflightMax lets that many go at once", async () => {
  const { batcher, sent, release } = recorder({ itemsMax: 2, inflightMax: 2 });
  const all = [1, 2, 3, 4, 5].map((i) => batcher.submit(i));
  await tick();
  assert.deepEqual(sent, [
    [1, 2],
    [3, 4],
  ]);
  release.shift()!();
  await tick();
  await tick();
  assert.deepEqual(sent, [[1, 2], [3, 4], [5]]);
  while (release.length > 0) release.shift()!();
  await tick();
  while (release.length > 0) release.shift()!();
  assert.deepEqual(await Promise.all(all), ["done 1", "done 2", "done 3", "done 4", "done 5"]);
});

test("a failed batch fails each of its items, and only them", async () => {
  const { batcher, release } = recorder({ inflightMax: 2, itemsMax: 1, fail: (items) => items.includes(1) });
  const one = batcher.submit(1);
  const two = batcher.submit(2);
  await tick();
  release.shift()!();
  release.shift()!();
  await assert.rejects(one, /bank down/);
  assert.equal(await two, "done 2");
});

test("an aborted item never leaves if queued, and is answered at once if on the wire", async () => {
  const { batcher, sent, release } = recorder({ inflightMax: 1 });
  const early = new AbortController();
  const onWire = batcher.submit(1, early.signal);
  await tick();
  early.abort();
  await assert.rejects(onWire, { name: "AbortError" });
  const queuedCtl = new AbortController();
  const dropped = batcher.submit(2, queuedCtl.signal);
  const kept = batcher.submit(3);
  queuedCtl.abort();
  await assert.rejects(dropped, { name: "AbortError" });
  release.shift()!(); // the first batch's late answer for item 1 is ignored
  await tick();
  await tick();
  assert.deepEqual(sent, [[1], [3]], "item 2 was never sent");
  release.shift()!();
  assert.equal(await kept, "done 3");
  await assert.rejects(batcher.submit(4, AbortSignal.abort()), { name: "AbortError" });
});

test("a batch answered with the wrong number of results fails all of its items", async () => {
  const batcher = createBatcher<number, number>({ itemsMax: 10, inflightMax: 1, send: async () => [1] });
  const a = batcher.submit(1);
  const b = batcher.submit(2);
  await assert.rejects(a, /answered with 1 results/);
  await assert.rejects(b, /answered with 1 results/);
});
