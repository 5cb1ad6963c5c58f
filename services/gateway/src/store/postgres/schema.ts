// The shared store's schema, as numbered migrations run at start-up under an
// advisory lock: three replicas starting at once apply each migration once,
// the others wait and find it done. Migrations only add (tables, columns,
// indexes, CREATE OR REPLACE FUNCTION) so that the previous release keeps
// running against the new schema during a rolling upgrade.
//
// The tables mirror the SQLite file (store/db.ts) column for column; bigint
// for money and epoch milliseconds. paygate_apply() is group commit's write:
// one call applies every queued claim, decision and acknowledgement in ONE
// transaction and answers each with its own result (see store.ts).
import { cardPartsMigration } from "../card-auth-parts.js";
import type { SqlDriver, SqlQuery } from "./driver.js";

/** pg_advisory_lock key for migrations ("paygate" in ASCII, as an int8). */
const MIGRATION_LOCK_KEY = "7017280452245743464";

const V1_TABLES = `
CREATE TABLE meta (
  key   text PRIMARY KEY,
  value text NOT NULL
);

CREATE TABLE users (
  user_id       text PRIMARY KEY,
  username      text NOT NULL UNIQUE,
  password_hash text NOT NULL,
  roles         text NOT NULL,
  display_name  text NOT NULL,
  created_at    bigint NOT NULL
);

CREATE TABLE sessions (
  token_hash text PRIMARY KEY,
  user_id    text NOT NULL REFERENCES users (user_id),
  expires_at bigint NOT NULL,
  created_at bigint NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE login_failures (
  user_id      text NOT NULL,
  client       text NOT NULL,
  failures     integer NOT NULL,
  locked_until bigint NOT NULL,
  PRIMARY KEY (user_id, client)
);

CREATE TABLE accounts (
  account_id    text PRIMARY KEY,
  bank          text NOT NULL,
  owner_user_id text NOT NULL REFERENCES users (user_id),
  currency      text NOT NULL,
  created_at    bigint NOT NULL
);
CREATE INDEX accounts_owner ON accounts (owner_user_id);

CREATE TABLE txns (
  txn_id          text PRIMARY KEY,
  sequence        bigint UNIQUE,
  caller_user_id  text NOT NULL,
  idempotency_key text NOT NULL,
  owns_key        boolean NOT NULL DEFAULT true,
  fingerprint     text NOT NULL,
  from_account_id text NOT NULL,
  to_account_id   text NOT NULL,
  from_bank       text NOT NULL,
  to_bank         text NOT NULL,
  amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
  currency        text NOT NULL,
  memo            text NOT NULL,
  status          text NOT NULL CHECK (status IN ('PENDING', 'COMMITTED', 'ABORTED')),
  decline_reason  text NOT NULL DEFAULT '',
  created_at      bigint NOT NULL,
  decided_at      bigint NOT NULL DEFAULT 0
);
-- The guard of exactly-once across every replica.
CREATE UNIQUE INDEX txns_idempotency ON txns (caller_user_id, idempotency_key) WHERE owns_key;
CREATE INDEX txns_pending ON txns (created_at) WHERE status = 'PENDING';
CREATE INDEX txns_from ON txns (from_account_id, sequence);
CREATE INDEX txns_to ON txns (to_account_id, sequence);
CREATE INDEX txns_caller ON txns (caller_user_id, sequence);

-- One row: the last sequence handed out. Taken last in each deciding
-- transaction, so commits that decide transfers land in sequence order.
CREATE TABLE history_sequence (
  id   integer PRIMARY KEY CHECK (id = 1),
  last bigint NOT NULL
);
INSERT INTO history_sequence (id, last) VALUES (1, 0);

CREATE TABLE rounds (
  txn_id     text PRIMARY KEY,
  kind       text NOT NULL,
  banks      text[] NOT NULL,
  created_at bigint NOT NULL
);

CREATE TABLE decisions (
  txn_id     text PRIMARY KEY,
  decision   text NOT NULL CHECK (decision IN ('COMMIT', 'ABORT')),
  reason     text NOT NULL DEFAULT '',
  decided_at bigint NOT NULL
);

CREATE TABLE decision_acks (
  txn_id          text NOT NULL REFERENCES decisions (txn_id),
  bank            text NOT NULL,
  acked_at        bigint,
  attempts        integer NOT NULL DEFAULT 0,
  next_attempt_at bigint NOT NULL,
  last_error      text NOT NULL DEFAULT '',
  PRIMARY KEY (txn_id, bank)
);
CREATE INDEX decision_acks_due ON decision_acks (next_attempt_at) WHERE acked_at IS NULL;

CREATE TABLE replica_leases (
  replica       text PRIMARY KEY,
  boot_id       text NOT NULL,
  lease_until   timestamptz NOT NULL,
  taken_over_by text NOT NULL DEFAULT '',
  taken_over_at timestamptz NOT NULL DEFAULT '-infinity'
);

CREATE TABLE cards (
  card_id         text PRIMARY KEY,
  pan_hmac        text NOT NULL UNIQUE,
  last4           text NOT NULL,
  exp_month       integer NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
  exp_year        integer NOT NULL,
  cvc_hash        text NOT NULL,
  cardholder_name text NOT NULL,
  account_id      text NOT NULL,
  bank            text NOT NULL,
  owner_user_id   text NOT NULL,
  currency        text NOT NULL,
  created_at      bigint NOT NULL
);

CREATE TABLE card_authorizations (
  auth_id               text PRIMARY KEY,
  replica               text NOT NULL DEFAULT '',
  auth_code             text NOT NULL UNIQUE,
  merchant_user_id      text NOT NULL,
  idempotency_key       text NOT NULL,
  fingerprint           text NOT NULL,
  card_id               text NOT NULL REFERENCES cards (card_id),
  card_last4            text NOT NULL,
  card_account_id       text NOT NULL,
  card_bank             text NOT NULL,
  card_owner_user_id    text NOT NULL,
  merchant_account_id   text NOT NULL,
  merchant_bank         text NOT NULL,
  amount_minor          bigint NOT NULL CHECK (amount_minor > 0),
  currency              text NOT NULL,
  merchant_reference    text NOT NULL,
  status                text NOT NULL CHECK (status IN ('PENDING', 'DECLINED', 'APPROVED', 'CAPTURED', 'VOIDED', 'EXPIRED')),
  decline_reason        text NOT NULL DEFAULT '',
  risk_score            integer NOT NULL DEFAULT 0,
  risk_approved         boolean NOT NULL DEFAULT false,
  risk_rule             text NOT NULL DEFAULT '',
  hold_txn_id           text NOT NULL DEFAULT '',
  op_txn_id             text NOT NULL DEFAULT '',
  op_kind               text NOT NULL DEFAULT '' CHECK (op_kind IN ('', 'capture', 'void')),
  op_amount_minor       bigint NOT NULL DEFAULT 0,
  op_batch_id           text NOT NULL DEFAULT '',
  op_item_index         integer NOT NULL DEFAULT -1,
  captured_minor        bigint NOT NULL DEFAULT 0 CHECK (captured_minor >= 0 AND captured_minor <= amount_minor),
  capture_txn_id        text NOT NULL DEFAULT '',
  capture_batch_id      text NOT NULL DEFAULT '',
  capture_item_index    integer NOT NULL DEFAULT -1,
  refunded_minor        bigint NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
  refund_reserved_minor bigint NOT NULL DEFAULT 0 CHECK (refund_reserved_minor >= 0),
  created_at            bigint NOT NULL,
  expires_at            bigint NOT NULL,
  updated_at            bigint NOT NULL,
  last_op_id            text NOT NULL DEFAULT '',
  CHECK (refunded_minor + refund_reserved_minor <= captured_minor),
  CHECK ((op_kind = '') = (op_txn_id = ''))
);
CREATE UNIQUE INDEX card_auth_key ON card_authorizations (merchant_user_id, idempotency_key);
CREATE INDEX card_auth_spend ON card_authorizations (card_id, created_at);
CREATE INDEX card_auth_pending ON card_authorizations (created_at) WHERE status = 'PENDING';
CREATE INDEX card_auth_ops ON card_authorizations (op_txn_id) WHERE op_txn_id != '';
CREATE INDEX card_auth_expiry ON card_authorizations (expires_at) WHERE status = 'APPROVED';

CREATE TABLE card_settle_batches (
  batch_id         text PRIMARY KEY,
  merchant_user_id text NOT NULL,
  idempotency_key  text NOT NULL,
  fingerprint      text NOT NULL,
  status           text NOT NULL CHECK (status IN ('PENDING', 'DONE')),
  owner_replica    text NOT NULL DEFAULT '',
  created_at       bigint NOT NULL,
  finished_at      bigint NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX card_batch_key ON card_settle_batches (merchant_user_id, idempotency_key);

CREATE TABLE card_settle_items (
  batch_id       text NOT NULL REFERENCES card_settle_batches (batch_id),
  item_index     integer NOT NULL,
  auth_code      text NOT NULL,
  amount_minor   bigint NOT NULL,
  status         text NOT NULL DEFAULT '' CHECK (status IN ('', 'CAPTURED', 'FAILED')),
  reason         text NOT NULL DEFAULT '',
  captured_minor bigint NOT NULL DEFAULT 0,
  txn_id         text NOT NULL DEFAULT '',
  PRIMARY KEY (batch_id, item_index)
);

CREATE TABLE card_refunds (
  refund_id        text PRIMARY KEY,
  merchant_user_id text NOT NULL,
  idempotency_key  text NOT NULL,
  fingerprint      text NOT NULL,
  auth_id          text NOT NULL REFERENCES card_authorizations (auth_id),
  amount_minor     bigint NOT NULL CHECK (amount_minor > 0),
  txn_id           text NOT NULL,
  status           text NOT NULL CHECK (status IN ('PENDING', 'COMMITTED', 'FAILED')),
  reason           text NOT NULL DEFAULT '',
  created_at       bigint NOT NULL,
  decided_at       bigint NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX card_refund_key ON card_refunds (merchant_user_id, idempotency_key);
CREATE INDEX card_refund_pending ON card_refunds (created_at) WHERE status = 'PENDING';
`;

// A txn as JSON with every bigint as text (JSON numbers lose precision past 2^53).
const V1_FUNCTIONS = `
CREATE OR REPLACE FUNCTION paygate_txn_json(t txns) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $f$
  SELECT jsonb_build_object(
    'txn_id', t.txn_id, 'sequence', coalesce(t.sequence, 0)::text, 'caller_user_id', t.caller_user_id,
    'idempotency_key', t.idempotency_key, 'fingerprint', t.fingerprint, 'from_account_id', t.from_account_id,
    'to_account_id', t.to_account_id, 'from_bank', t.from_bank, 'to_bank', t.to_bank,
    'amount_minor', t.amount_minor::text, 'currency', t.currency, 'memo', t.memo, 'status', t.status,
    'decline_reason', t.decline_reason, 'created_at', t.created_at::text, 'decided_at', t.decided_at::text)
$f$;

-- Insert-if-absent on (caller, key): the key's owner afterwards, and whether it is this txn.
CREATE OR REPLACE FUNCTION paygate_claim(t jsonb) RETURNS jsonb LANGUAGE plpgsql AS $f$
DECLARE
  owner txns;
BEGIN
  INSERT INTO txns (txn_id, caller_user_id, idempotency_key, owns_key, fingerprint, from_account_id, to_account_id,
                    from_bank, to_bank, amount_minor, currency, memo, status, created_at)
  VALUES (t->>'txnId', t->>'callerUserId', t->>'idempotencyKey', true, t->>'fingerprint', t->>'fromAccountId', t->>'toAccountId',
          t->>'fromBank', t->>'toBank', (t->>'amountMinor')::bigint, t->>'currency', t->>'memo', 'PENDING', (t->>'createdAtMs')::bigint)
  ON CONFLICT DO NOTHING;
  SELECT * INTO owner FROM txns WHERE caller_user_id = t->>'callerUserId' AND idempotency_key = t->>'idempotencyKey' AND owns_key;
  IF NOT FOUND THEN
    -- Its own row without the key: a re-run after its key moved on (it was aborted and retried).
    SELECT * INTO owner FROM txns WHERE txn_id = t->>'txnId';
  END IF;
  RETURN jsonb_build_object('claimed', owner.txn_id = t->>'txnId', 'txn', paygate_txn_json(owner));
END
$f$;

-- Insert-if-absent on the decision; the writer settles the txn and adds the acknowledgement rows.
CREATE OR REPLACE FUNCTION paygate_decide(d jsonb) RETURNS jsonb LANGUAGE plpgsql AS $f$
DECLARE
  wrote boolean;
  winner decisions;
  settled boolean := false;
BEGIN
  INSERT INTO decisions (txn_id, decision, reason, decided_at)
  VALUES (d->>'txnId', d->>'decision', d->>'reason', (d->>'nowMs')::bigint)
  ON CONFLICT (txn_id) DO NOTHING;
  wrote := FOUND;
  SELECT * INTO winner FROM decisions WHERE txn_id = d->>'txnId';
  IF wrote THEN
    UPDATE txns SET status = CASE winner.decision WHEN 'COMMIT' THEN 'COMMITTED' ELSE 'ABORTED' END,
                    decline_reason = winner.reason, decided_at = winner.decided_at
    WHERE txn_id = winner.txn_id AND status = 'PENDING';
    settled := FOUND;
    INSERT INTO decision_acks (txn_id, bank, next_attempt_at)
    SELECT winner.txn_id, b, (d->>'firstResendAtMs')::bigint FROM jsonb_array_elements_text(d->'participants') AS b
    ON CONFLICT DO NOTHING;
  END IF;
  RETURN jsonb_build_object('txn_id', winner.txn_id, 'decision', winner.decision, 'reason', winner.reason,
                            'decided_at', winner.decided_at::text, 'settled', settled);
END
$f$;

-- Group commit's one write: every op of the batch in this one transaction,
-- each answered in order. Transfers decided here get their history sequence
-- at the very end, under the history_sequence row lock held until COMMIT.
CREATE OR REPLACE FUNCTION paygate_apply(ops jsonb) RETURNS jsonb LANGUAGE plpgsql AS $f$
DECLARE
  op jsonb;
  r jsonb;
  results jsonb[] := '{}';
  decide_idx integer[] := '{}';
  sequenced text[] := '{}';
  base bigint;
  i integer;
BEGIN
  FOR op IN SELECT value FROM jsonb_array_elements(ops) LOOP
    CASE op->>'op'
      WHEN 'claim' THEN
        r := paygate_claim(op->'txn');
      WHEN 'reclaim' THEN
        UPDATE txns SET owns_key = false WHERE txn_id = op->>'previousTxnId' AND owns_key AND status = 'ABORTED';
        r := paygate_claim(op->'txn');
      WHEN 'round' THEN
        INSERT INTO rounds (txn_id, kind, banks, created_at)
        VALUES (op->>'txnId', op->>'kind', ARRAY(SELECT jsonb_array_elements_text(op->'banks')), (op->>'createdAtMs')::bigint)
        ON CONFLICT DO NOTHING;
        r := 'null'::jsonb;
      WHEN 'decide' THEN
        r := paygate_decide(op);
        decide_idx := decide_idx || (coalesce(array_length(results, 1), 0) + 1);
        IF (r->>'settled')::boolean THEN sequenced := sequenced || (op->>'txnId'); END IF;
      WHEN 'ack' THEN
        UPDATE decision_acks SET acked_at = (op->>'nowMs')::bigint, last_error = ''
        WHERE txn_id = op->>'txnId' AND bank = op->>'bank' AND acked_at IS NULL;
        r := 'null'::jsonb;
      WHEN 'defer' THEN
        UPDATE decision_acks SET attempts = (op->>'attempts')::integer, next_attempt_at = (op->>'nextAttemptAtMs')::bigint,
                                 last_error = op->>'error'
        WHERE txn_id = op->>'txnId' AND bank = op->>'bank' AND acked_at IS NULL;
        r := 'null'::jsonb;
      ELSE
        RAISE EXCEPTION 'paygate_apply: unknown op %', op->>'op';
    END CASE;
    results := results || r;
  END LOOP;
  IF array_length(sequenced, 1) > 0 THEN
    UPDATE history_sequence SET last = last + array_length(sequenced, 1) WHERE id = 1 RETURNING last - array_length(sequenced, 1) INTO base;
    UPDATE txns t SET sequence = base + s.ord FROM unnest(sequenced) WITH ORDINALITY AS s(txn_id, ord) WHERE t.txn_id = s.txn_id;
    PERFORM pg_notify('paygate_decided', '');
  END IF;
  -- A decision's answer carries its transfer as it now stands (sequence included).
  FOREACH i IN ARRAY decide_idx LOOP
    results[i] := results[i] || jsonb_build_object('txn', (SELECT paygate_txn_json(t) FROM txns t WHERE t.txn_id = results[i]->>'txn_id'));
  END LOOP;
  RETURN to_jsonb(results);
END
$f$;
`;

// v2: sign-up and linking (DESIGN.md §11): fixed-window rate counters (sign-ups
// per client, link attempts per user), shared by every replica.
const V2_RATE_LIMITS = `
CREATE TABLE rate_limits (
  scope      text NOT NULL,
  key        text NOT NULL,
  count      integer NOT NULL CHECK (count > 0),
  window_end bigint NOT NULL,
  PRIMARY KEY (scope, key)
);
CREATE INDEX rate_limits_end ON rate_limits (window_end);
`;

// v3: webhooks (DESIGN.md §12), as the SQLite file has them (store/db.ts v4).
// webhook_events is the outbox: the card store inserts its rows in the
// transaction of the change they report; fan-out turns each into one delivery
// per subscribed endpoint; replicas claim deliveries with SKIP LOCKED.
const V3_WEBHOOKS = `
CREATE TABLE webhook_endpoints (
  endpoint_id   text PRIMARY KEY,
  owner_user_id text NOT NULL,
  url           text NOT NULL,
  event_types   text[] NOT NULL,
  status        text NOT NULL CHECK (status IN ('ENABLED', 'DISABLED')),
  created_at_ms bigint NOT NULL
);
CREATE INDEX webhook_endpoints_owner ON webhook_endpoints (owner_user_id);

CREATE TABLE webhook_secrets (
  endpoint_id   text NOT NULL REFERENCES webhook_endpoints (endpoint_id) ON DELETE CASCADE,
  secret        text NOT NULL,
  created_at_ms bigint NOT NULL,
  expires_at_ms bigint,
  PRIMARY KEY (endpoint_id, secret)
);
CREATE UNIQUE INDEX webhook_secrets_current ON webhook_secrets (endpoint_id) WHERE expires_at_ms IS NULL;

CREATE TABLE webhook_events (
  seq           bigserial PRIMARY KEY,
  event_id      text NOT NULL UNIQUE,
  type          text NOT NULL,
  object_id     text NOT NULL,
  owner_user_id text NOT NULL,
  created_at_ms bigint NOT NULL,
  body          text NOT NULL,
  fanned_out    boolean NOT NULL DEFAULT false
);
CREATE INDEX webhook_events_unfanned ON webhook_events (seq) WHERE NOT fanned_out;
CREATE INDEX webhook_events_unfanned_object ON webhook_events (owner_user_id, object_id, seq) WHERE NOT fanned_out;

CREATE TABLE webhook_deliveries (
  delivery_id        text PRIMARY KEY,
  endpoint_id        text NOT NULL REFERENCES webhook_endpoints (endpoint_id) ON DELETE CASCADE,
  event_seq          bigint NOT NULL,
  event_id           text NOT NULL,
  event_type         text NOT NULL,
  object_id          text NOT NULL,
  status             text NOT NULL CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
  attempts           integer NOT NULL DEFAULT 0,
  next_attempt_at_ms bigint NOT NULL,
  claimed_by         text NOT NULL DEFAULT '',
  claim_until_ms     bigint NOT NULL DEFAULT 0,
  last_status_code   integer NOT NULL DEFAULT 0,
  last_error         text NOT NULL DEFAULT '',
  created_at_ms      bigint NOT NULL,
  delivered_at_ms    bigint NOT NULL DEFAULT 0,
  UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (event_seq) WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_object ON webhook_deliveries (endpoint_id, object_id, event_seq) WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, event_seq);

CREATE TABLE webhook_attempts (
  delivery_id text NOT NULL REFERENCES webhook_deliveries (delivery_id) ON DELETE CASCADE,
  attempt     integer NOT NULL,
  at_ms       bigint NOT NULL,
  status_code integer NOT NULL,
  latency_ms  integer NOT NULL,
  error       text NOT NULL,
  replica     text NOT NULL,
  PRIMARY KEY (delivery_id, attempt)
);

-- How far materializeTransferEvents has read the history (txns.sequence),
-- locked by each run. It starts at today's end: endpoints registered later
-- hear of later transfers only.
CREATE TABLE webhook_transfer_cursor (
  id            integer PRIMARY KEY CHECK (id = 1),
  last_sequence bigint NOT NULL
);
INSERT INTO webhook_transfer_cursor (id, last_sequence) SELECT 1, last FROM history_sequence WHERE id = 1;
`;

// v4: an authorization's operation lock and its refund reservations get
// tables of their own (release 1 of an expand/contract change, DESIGN.md
// §10.3), as the SQLite file has them (store/db.ts v5), backfilled from the
// columns they replace; those columns stay and are still written, since a
// previous-release replica reads only them (card-auth-parts.ts).
const V4_CARD_PARTS = cardPartsMigration("postgres");

export const MIGRATIONS: readonly string[] = [V1_TABLES + V1_FUNCTIONS, V2_RATE_LIMITS, V3_WEBHOOKS, V4_CARD_PARTS];
/** The migration that adds card_auth_ops and card_refund_reservations (the contract's backfill case rewinds it). */
export const CARD_PARTS_MIGRATION = MIGRATIONS.indexOf(V4_CARD_PARTS) + 1;

/** Applies the missing migrations, one transaction each, under a session advisory lock. */
export async function migrate(driver: SqlDriver): Promise<{ readonly applied: number; readonly version: number }> {
  return driver.withConnection(async (q: SqlQuery) => {
    await q.query(`SELECT pg_advisory_lock(${MIGRATION_LOCK_KEY})`);
    try {
      await q.query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
      );
      const rows = await q.query<{ v: number | null }>("SELECT max(version) AS v FROM schema_migrations");
      const current = Number(rows[0]?.v ?? 0);
      if (current > MIGRATIONS.length)
        throw new Error(
          `the database schema is v${current}, newer than this build (v${MIGRATIONS.length}); upgrade the gateway`,
        );
      let applied = 0;
      for (let v = current; v < MIGRATIONS.length; v++) {
        await q.query("BEGIN");
        try {
          await q.query(MIGRATIONS[v] ?? "");
          await q.query("INSERT INTO schema_migrations (version) VALUES ($1)", [v + 1]);
          await q.query("COMMIT");
        } catch (e) {
          await q.query("ROLLBACK").catch(() => {});
          throw e;
        }
        applied++;
      }
      return { applied, version: MIGRATIONS.length };
    } finally {
      await q.query(`SELECT pg_advisory_unlock(${MIGRATION_LOCK_KEY})`).catch(() => {});
    }
  });
}
