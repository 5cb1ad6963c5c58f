// What every service's SQLite file shares: numbered migrations under
// `user_version` (docs/DESIGN.md §10.3). Migration i (0-based) takes the file
// from version i to i + 1; all pending ones run in one transaction, so a crash
// mid-way leaves the file at the version it had. A file newer than the build
// is refused: the previous release must not write a schema it does not know.

/** The part of a better-sqlite3 Database the migrations use. */
export interface MigratableDb {
  pragma(source: string, options: { simple: true }): unknown;
  pragma(source: string): unknown;
  exec(source: string): unknown;
  transaction(fn: () => void): () => void;
}

/** Brings `db` to version `migrations.length`; `label` names the file in the refusal (e.g. "gateway.db"). */
export function applyMigrations(db: MigratableDb, migrations: readonly string[], label: string): void {
  const version = Number(db.pragma("user_version", { simple: true }));
  if (version > migrations.length)
    throw new Error(`${label} schema v${version} is newer than this build (v${migrations.length})`);
  db.transaction(() => {
    for (let v = version; v < migrations.length; v++) {
      db.exec(migrations[v] ?? "");
      db.pragma(`user_version = ${v + 1}`);
    }
  })();
}
