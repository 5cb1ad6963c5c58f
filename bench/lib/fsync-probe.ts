// How long one durable SQLite commit takes on this disk right now: the same
// settings the services use (WAL, synchronous=FULL), one row per transaction.
// Sampled before each benchmark cell, it separates "paygate got slower" from
// "the disk was busy with somebody else's work" (load average counts that too).
import Database from "better-sqlite3";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { percentile } from "./stats.js";

export interface FsyncProbe {
  /** Median and 90th percentile of one commit, in milliseconds. */
  readonly p50Ms: number;
  readonly p90Ms: number;
}

export function createFsyncProbe(dir = mkdtempSync(join(tmpdir(), "paygate-fsync-"))) {
  const db = new Database(join(dir, "probe.db"));
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
  const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
  return {
    sample(commits = 40): FsyncProbe {
      const ms: number[] = [];
      for (let i = 0; i < commits; i++) {
        const t0 = performance.now();
        insert.run("x");
        ms.push(performance.now() - t0);
      }
      db.exec("DELETE FROM t");
      ms.sort((a, b) => a - b);
      return {
        p50Ms: Math.round(percentile(ms, 50) * 1000) / 1000,
        p90Ms: Math.round(percentile(ms, 90) * 1000) / 1000,
      };
    },
    close(): void {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
