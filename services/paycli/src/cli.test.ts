// Command-level tests: the real CLI in-process (and, for the crash points, as
// a child process) against no gateway at all, then against a fake gateway
// speaking real Connect over real mTLS.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import {
  FAKE_DELIVERY,
  FAKE_ENDPOINT,
  freePort,
  LINKABLE,
  makeTestHome,
  repoRoot,
  runPaycli,
  SCRIPTED_ACCOUNTS,
  startFakeGateway,
  writeSession,
  type FakeGateway,
  type TestHome,
} from "./test-support.js";

interface EntryDoc {
  key: string;
  state: string;
  attempts: number;
  lastReason: string | null;
  transactionId: string | null;
  sendingPid: number | null;
  amountMinor: string;
}
interface QueueDoc {
  depth: number;
  pending: EntryDoc[];
  recent: EntryDoc[];
}
interface ResultDoc {
  key: string;
  state: string;
  outcome: { kind: string; reason?: string };
  entry: EntryDoc;
}
interface SyncDoc {
  results: ResultDoc[];
  pending: EntryDoc[];
}

const HOUR_MS = 3_600_000;
let home: TestHome;

before(() => {
  home = makeTestHome("paycli-cli");
});
after(() => home.cleanup());

function freshHome(t: { name: string }, port: number, extra: Record<string, string> = {}) {
  const env = home.env(port, {
    PAYCLI_HOME: join(home.dir, t.name.replace(/\W+/g, "-")),
    PAYCLI_BACKOFF_BASE_MS: "1000",
    ...extra,
  });
  writeSession(env.PAYCLI_HOME ?? "");
  return env;
}

test("gateway not listening: pay exits 3 and queues; queue shows it; sync retries with the same key", async (t) => {
  const port = await freePort();
  const env = freshHome(t, port);

  const pay = await runPaycli(["pay", "bank-b/2001", "12.50", "--memo", "lunch", "--json"], env);
  assert.equal(pay.code, 3, pay.stderr);
  const paid = pay.json<ResultDoc>();
  assert.equal(paid.state, "queued");
  assert.equal(paid.outcome.reason, "gateway_unreachable");
  assert.match(paid.key, /^[0-9a-f-]{36}$/);
  assert.equal(paid.entry.amountMinor, "1250");

  const text = await runPaycli(["pay", "bank-b/2001", "1", "--from", "bank-a/1001"], env);
  assert.equal(text.code, 3);
  assert.match(text.stderr, /queued 1\.00 USD from bank-a\/1001 to bank-b\/2001 \(key [0-9a-f-]{36}\).*next at/);

  const queue = (await runPaycli(["queue", "--json"], env)).json<QueueDoc>();
  assert.equal(queue.depth, 2);
  assert.deepEqual(
    queue.pending.map((e) => [e.key, e.state, e.attempts]),
    [
      [paid.key, "queued", 1],
      [queue.pending[1]?.key, "queued", 1],
    ],
  );

  // An hour later every entry is due; the gateway is still down.
  const later = Date.now() + HOUR_MS;
  const sync = await runPaycli(["sync", "--json"], env, { now: () => later });
  assert.equal(sync.code, 3, sync.stderr);
  const synced = sync.json<SyncDoc>();
  // The pass stops at the first "gateway unreachable": one send, not one per entry.
  assert.deepEqual(
    synced.results.map((r) => [r.key, r.state]),
    [[paid.key, "queued"]],
  );

  const again = (await runPaycli(["queue", "--json"], env)).json<QueueDoc>();
  assert.equal(again.pending[0]?.key, paid.key);
  assert.equal(again.pending[0]?.attempts, 2);
  assert.equal(again.pending[1]?.attempts, 1);

  const sync2 = await runPaycli(["sync", "--json"], env, { now: () => later + HOUR_MS });
  assert.equal(sync2.json<SyncDoc>().results[0]?.key, paid.key);
  assert.equal((await runPaycli(["queue", "--json"], env)).json<QueueDoc>().pending[0]?.attempts, 3);
});

test("usage errors exit 2 and queue nothing", async (t) => {
  const env = freshHome(t, await freePort());
  for (const argv of [
    ["pay", "bank-b/2001", "12.505"],
    ["pay", "bank-b/2001", "-3"],
    ["pay", "bank-b/2001", "1e3"],
    ["pay", "bank-b/2001", "0"],
    ["pay", "bank-a/1001", "5"], // to itself (the only USD account)
    ["pay", "bank-b/2001", "5", "--currency", "GBP"], // no GBP account to pay from
    ["pay", "bank-b/2001"],
    ["pay", "bank-b/2001", "5", "--bogus"],
  ]) {
    const r = await runPaycli([...argv, "--json"], env);
    assert.equal(r.code, 2, `${argv.join(" ")}: ${r.stdout}${r.stderr}`);
  }
  const unreadable = await runPaycli(["pay", "bank-b/2001", "5", "--ca", "/nonexistent/ca.crt"], env);
  assert.equal(unreadable.code, 2);
  assert.match(unreadable.stderr, /cannot read the TLS files/);
  assert.equal((await runPaycli(["queue", "--json"], env)).json<QueueDoc>().depth, 0);
});

test("what the gateway would refuse as malformed exits 2 before anything is queued: account ids, memos, keys", async (t) => {
  const env = freshHome(t, await freePort());
  for (const [argv, reason] of [
    [["pay", "BANK-B/2001", "5"], "invalid_account_id"], // the gateway's rule: lowercase bank, digits
    [["pay", "bank-b/20x1", "5"], "invalid_account_id"],
    [["pay", "bank-b/2001", "5", "--from", "bank-a/1001/"], "invalid_account_id"],
    [["pay", "bank-b/2001", "5", "--memo", "hi\x1b[2J\x1b[31mURGENT"], "invalid_memo"],
    [["pay", "bank-b/2001", "5", "--memo", "refund \u202egnp.exe"], "invalid_memo"],
    [["pay", "bank-b/2001", "5", "--key", "has space"], "idempotency_key_missing"],
    [["pay", "bank-b/2001", "5", "--key", "k".repeat(101)], "idempotency_key_missing"],
  ] as const) {
    const r = await runPaycli([...argv, "--json"], env);
    assert.equal(r.code, 2, `${argv.join(" ")}: ${r.stdout}${r.stderr}`);
    assert.equal(r.json<{ error: { reason: string } }>().error.reason, reason, argv.join(" "));
  }
  assert.equal((await runPaycli(["queue", "--json"], env)).json<QueueDoc>().depth, 0);
});

test("not logged in: pay exits 1 and queues nothing", async (t) => {
  const env = home.env(await freePort(), { PAYCLI_HOME: join(home.dir, "nobody") });
  const r = await runPaycli(["pay", "bank-b/2001", "5", "--from", "bank-a/1001", "--json"], env);
  assert.equal(r.code, 1);
  assert.equal(r.json<{ error: { reason: string } }>().error.reason, "not_logged_in");
});

test("against a gateway: committed, declined (final), busy (retried with the same key), session expired (kept)", async (t) => {
  const port = await freePort();
  const gw = await startFakeGateway(home.certs, port);
  t.after(() => gw.close());
  const env = freshHome(t, port);

  const ok = await runPaycli(["pay", "bank-b/2001", "12.50", "--json"], env);
  assert.equal(ok.code, 0, ok.stderr);
  const okDoc = ok.json<ResultDoc & { transaction: { transactionId: string } }>();
  assert.equal(okDoc.state, "committed");
  assert.equal(okDoc.entry.transactionId, okDoc.transaction.transactionId);
  assert.deepEqual(gw.calls[0], { key: okDoc.key, to: "bank-b/2001", authorization: "Bearer token-alice" });

  const broke = await runPaycli(["pay", SCRIPTED_ACCOUNTS.broke, "99", "--json"], env);
  assert.equal(broke.code, 1);
  const brokeDoc = broke.json<ResultDoc>();
  assert.equal(brokeDoc.state, "declined");
  assert.equal(brokeDoc.entry.lastReason, "insufficient_funds");
  assert.match(brokeDoc.entry.transactionId ?? "", /^gateway-0:t/);

  const busy = await runPaycli(["pay", SCRIPTED_ACCOUNTS.busy, "3", "--json"], env);
  assert.equal(busy.code, 3);
  const busyDoc = busy.json<ResultDoc>();
  assert.equal(busyDoc.outcome.reason, "idempotency_key_in_use");

  const expired = await runPaycli(["pay", SCRIPTED_ACCOUNTS.expired, "4", "--json"], env);
  assert.equal(expired.code, 1);
  const expiredDoc = expired.json<ResultDoc>();
  assert.equal(expiredDoc.state, "queued");
  assert.equal(expiredDoc.entry.attempts, 0);
  assert.equal(expiredDoc.entry.lastReason, "session_expired");

  const callsBefore = gw.calls.length;
  const sync = await runPaycli(["sync", "--json"], env, { now: () => Date.now() + HOUR_MS });
  // The busy payment commits; the expired one stops the pass and asks for a login.
  assert.equal(sync.code, 1, sync.stderr);
  assert.match(sync.stderr, /paycli login/);
  const results = sync.json<SyncDoc>().results;
  assert.deepEqual(
    results.map((r) => [r.key, r.state]),
    [
      [busyDoc.key, "committed"],
      [expiredDoc.key, "queued"],
    ],
  );
  // The declined payment was never sent again; the busy one twice, with one key.
  assert.deepEqual(
    gw.calls.slice(callsBefore).map((c) => c.key),
    [busyDoc.key, expiredDoc.key],
  );
  assert.equal(gw.calls.filter((c) => c.key === brokeDoc.key).length, 1);
  assert.equal(gw.calls.filter((c) => c.key === busyDoc.key).length, 2);
  assert.deepEqual(gw.applied, [okDoc.key, busyDoc.key]);

  // Asking again with a finished key reports it and sends nothing.
  const replay = await runPaycli(["pay", "bank-b/2001", "12.50", "--key", okDoc.key, "--json"], env);
  assert.equal(replay.code, 0);
  assert.equal(replay.json<{ state: string }>().state, "committed");
  const reused = await runPaycli(["pay", "bank-b/2001", "13", "--key", okDoc.key], env);
  assert.equal(reused.code, 2);
  assert.match(reused.stderr, /different payment/);

  const queue = (await runPaycli(["queue", "--json"], env)).json<QueueDoc>();
  assert.deepEqual(
    queue.pending.map((e) => e.key),
    [expiredDoc.key],
  );
  assert.deepEqual(
    new Set(queue.recent.map((e) => `${e.key}:${e.state}`)),
    new Set([`${okDoc.key}:committed`, `${brokeDoc.key}:declined`, `${busyDoc.key}:committed`]),
  );
});

test("sync --watch: payments queued while the gateway is down are each applied exactly once when it returns", async (t) => {
  const port = await freePort();
  const env = freshHome(t, port);
  let clock = Date.now();
  const now = () => clock;
  const keys: string[] = [];
  for (const amount of ["1.00", "2.00", "3.00"]) {
    const r = await runPaycli(["pay", "bank-b/2001", amount, "--json"], env, { now });
    assert.equal(r.code, 3);
    keys.push(r.json<ResultDoc>().key);
  }
  let gw: FakeGateway | undefined;
  t.after(() => gw?.close());
  let sleeps = 0;
  const watch = await runPaycli(["sync", "--watch", "--json"], env, {
    now,
    // The watch loop's sleep: time passes, and during the first one the gateway comes back.
    sleep: async (ms) => {
      sleeps++;
      clock += ms;
      gw ??= await startFakeGateway(home.certs, port);
    },
  });
  assert.equal(watch.code, 0, watch.stderr);
  assert.ok(sleeps >= 1);
  const doc = watch.json<SyncDoc>();
  assert.deepEqual(doc.pending, []);
  assert.ok(gw !== undefined);
  assert.deepEqual([...gw.applied].sort(), [...keys].sort());
  assert.deepEqual(
    doc.results
      .filter((r) => r.state === "committed")
      .map((r) => r.key)
      .sort(),
    [...keys].sort(),
  );
  // Each was sent once: nothing reached the gateway while it was down, and nothing twice after.
  assert.equal(gw.calls.length, 3);
  const again = await runPaycli(["sync", "--json"], env, { now });
  assert.equal(again.code, 0);
  assert.deepEqual(again.json<SyncDoc>().results, []);
});

test("history never prints raw control characters: a hostile memo is shown escaped, in tables and in JSON", async (t) => {
  const port = await freePort();
  const gw = await startFakeGateway(home.certs, port);
  t.after(() => gw.close());
  const env = freshHome(t, port);
  assert.equal((await runPaycli(["pay", "bank-b/2001", "1.00", "--memo", "lunch"], env)).code, 0);
  // As an older gateway (or another client's bank) could have stored it: clear screen, CSI, bidi override, DEL, newline.
  const hostile = "\x1b[2J\x1b]0;pwned\x07\x9b31mpay me\u202e\u2066\x7f\nrow";
  gw.transactions[0]!.memo = hostile;
  const RAW = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/;
  const table = await runPaycli(["history"], env);
  assert.equal(table.code, 0, table.stderr);
  assert.doesNotMatch(table.stdout, RAW);
  assert.match(table.stdout, /\\x1b\[2J\\x1b\]0;pwned\\x07\\x9b31mpay me\\u202e\\u2066\\x7f\\x0arow/);
  assert.equal(
    table.stdout.trimEnd().split("\n").length,
    3,
    "header, rule, one row: the memo's newline does not start a row",
  );
  const json = await runPaycli(["history", "--json"], env);
  assert.doesNotMatch(json.stdout, RAW);
  assert.equal(
    json.json<{ transactions: { memo: string }[] }>().transactions[0]?.memo,
    hostile,
    "JSON escapes, the value is intact",
  );
});

test("a closed stdout (paycli --help | head -1) ends quietly with 0, not an unhandled EPIPE", async () => {
  for (const argv of [["--help"], ["queue", "--json"], ["pay", "--help"]]) {
    const child = spawn(process.execPath, ["--import", "tsx", join(repoRoot, "services/paycli/src/main.ts"), ...argv], {
      cwd: repoRoot,
      env: { PATH: process.env.PATH ?? "", PAYCLI_HOME: join(home.dir, "epipe") },
      stdio: ["ignore", "pipe", "pipe"],
    });
    // The reader goes away before paycli writes anything, as `head` does after its first line.
    child.stdout.destroy();
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on("error", reject);
      child.on("close", (c) => resolve(c));
    });
    assert.equal(code, 0, `${argv.join(" ")}: ${stderr}`);
    assert.doesNotMatch(stderr, /EPIPE|Unhandled/, argv.join(" "));
  }
});

/** paycli as its own process (asynchronously: the fake gateway in this process must keep serving). */
function paycliChild(
  argv: string[],
  env: Record<string, string>,
): Promise<{ pid: number; signal: NodeJS.Signals | null; code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", join(repoRoot, "services/paycli/src/main.ts"), ...argv], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ pid: child.pid ?? -1, signal, code, stderr }));
  });
}

test("kill -9 between enqueue and send (PAYCLI_FAULTPOINT=after_enqueue): the next sync sends it, once", async (t) => {
  const port = await freePort();
  const gw = await startFakeGateway(home.certs, port);
  t.after(() => gw.close());
  const env = freshHome(t, port);
  const child = await paycliChild(["pay", "bank-b/2001", "7.00"], { ...env, PAYCLI_FAULTPOINT: "after_enqueue" });
  assert.equal(child.signal, "SIGKILL", child.stderr);
  assert.equal(gw.calls.length, 0);
  const queued = (await runPaycli(["queue", "--json"], env)).json<QueueDoc>().pending;
  assert.equal(queued.length, 1);
  assert.equal(queued[0]?.state, "sending");
  assert.equal(queued[0]?.sendingPid, child.pid);

  // The claim of a dead process is void: sync takes the entry over at once.
  const sync = await runPaycli(["sync", "--json"], env);
  assert.equal(sync.code, 0, sync.stderr);
  assert.deepEqual(
    sync.json<SyncDoc>().results.map((r) => [r.key, r.state]),
    [[queued[0]?.key, "committed"]],
  );
  assert.deepEqual(gw.applied, [queued[0]?.key]);
});

test("kill -9 after the gateway applied it, before paycli recorded it (after_send_before_record): the replay does not pay twice", async (t) => {
  const port = await freePort();
  const gw = await startFakeGateway(home.certs, port);
  t.after(() => gw.close());
  const env = freshHome(t, port);
  const child = await paycliChild(["pay", "bank-b/2001", "8.00"], {
    ...env,
    PAYCLI_FAULTPOINT: "after_send_before_record",
  });
  assert.equal(child.signal, "SIGKILL", child.stderr);
  assert.equal(gw.applied.length, 1);
  const key = gw.applied[0];
  const pending = (await runPaycli(["queue", "--json"], env)).json<QueueDoc>().pending;
  assert.deepEqual(
    pending.map((e) => [e.key, e.state]),
    [[key, "sending"]],
  );

  const sync = await runPaycli(["sync", "--json"], env);
  assert.equal(sync.code, 0, sync.stderr);
  assert.deepEqual(
    sync.json<SyncDoc>().results.map((r) => [r.key, r.state]),
    [[key, "committed"]],
  );
  assert.deepEqual(
    gw.calls.map((c) => c.key),
    [key, key],
  );
  assert.deepEqual(gw.applied, [key]);
});

test("login saves a 0600 session with the account list; balance, history, status, logout use it", async (t) => {
  const port = await freePort();
  const gw = await startFakeGateway(home.certs, port);
  t.after(() => gw.close());
  const env = home.env(port, { PAYCLI_HOME: join(home.dir, "login-flow") });

  const wrong = await runPaycli(["login", "alice", "--password", "nope", "--json"], env);
  assert.equal(wrong.code, 1);
  assert.equal(wrong.json<{ error: { reason: string } }>().error.reason, "invalid_credentials");
  const noTty = await runPaycli(["login", "alice"], env);
  assert.equal(noTty.code, 2, "no password and no terminal to prompt on");

  const login = await runPaycli(["login", "alice", "--json"], { ...env, PAYCLI_PASSWORD: "pw" });
  assert.equal(login.code, 0, login.stderr);
  assert.deepEqual(
    login.json<{ accounts: { accountId: string }[] }>().accounts.map((a) => a.accountId),
    ["bank-a/1001", "bank-a/1002"],
  );
  const sessionFile = join(env.PAYCLI_HOME ?? "", "session.json");
  assert.equal(statSync(sessionFile).mode & 0o777, 0o600);
  assert.equal(JSON.parse(readFileSync(sessionFile, "utf8")).token, "token-alice");

  const balance = await runPaycli(["balance"], env);
  assert.equal(balance.code, 0, balance.stderr);
  assert.match(balance.stdout, /bank-a\/1001\s+USD\s+1,000\.00 USD\s+25\.00 USD\s+975\.00 USD/);
  const one = (await runPaycli(["balance", "bank-a/1002", "--json"], env)).json<{
    accounts: { available: string; availableMinor: string }[];
  }>();
  assert.deepEqual(
    one.accounts.map((a) => [a.availableMinor, a.available]),
    [["50000", "500.00 EUR"]],
  );
  assert.equal((await runPaycli(["balance", "bank-z/9"], env)).code, 1);

  // --from comes from the cached list: the only EUR account.
  const eur = await runPaycli(["pay", "bank-b/2001", "40", "--currency", "eur", "--json"], env);
  assert.equal(eur.code, 0, eur.stderr);
  const usd = await runPaycli(["pay", "bank-b/2001", "0.05", "--json"], env);
  assert.deepEqual(
    gw.transactions.map((x) => [x.fromAccountId, x.amountMinor, x.currency]),
    [
      ["bank-a/1002", 4000n, "EUR"],
      ["bank-a/1001", 5n, "USD"],
    ],
  );
  assert.equal(usd.code, 0);

  const history = (await runPaycli(["history", "--json"], env)).json<{
    transactions: { sequence: string; amount: string }[];
  }>();
  assert.deepEqual(
    history.transactions.map((x) => x.amount),
    ["40.00 EUR", "0.05 USD"],
  );
  const after = (await runPaycli(["history", "--after", history.transactions[0]?.sequence ?? "", "--json"], env)).json<{
    transactions: unknown[];
  }>();
  assert.equal(after.transactions.length, 1);
  assert.match((await runPaycli(["history"], env)).stdout, /committed\s+40\.00 EUR\s+bank-a\/1002\s+bank-b\/2001/);

  const status = await runPaycli(["status", "--json"], env);
  assert.equal(status.code, 0);
  assert.deepEqual(
    (({ reachable, sessionValid, user }) => ({ reachable, sessionValid, user }))(
      status.json<{ reachable: boolean; sessionValid: boolean; user: { userId: string } }>(),
    ),
    { reachable: true, sessionValid: true, user: { userId: "alice", username: "alice", roles: ["customer"] } },
  );

  const logout = await runPaycli(["logout", "--json"], env);
  assert.equal(logout.code, 0);
  assert.equal(logout.json<{ revoked: boolean }>().revoked, true);
  assert.equal(existsSync(sessionFile), false);
  assert.equal((await runPaycli(["balance"], env)).code, 1);
});

/** A terminal that types one answer per prompt; records whether raw mode (no echo) was on while each was typed. */
function typingTerminal(answers: string[]) {
  const rawWhileTyped: boolean[] = [];
  let raw = false;
  let listener: ((chunk: string) => void) | undefined;
  return {
    rawWhileTyped,
    stdin: {
      isTTY: true,
      setRawMode: (mode: boolean) => void (raw = mode),
      on: (_e: "data", l: (chunk: Buffer | string) => void) => void (listener = l),
      off: () => void (listener = undefined),
      resume: () =>
        void setImmediate(() => {
          const a = answers.shift();
          if (a === undefined || !listener) return;
          rawWhileTyped.push(raw);
          listener(`${a}\r`);
        }),
      pause: () => undefined,
      setEncoding: () => undefined,
    },
  };
}

test("register: the password from the environment or twice from a prompt that does not echo; refusals exit 1 with the reason, usage 2", async (t) => {
  const port = await freePort();
  const gw = await startFakeGateway(home.certs, port);
  t.after(() => gw.close());
  const env = home.env(port, { PAYCLI_HOME: join(home.dir, "register") });

  const made = await runPaycli(["register", "dana", "--display-name", "Dana Newcomer", "--json"], {
    ...env,
    PAYCLI_PASSWORD: "a-long-passphrase",
  });
  assert.equal(made.code, 0, made.stderr);
  assert.deepEqual(made.json<{ user: { userId: string; displayName: string; roles: string[] } }>().user, {
    userId: "dana",
    username: "dana",
    roles: ["customer"],
    displayName: "Dana Newcomer",
  });
  const taken = await runPaycli(["register", "alice", "--json"], { ...env, PAYCLI_PASSWORD: "a-long-passphrase" });
  assert.equal(taken.code, 1);
  assert.equal(taken.json<{ error: { reason: string } }>().error.reason, "username_taken");
  assert.equal((await runPaycli(["register", "erin"], env)).code, 2, "no password and no terminal");

  const term = typingTerminal(["secret-passphrase-1", "secret-passphrase-1"]);
  const typed = await runPaycli(["register", "erin"], env, {
    io: { stdout: { write: () => undefined }, stderr: { write: () => undefined }, stdin: term.stdin },
  });
  assert.equal(typed.code, 0);
  assert.deepEqual(term.rawWhileTyped, [true, true], "both password prompts without echo");
  assert.deepEqual(gw.registered.at(-1), { username: "erin", password: "secret-passphrase-1" });
  const differ = typingTerminal(["secret-passphrase-1", "secret-passphrase-2"]);
  assert.equal(
    (
      await runPaycli(["register", "fred"], env, {
        io: { stdout: { write: () => undefined }, stderr: { write: () => undefined }, stdin: differ.stdin },
      })
    ).code,
    2,
  );
  assert.deepEqual(
    gw.registered.map((r) => r.username),
    ["dana", "erin"],
    "nothing sent when the two differ",
  );
});

test("link: the code from --code, PAYCLI_LINK_CODE or a no-echo prompt; linked accounts join the session's list; a refusal exits 1, malformed input 2", async (t) => {
  const port = await freePort();
  const gw = await startFakeGateway(home.certs, port);
  t.after(() => gw.close());
  const env = freshHome(t, port);
  const wrong = await runPaycli(
    ["link", LINKABLE.accountId, "--holder", LINKABLE.holder, "--code", "WRONG-CODE-1", "--json"],
    env,
  );
  assert.equal(wrong.code, 1);
  assert.equal(wrong.json<{ error: { reason: string } }>().error.reason, "link_failed");
  for (const argv of [
    ["link", "BANK-A/1004", "--holder", "x", "--code", LINKABLE.code],
    ["link", LINKABLE.accountId, "--holder", "", "--code", LINKABLE.code],
    ["link", LINKABLE.accountId, "--holder", "x", "--code", "no!"],
    ["link", LINKABLE.accountId, "--holder", "x"],
  ]) {
    assert.equal((await runPaycli([...argv, "--json"], env)).code, 2, argv.join(" "));
  }

  const term = typingTerminal([LINKABLE.code.toLowerCase()]);
  let stderr = "";
  const linked = await runPaycli(["link", LINKABLE.accountId, "--holder", "dana newcomer"], env, {
    io: { stdout: { write: () => undefined }, stderr: { write: (s: string) => (stderr += s) }, stdin: term.stdin },
  });
  assert.equal(linked.code, 0, stderr);
  assert.deepEqual(term.rawWhileTyped, [true], "the code is typed without echo");
  assert.ok(!stderr.toLowerCase().includes(LINKABLE.code.toLowerCase()), "and never printed");
  const session = JSON.parse(readFileSync(join(env.PAYCLI_HOME ?? "", "session.json"), "utf8")) as {
    accounts: { accountId: string }[];
  };
  assert.deepEqual(
    session.accounts.map((a) => a.accountId),
    ["bank-a/1001", "bank-a/1002", LINKABLE.accountId],
  );
  const again = await runPaycli(["link", LINKABLE.accountId, "--holder", LINKABLE.holder, "--json"], {
    ...env,
    PAYCLI_LINK_CODE: LINKABLE.code,
  });
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.json<{ account: { accountId: string; balance: string } }>().account.balance, "200.00 USD");
  // Two USD accounts now: pay asks which one (usage), and takes the linked one with --from.
  assert.equal((await runPaycli(["pay", "bank-b/2001", "5", "--json"], env)).code, 2);
  assert.equal((await runPaycli(["pay", "bank-b/2001", "5", "--from", LINKABLE.accountId, "--json"], env)).code, 0);
});

test("webhooks: create shows the secret once, list, roll-secret with --overlap, deliveries, delivery with its attempts, redeliver, delete; refusals exit 1, usage 2", async (t) => {
  const port = await freePort();
  const gw = await startFakeGateway(home.certs, port);
  t.after(() => gw.close());
  const env = freshHome(t, port);

  const created = await runPaycli(
    [
      "webhooks",
      "create",
      "--url",
      "https://hooks.example/in",
      "--events",
      "capture.succeeded, refund.succeeded",
      "--json",
    ],
    env,
  );
  assert.equal(created.code, 0, created.stderr);
  const doc = created.json<{ endpoint: { endpointId: string; eventTypes: string[] }; secret: string }>();
  assert.deepEqual(
    [doc.endpoint.eventTypes, doc.secret],
    [["capture.succeeded", "refund.succeeded"], "whsec_fake-secret-shown-once"],
  );
  const text = await runPaycli(
    ["webhooks", "create", "--url", "https://hooks.example/in", "--events", "capture.succeeded"],
    env,
  );
  assert.match(text.stdout, /signing secret \(shown once; store it with the receiver\): whsec_fake-secret-shown-once/);

  const refused = await runPaycli(
    ["webhooks", "create", "--url", "https://elsewhere.example/", "--events", "capture.succeeded", "--json"],
    env,
  );
  assert.equal(refused.code, 1);
  assert.equal(refused.json<{ error: { reason: string } }>().error.reason, "webhook_host_not_allowed");
  for (const argv of [
    ["webhooks", "create", "--url", "https://hooks.example/in"],
    ["webhooks", "create", "--url", "https://hooks.example/in", "--events", " , "],
    ["webhooks", "roll-secret", FAKE_ENDPOINT, "--overlap", "8d"],
    ["webhooks", "roll-secret", FAKE_ENDPOINT, "--overlap", "soon"],
    ["webhooks", "deliveries", FAKE_ENDPOINT, "--limit", "0"],
    ["webhooks", "delete"],
  ]) {
    assert.equal((await runPaycli([...argv, "--json"], env)).code, 2, argv.join(" "));
  }

  const list = await runPaycli(["webhooks", "list"], env);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, new RegExp(`${FAKE_ENDPOINT}\\s+enabled\\s+https://hooks.example/in\\s+capture.succeeded`));

  assert.equal((await runPaycli(["webhooks", "roll-secret", FAKE_ENDPOINT, "--json"], env)).code, 0);
  const rolled = await runPaycli(["webhooks", "roll-secret", FAKE_ENDPOINT, "--overlap", "1h", "--json"], env);
  assert.equal(rolled.json<{ secret: string }>().secret, "whsec_rolled");
  assert.equal((await runPaycli(["webhooks", "roll-secret", FAKE_ENDPOINT, "--overlap", "0", "--json"], env)).code, 0);
  assert.deepEqual(
    gw.rolls.map((r) => r.overlapSeconds),
    [undefined, 3_600n, 0n],
    "no flag leaves the default to the gateway; 0 is sent as 0",
  );

  const deliveries = await runPaycli(["webhooks", "deliveries", FAKE_ENDPOINT], env);
  assert.match(deliveries.stdout, new RegExp(`${FAKE_DELIVERY}\\s+capture.succeeded\\s+AB12CD\\s+failed\\s+2\\s+503`));
  const one = await runPaycli(["webhooks", "delivery", FAKE_DELIVERY, "--json"], env);
  const d = one.json<{
    delivery: { status: string; lastError: string };
    attempts: { attempt: number; statusCode: number; latencyMs: string }[];
  }>();
  assert.deepEqual(
    [d.delivery.status, d.delivery.lastError, d.attempts.map((a) => [a.attempt, a.statusCode, a.latencyMs])],
    [
      "failed",
      "HTTP 503: busy",
      [
        [1, 503, "12"],
        [2, 503, "12"],
      ],
    ],
  );
  const again = await runPaycli(["webhooks", "redeliver", FAKE_DELIVERY], env);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /queued again: .* pending after 2 attempt/);

  const unknown = await runPaycli(["webhooks", "delivery", "wd_ffffffffffffffffffffffff", "--json"], env);
  assert.equal(unknown.code, 1);
  assert.equal(unknown.json<{ error: { reason: string } }>().error.reason, "delivery_not_found");
  assert.equal((await runPaycli(["webhooks", "delete", FAKE_ENDPOINT], env)).code, 0);
  assert.equal(
    (await runPaycli(["webhooks", "delete", "we_nope", "--json"], env)).json<{ error: { reason: string } }>().error
      .reason,
    "endpoint_not_found",
  );
  const help = await runPaycli(["webhooks", "--help"], env);
  assert.match(help.stdout, /Exit codes: 0 done; 1 refused/);
});
