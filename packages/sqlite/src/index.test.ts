import assert from "node:assert/strict";
import { test } from "node:test";
import Database from "better-sqlite3";
import { applyMigrations } from "./index.js";

const MIGRATIONS = ["CREATE TABLE a (x INTEGER)", "CREATE TABLE b (y INTEGER)"];

test("pending migrations run in order, once; the version follows", () => {
  const db = new Database(":memory:");
  applyMigrations(db, MIGRATIONS.slice(0, 1), "t.db");
  assert.equal(db.pragma("user_version", { simple: true }), 1);
  applyMigrations(db, MIGRATIONS, "t.db");
  applyMigrations(db, MIGRATIONS, "t.db");
  assert.equal(db.pragma("user_version", { simple: true }), 2);
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all();
  assert.deepEqual(tables, ["a", "b"]);
});

test("a failing migration leaves the file at the version it had", () => {
  const db = new Database(":memory:");
  assert.throws(() => applyMigrations(db, [...MIGRATIONS, "CREATE TABLE a (z INTEGER)"], "t.db"), /already exists/);
  assert.equal(db.pragma("user_version", { simple: true }), 0);
  assert.equal(db.prepare("SELECT count(*) FROM sqlite_master").pluck().get(), 0);
});

test("a file newer than the build is refused, untouched", () => {
  const db = new Database(":memory:");
  db.pragma("user_version = 3");
  assert.throws(() => applyMigrations(db, MIGRATIONS, "t.db"), /t\.db schema v3 is newer than this build \(v2\)/);
});
