// The little the PostgreSQL store needs from a client library, so the store
// is written once and the bench can compare two well-kept drivers on the same
// code: `pg` (node-postgres) and `postgres` (postgres.js). bench/README.md has
// the figures and the reason for the default.
import pg from "pg";
import postgres from "postgres";
import { StoreUnavailableError } from "../../domain/ports.js";

export type Row = Record<string, unknown>;

export interface SqlQuery {
  query<R extends Row = Row>(text: string, params?: readonly unknown[]): Promise<R[]>;
}

export interface SqlDriver extends SqlQuery {
  readonly name: "pg" | "postgres";
  /** BEGIN ... COMMIT on one connection; ROLLBACK if fn throws. */
  transaction<T>(fn: (q: SqlQuery) => Promise<T>): Promise<T>;
  /** One connection for fn's whole run (session-level advisory locks). */
  withConnection<T>(fn: (q: SqlQuery) => Promise<T>): Promise<T>;
  /**
   * LISTEN on a channel with its own connection, re-established by itself;
   * `onNotify` gets each notification's payload; `onConnect` runs after
   * every (re)connect, so a listener can catch up on what it missed while
   * the connection was down. Resolves with an unlisten.
   */
  listen(channel: string, onNotify: (payload: string) => void, onConnect: () => void): Promise<() => Promise<void>>;
  end(): Promise<void>;
}

export interface DriverOptions {
  readonly url: string;
  /** "" = whatever the URL says. */
  readonly password: string;
  readonly poolMax: number;
  readonly statementTimeoutMs: number;
  readonly applicationName: string;
  readonly onError: (e: unknown) => void;
}

const LISTEN_RETRY_MS_MAX = 5_000;

/** SQLSTATEs after which running the same thing again may succeed. */
export function isRetryableConflict(e: unknown): boolean {
  const code = sqlState(e);
  return code === "40001" || code === "40P01"; // serialization_failure, deadlock_detected
}

export function sqlState(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * The database cannot be reached or cannot take writes right now: a dropped
 * or refused connection, a server shutting down or failing over (read-only),
 * too many connections, a statement past its timeout.
 */
export function isUnavailable(e: unknown): boolean {
  if (e instanceof StoreUnavailableError) return true;
  const code = sqlState(e);
  if (code === undefined) return true; // not a server error: the connection itself failed
  return code.startsWith("08") || code.startsWith("57") || code === "53300" || code === "25006";
}

/** Rethrows unavailability as StoreUnavailableError (never with the URL or a password in it). */
export function asStoreError(e: unknown): unknown {
  if (e instanceof StoreUnavailableError) return e;
  if (!isUnavailable(e)) return e;
  const code = sqlState(e) ?? String((e as { code?: unknown } | null)?.code ?? "connection");
  return new StoreUnavailableError(
    `PostgreSQL unavailable (${code}): ${e instanceof Error ? e.message.slice(0, 200) : String(e)}`,
  );
}

export function createDriver(kind: "pg" | "postgres", o: DriverOptions): SqlDriver {
  return kind === "pg" ? createNodePostgres(o) : createPostgresJs(o);
}

function createNodePostgres(o: DriverOptions): SqlDriver {
  const config: pg.PoolConfig = {
    connectionString: o.url,
    max: o.poolMax,
    statement_timeout: o.statementTimeoutMs,
    // A query the server never answers (a paused or partitioned server) fails too.
    query_timeout: o.statementTimeoutMs + 1_000,
    connectionTimeoutMillis: o.statementTimeoutMs,
    application_name: o.applicationName,
    keepAlive: true,
    ...(o.password !== "" ? { password: o.password } : {}),
  };
  const pool = new pg.Pool(config);
  pool.on("error", (e) => o.onError(e)); // an idle client lost its connection
  const run = async <R extends Row>(
    client: pg.Pool | pg.PoolClient,
    text: string,
    params?: readonly unknown[],
  ): Promise<R[]> => {
    try {
      return (await client.query<R>(text, params as unknown[] | undefined)).rows;
    } catch (e) {
      throw asStoreError(e);
    }
  };
  // A checked-out client whose connection breaks emits "error" on itself, not on
  // the pool: without a listener that is an uncaught exception (PostgreSQL
  // killed mid-transaction). The query in flight fails on its own; this only
  // records the outage.
  const onClientError = (e: Error) => o.onError(e);
  const checkout = async (): Promise<pg.PoolClient> => {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (e) {
      throw asStoreError(e);
    }
    if (!client.listeners("error").includes(onClientError)) client.on("error", onClientError);
    return client;
  };
  return {
    name: "pg",
    query: (text, params) => run(pool, text, params),
    async transaction(fn) {
      const client = await checkout();
      let broken: unknown;
      try {
        await run(client, "BEGIN");
        const value = await fn({ query: (t, p) => run(client, t, p) });
        await run(client, "COMMIT");
        return value;
      } catch (e) {
        await client.query("ROLLBACK").catch((rollbackError: unknown) => (broken = rollbackError));
        throw e;
      } finally {
        // A client whose connection broke must not go back to the pool.
        client.release(broken instanceof Error ? broken : undefined);
      }
    },
    async withConnection(fn) {
      const client = await checkout();
      let failed: unknown;
      try {
        return await fn({ query: (t, p) => run(client, t, p) });
      } catch (e) {
        failed = e;
        throw e;
      } finally {
        client.release(failed instanceof Error ? failed : undefined);
      }
    },
    async listen(channel, onNotify, onConnect) {
      let stopped = false;
      let client: pg.Client | undefined;
      let retryMs = 100;
      const connect = async (): Promise<void> => {
        if (stopped) return;
        const c = new pg.Client(config);
        c.on("notification", (msg) => onNotify(msg.payload ?? ""));
        c.on("error", (e) => o.onError(e));
        c.on("end", () => {
          if (client === c && !stopped) setTimeout(() => void connect(), retryMs);
        });
        try {
          await c.connect();
          await c.query(`LISTEN ${channel}`);
          client = c;
          retryMs = 100;
          onConnect();
        } catch (e) {
          o.onError(e);
          await c.end().catch(() => {});
          retryMs = Math.min(retryMs * 2, LISTEN_RETRY_MS_MAX);
          if (!stopped) setTimeout(() => void connect(), retryMs);
        }
      };
      await connect();
      return async () => {
        stopped = true;
        await client?.end().catch(() => {});
      };
    },
    end: () => pool.end(),
  };
}

function createPostgresJs(o: DriverOptions): SqlDriver {
  const sql = postgres(o.url, {
    max: o.poolMax,
    connect_timeout: Math.ceil(o.statementTimeoutMs / 1000),
    idle_timeout: 60,
    connection: { application_name: o.applicationName, statement_timeout: o.statementTimeoutMs },
    // Rows as the server sends them: int8 as strings, like node-postgres (the store converts).
    types: {},
    onnotice: () => {},
    ...(o.password !== "" ? { password: o.password } : {}),
  });
  type Sql = postgres.Sql | postgres.TransactionSql | postgres.ReservedSql;
  const run = async <R extends Row>(s: Sql, text: string, params?: readonly unknown[]): Promise<R[]> => {
    try {
      const rows = await s.unsafe(text, (params ?? []) as postgres.ParameterOrJSON<never>[]);
      return [...rows] as unknown as R[];
    } catch (e) {
      throw asStoreError(e);
    }
  };
  return {
    name: "postgres",
    query: (text, params) => run(sql, text, params),
    async transaction(fn) {
      try {
        return (await sql.begin((tx) => fn({ query: (t, p) => run(tx, t, p) }))) as Awaited<ReturnType<typeof fn>>;
      } catch (e) {
        throw asStoreError(e);
      }
    },
    async withConnection(fn) {
      let reserved: postgres.ReservedSql;
      try {
        reserved = await sql.reserve();
      } catch (e) {
        throw asStoreError(e);
      }
      try {
        return await fn({ query: (t, p) => run(reserved, t, p) });
      } finally {
        reserved.release();
      }
    },
    async listen(channel, onNotify, onConnect) {
      // postgres.js re-listens by itself after a reconnect and calls onlisten each time.
      const sub = await sql
        .listen(
          channel,
          (payload) => onNotify(payload),
          () => onConnect(),
        )
        .catch((e: unknown) => {
          throw asStoreError(e);
        });
      return () => sub.unlisten();
    },
    end: () => sql.end({ timeout: 5 }),
  };
}
