// Connect clients for the participant banks, over mTLS with the gateway's own
// certificate. They implement the domain's Participants and Ledgers ports and
// turn every transport failure into a value (these ports never throw).
import { Code, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { LedgerService, LegDirection, ParticipantService, Vote, type Account } from "@paygate/proto/bank";
import { createMtlsTransport, errorInfo, isReason, type Logger, type Reason, type TlsFiles } from "@paygate/rpc";
import type { BankAccount, BankResult, Delivery, Ledgers, Participants } from "./domain/ports.js";

interface BankClients {
  readonly participant: Client<typeof ParticipantService>;
  readonly ledger: Client<typeof LedgerService>;
}

export interface BankClientOptions {
  readonly banks: ReadonlyMap<string, string>;
  readonly tls: TlsFiles;
  readonly logger: Logger;
  /** Default per-call timeout for ledger calls. */
  readonly ledgerTimeoutMs: number;
  /** Per bank (trace propagation, client metrics). */
  readonly interceptors?: (bank: string) => Interceptor[];
}

// Reasons a bank gives that describe the request or the account, not the
// bank's health: they are final for this request. Anything else (transport
// errors, refusals of our certificate, internal errors) counts as unavailable.
const BUSINESS_REASONS: ReadonlySet<string> = new Set<Reason>([
  "insufficient_funds",
  "account_not_found",
  "currency_mismatch",
  "not_account_owner",
  "account_closed",
  "txn_aborted",
  "txn_committed",
  "unknown_txn",
  "invalid_amount",
  "invalid_currency",
  "invalid_account_id",
  "invalid_argument",
  "already_exists",
  "idempotency_key_reused",
  "user_not_found",
]);
// A bank that answers Commit/Abort with these contradicts the coordinator's log.
const COMMIT_CONTRADICTIONS: ReadonlySet<string> = new Set(["unknown_txn", "txn_aborted"]);
const ABORT_CONTRADICTIONS: ReadonlySet<string> = new Set(["txn_committed"]);

function failureOf(e: unknown, timedOut: boolean): { ok: false; reason: Reason; message: string } {
  const info = errorInfo(e);
  if (timedOut || info.code === Code.DeadlineExceeded) return { ok: false, reason: "participant_timeout", message: info.message };
  if (BUSINESS_REASONS.has(info.reason) && isReason(info.reason)) return { ok: false, reason: info.reason, message: info.message };
  return { ok: false, reason: "participant_unavailable", message: `${info.reason}: ${info.message}` };
}

function toBankAccount(a: Account | undefined): BankAccount | undefined {
  if (!a) return undefined;
  return { accountId: a.accountId, ownerUserId: a.ownerUserId, currency: a.currency, balanceMinor: a.balanceMinor, heldMinor: a.heldMinor, availableMinor: a.availableMinor };
}

export function createBankClients(o: BankClientOptions): { participants: Participants; ledgers: Ledgers } {
  const clients = new Map<string, BankClients>();
  for (const [bank, baseUrl] of o.banks) {
    // File paths, not loaded material: a rotated gateway certificate is picked up without a restart.
    const transport = createMtlsTransport({ baseUrl, tls: o.tls, timeoutMs: o.ledgerTimeoutMs, interceptors: o.interceptors?.(bank) ?? [] });
    clients.set(bank, { participant: createClient(ParticipantService, transport), ledger: createClient(LedgerService, transport) });
  }
  const unknownBank = (bank: string) => ({ ok: false as const, reason: "participant_unavailable" as const, message: `bank ${bank} is not configured (BANKS)` });

  async function deliver(bank: string, call: (c: BankClients) => Promise<unknown>, contradictions: ReadonlySet<string>): Promise<Delivery> {
    const c = clients.get(bank);
    if (!c) return { ok: false, reason: unknownBank(bank).message, transient: true };
    try {
      await call(c);
      return { ok: true };
    } catch (e) {
      const info = errorInfo(e);
      if (contradictions.has(info.reason)) return { ok: false, reason: info.reason, transient: false };
      return { ok: false, reason: `${info.reason}: ${info.message}`, transient: true };
    }
  }

  const participants: Participants = {
    async prepare(bank, txnId, legs, signal) {
      const c = clients.get(bank);
      if (!c) return { vote: "NO", reason: "participant_unavailable" };
      try {
        const res = await c.participant.prepare(
          {
            txnId,
            legs: legs.map((l) => ({
              accountId: l.accountId,
              direction: LegDirection[l.direction],
              amountMinor: l.amountMinor,
              currency: l.currency,
              ownerUserId: l.ownerUserId,
              holdId: l.holdId ?? "",
              ...(l.holdExpiresAtMs !== undefined ? { holdExpiresAt: timestampFromMs(l.holdExpiresAtMs) } : {}),
            })),
          },
          { signal },
        );
        if (res.vote === Vote.YES) return { vote: "YES" };
        if (res.vote === Vote.NO && isReason(res.reason)) return { vote: "NO", reason: res.reason };
        o.logger.warn({ transactionId: txnId, bank, vote: res.vote, reason: res.reason }, "bank voted without a known reason; counting it as NO");
        return { vote: "NO", reason: "internal" };
      } catch (e) {
        return { vote: "NO", reason: failureOf(e, signal.aborted).reason };
      }
    },
    commit: (bank, txnId, timeoutMs) => deliver(bank, (c) => c.participant.commit({ txnId }, { timeoutMs }), COMMIT_CONTRADICTIONS),
    abort: (bank, txnId, timeoutMs) => deliver(bank, (c) => c.participant.abort({ txnId }, { timeoutMs }), ABORT_CONTRADICTIONS),
  };

  async function ledgerCall<T>(bank: string, call: (c: BankClients) => Promise<T | undefined>): Promise<BankResult<T>> {
    const c = clients.get(bank);
    if (!c) return unknownBank(bank);
    try {
      const value = await call(c);
      if (value === undefined) return { ok: false, reason: "participant_unavailable", message: `bank ${bank} sent an empty answer` };
      return { ok: true, value };
    } catch (e) {
      return failureOf(e, false);
    }
  }

  const ledgers: Ledgers = {
    getAccount: (bank, accountId) => ledgerCall(bank, async (c) => toBankAccount((await c.ledger.getAccount({ accountId })).account)),
    openAccount: (bank, ownerUserId, currency) => ledgerCall(bank, async (c) => toBankAccount((await c.ledger.openAccount({ ownerUserId, currency })).account)),
    deposit: (bank, depositId, accountId, amountMinor, currency) =>
      ledgerCall(bank, async (c) => toBankAccount((await c.ledger.deposit({ depositId, accountId, amountMinor, currency })).account)),
    totals: (bank, timeoutMs) =>
      ledgerCall(bank, async (c) => {
        const t = await c.ledger.totals({}, { timeoutMs });
        return {
          bank,
          currencies: t.currencies.map((x) => ({
            currency: x.currency,
            balanceMinor: x.balanceMinor,
            heldMinor: x.heldMinor,
            depositedMinor: x.depositedMinor,
            transferNetMinor: x.transferNetMinor,
          })),
          prepared: t.prepared.map((p) => ({ txnId: p.txnId, preparedAtMs: p.preparedAt ? timestampMs(p.preparedAt) : 0 })),
          ledgerConsistent: t.ledgerConsistent,
          problems: t.problems,
        };
      }),
  };

  return { participants, ledgers };
}
