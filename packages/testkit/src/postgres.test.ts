// The private PostgreSQL cluster the multi-replica tests stand on: it starts
// on its own port (never 5432), keeps committed writes across a fast stop and
// across kill -9 (crash recovery), runs beside another one, hangs when paused,
// and leaves nothing behind.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { PostgresServer } from "./postgres.js";

describe("PostgresServer", () => {
  const servers: PostgresServer[] = [];
  after(async () => {
    for (const s of servers) await s.close();
  });

  async function started(): Promise<PostgresServer> {
    const s = await PostgresServer.start();
    servers.push(s);
    return s;
  }

  test("starts a private cluster: its own port and dir, the paygate database, durable settings", async () => {
    const startedAtMs = Date.now();
    const pg = await started();
    console.log(`PostgresServer.start() took ${Date.now() - startedAtMs} ms`);
    assert.notEqual(pg.port, 5432);
    assert.equal(pg.url, `postgres://postgres@127.0.0.1:${pg.port}/paygate`);
    assert.ok(pg.dir.startsWith(tmpdir()));
    assert.ok(pg.running && typeof pg.pid === "number");
    assert.deepEqual(
      await pg.sql(
        "SELECT current_database(), current_setting('port'), current_setting('fsync'), current_setting('synchronous_commit'), current_setting('listen_addresses')",
      ),
      [["paygate", String(pg.port), "on", "on", "127.0.0.1"]],
    );
    if (process.getuid?.() === 0)
      assert.notEqual(statSync(pg.dataDir).uid, 0, "as root, the cluster belongs to the postgres user");
    await assert.rejects(pg.sql("SELECT * FROM no_such_table"), /no_such_table/);
  });

  test("a committed write survives a fast stop and a start on the same port", async () => {
    const pg = await started();
    await pg.sql("CREATE TABLE t (k text PRIMARY KEY, v bigint NOT NULL); INSERT INTO t VALUES ('a', 1), ('b', 2)");
    const port = pg.port;
    const pid = pg.pid;
    await pg.stop();
    assert.equal(pg.running, false);
    await assert.rejects(pg.sql("SELECT 1"), "stopped means stopped");
    await pg.start();
    assert.equal(pg.port, port);
    assert.notEqual(pg.pid, pid);
    assert.deepEqual(await pg.sql("SELECT k, v FROM t ORDER BY k"), [
      ["a", "1"],
      ["b", "2"],
    ]);
  });

  test("kill -9 loses nothing committed: start crash-recovers, then it can be killed and started again", async () => {
    const pg = await started();
    await pg.sql("CREATE TABLE t (n int PRIMARY KEY)");
    for (let round = 1; round <= 2; round++) {
      await pg.sql(`INSERT INTO t VALUES (${round})`);
      const pid = pg.pid!;
      await pg.kill9();
      assert.equal(pg.running, false);
      assert.ok(existsSync(`${pg.dataDir}/postmaster.pid`), "a killed postmaster leaves its lock file behind");
      await pg.start();
      assert.notEqual(pg.pid, pid);
      assert.match(pg.log, /database system was interrupted|not properly shut down/);
      assert.deepEqual(
        await pg.sql("SELECT n FROM t ORDER BY n"),
        Array.from({ length: round }, (_, i) => [String(i + 1)]),
      );
    }
  });

  test("a postmaster killed from outside leaves its frozen backends behind; start() clears them and recovers", async () => {
    const pg = await started();
    await pg.sql("CREATE TABLE t (n int); INSERT INTO t VALUES (7)");
    const waiting = pg.sql("SELECT pg_sleep(60)").catch((e: Error) => e); // a backend that is busy
    await new Promise((r) => setTimeout(r, 200));
    pg.pause(); // frozen backends cannot notice that their postmaster died
    process.kill(pg.pid!, "SIGKILL");
    for (let i = 0; i < 200 && pg.running; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(pg.running, false);
    await pg.start();
    assert.deepEqual(await pg.sql("SELECT n FROM t"), [["7"]]);
    assert.ok((await waiting) instanceof Error, "the busy backend's connection was lost");
  });

  test("pause freezes the server (a query times out), resume lets it answer again", async () => {
    const pg = await started();
    pg.pause();
    const probe = pg.sql("SELECT 42");
    const outcome = await Promise.race([
      probe.then(
        () => "answered",
        () => "failed",
      ),
      new Promise((r) => setTimeout(() => r("hung"), 1_000)),
    ]);
    assert.equal(outcome, "hung");
    pg.resume();
    assert.deepEqual(await probe, [["42"]], "the query waiting on the frozen server completes");
  });

  test("two servers run at once on different ports with separate data", async () => {
    const [a, b] = await Promise.all([PostgresServer.start(), PostgresServer.start()]);
    servers.push(a, b);
    assert.notEqual(a.port, b.port);
    assert.notEqual(a.dir, b.dir);
    await a.sql("CREATE TABLE only_in_a (x int)");
    await assert.rejects(b.sql("SELECT * FROM only_in_a"), /only_in_a/);
    assert.deepEqual(await b.sql("SELECT 1"), [["1"]]);
  });

  test("a test process killed without close() takes its postmaster with it", async () => {
    const script = `import { PostgresServer } from ${JSON.stringify(new URL("./postgres.ts", import.meta.url).pathname)};
      const s = await PostgresServer.start();
      console.log(JSON.stringify({ pid: s.pid, dir: s.dir }));
      setInterval(() => {}, 60_000);`;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const [line] = (await once(child.stdout!.setEncoding("utf8"), "data")) as [string];
    const { pid, dir } = JSON.parse(line) as { pid: number; dir: string };
    assert.ok(existsSync(`/proc/${pid}`));
    child.kill("SIGKILL");
    await once(child, "exit");
    try {
      let gone = false;
      for (let i = 0; i < 200 && !gone; i++) {
        gone = !existsSync(`/proc/${pid}`) || /\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
        if (!gone) await new Promise((r) => setTimeout(r, 25));
      }
      assert.ok(gone, "the postmaster died with its parent");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("close stops the server and removes its dir", async () => {
    const pg = await PostgresServer.start();
    const { dir, pid } = pg;
    await pg.close();
    assert.equal(existsSync(dir), false);
    assert.equal(pg.running, false);
    assert.equal(existsSync(`/proc/${pid}`), false, "the postmaster is gone (and reaped)");
  });
});
