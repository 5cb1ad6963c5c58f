// Connect clients for the participant banks, over mTLS with the gateway's own
// certificate. They implement the domain's Participants and Ledgers ports and
// turn every transport failure into a value (these ports never throw).
import {
  Code,
  createClient,
  createContextValues,
  type Client,
  type ContextValues,
  type Interceptor,
} from "@connectrpc/connect";
import { context, type Context, type Tracer } from "@opentelemetry/api";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  LedgerService,
  LegDirection,
  ParticipantService,
  Vote,
  type Account,
  type BatchItemError,
  type PrepareRequestSchema,
  type PrepareBatchResponse,
  type PrepareResponse,
} from "@paygate/proto/bank";
import { createMtlsTransport, errorInfo, isReason, rejection, type Logger, type TlsFiles } from "@paygate/rpc";
import type { LegDirection as LegDirectionName } from "@paygate/vocab";
import { batchItemSpansKey, noopTracer, startBatchItemSpans } from "@paygate/telemetry";
import { createBatcher, type Batcher } from "./batcher.js";
import {
  bankFailure,
  deliveryOfFailure,
  knownVoteOf,
  UNKNOWN_ANSWER_VOTE,
  voteOfFailure,
  type DecisionKind,
  type FailedCall,
} from "./domain/participant-replies.js";
import type { BankAccount, BankResult, Delivery, Leg, Ledgers, Participants } from "./domain/ports.js";

type PrepareInit = MessageInitShape<typeof PrepareRequestSchema>;

/** How one bank's Prepare / Commit / Abort calls become batched RPCs. */
interface ParticipantCalls {
  prepare(req: PrepareInit, signal: AbortSignal): Promise<PrepareResponse>;
  commit(txnId: string, timeoutMs: number): Promise<void>;
  abort(txnId: string, timeoutMs: number): Promise<void>;
  /**
   * Before a read of the bank: waiting Commits leave now, and the answer is
   * when every Commit sent so far has been answered (so the read sees them
   * applied); undefined when none is outstanding.
   */
  flushCommits(): Promise<unknown> | undefined;
}

interface BankClients {
  readonly participant: ParticipantCalls;
  readonly ledger: Client<typeof LedgerService>;
}

export interface BatchingOptions {
  readonly itemsMax: number;
  readonly inflightMax: number;
  /** Per PrepareBatch RPC (each item also keeps its own deadline). */
  readonly prepareTimeoutMs: number;
  /** Per CommitBatch / AbortBatch RPC. */
  readonly decisionTimeoutMs: number;
  /**
   * How long a Commit waits for the next PrepareBatch to its bank, to ride
   * along in it (one RPC, one fsync at the bank); 0 or unset = it leaves at once.
   */
  readonly commitRideMs?: number;
}

export interface BankClientOptions {
  readonly banks: ReadonlyMap<string, string>;
  readonly tls: TlsFiles;
  readonly logger: Logger;
  /** Default per-call timeout for ledger calls. */
  readonly ledgerTimeoutMs: number;
  /** Per bank (trace propagation, client metrics). */
  readonly interceptors?: (bank: string) => Interceptor[];
  /** Coalesce participant calls into PrepareBatch / CommitBatch / AbortBatch; unset = one RPC per call. */
  readonly batching?: BatchingOptions;
  /** For the per-item spans of batched calls (the interceptors make the call spans); default: none. */
  readonly tracer?: Tracer;
}

/** A thrown bank call as the transport reported it; the meaning is participant-replies.ts's. */
function failedCall(e: unknown, timedOut: boolean): FailedCall {
  const info = errorInfo(e);
  return { reason: info.reason, message: info.message, timedOut: timedOut || info.code === Code.DeadlineExceeded };
}

/**
 * A direction on the wire: the value of the enum named as @paygate/vocab
 * names it (LEG_DIRECTIONS), which the bank reads into its ledger's name.
 * Compiles only while every vocabulary direction is a value of the enum.
 */
const wireDirection = (d: LegDirectionName): LegDirection => LegDirection[d];

function legMsg(l: Leg): NonNullable<PrepareInit["legs"]>[number] {
  return {
    accountId: l.accountId,
    direction: wireDirection(l.direction),
    amountMinor: l.amountMinor,
    currency: l.currency,
    ownerUserId: l.ownerUserId,
    holdId: l.holdId ?? "",
    ...(l.holdTtlMs !== undefined ? { holdTtlMs: BigInt(l.holdTtlMs) } : {}),
  };
}

/** A bank's Account message as the domain reads it (the ledger and link clients both answer with one). */
export function toBankAccount(a: Account | undefined): BankAccount | undefined {
  if (!a) return undefined;
  return {
    accountId: a.accountId,
    ownerUserId: a.ownerUserId,
    currency: a.currency,
    balanceMinor: a.balanceMinor,
    heldMinor: a.heldMinor,
    availableMinor: a.availableMinor,
  };
}

/** A batch item's error, raised as the single call would have raised it. */
function itemError(e: BatchItemError | undefined): Error {
  const reason = e?.reason ?? "";
  return isReason(reason)
    ? rejection(reason, e?.message ?? reason)
    : new Error(`bank answered a batch item with an unknown reason ${JSON.stringify(reason)}: ${e?.message ?? ""}`);
}

function singleCalls(client: Client<typeof ParticipantService>): ParticipantCalls {
  return {
    prepare: (req, signal) => client.prepare(req, { signal }),
    commit: async (txnId, timeoutMs) => void (await client.commit({ txnId }, { timeoutMs })),
    abort: async (txnId, timeoutMs) => void (await client.abort({ txnId }, { timeoutMs })),
    flushCommits: () => undefined,
  };
}

type Traced<T> = { readonly item: T; readonly ctx: Context };
type CommitAnswer = BatchItemError | undefined;

/** A Commit waiting to ride along with the next PrepareBatch to its bank (DESIGN.md §3.3). */
interface Rider extends Traced<string> {
  readonly resolve: (answer: CommitAnswer) => void;
  readonly reject: (e: unknown) => void;
}

interface CommitRides {
  /** Resolves with the Commit's answer: it rode a PrepareBatch, or left alone after the ride window. */
  wait(item: Traced<string>): Promise<CommitAnswer>;
  /** Up to `max` waiting Commits board a PrepareBatch that is about to leave. */
  board(max: number): Rider[];
  /** The bank answered a PrepareBatch without commit_results (it predates them): these go alone, and all later ones. */
  unsupported(riders: readonly Rider[]): void;
  /** Every waiting Commit leaves now, alone. */
  flush(): void;
}

function createCommitRides(
  rideMs: number,
  alone: (item: Traced<string>) => Promise<CommitAnswer>,
  onUnsupported: () => void,
): CommitRides {
  let waiting: Rider[] = [];
  let timer: NodeJS.Timeout | undefined;
  let supported = true;
  const send = (r: Rider) => void alone(r).then(r.resolve, r.reject);
  function stopTimer(): void {
    clearTimeout(timer);
    timer = undefined;
  }
  function flush(): void {
    stopTimer();
    const leaving = waiting;
    waiting = [];
    leaving.forEach(send);
  }
  return {
    wait(item) {
      if (!supported) return alone(item);
      return new Promise<CommitAnswer>((resolve, reject) => {
        waiting.push({ ...item, resolve, reject });
        timer ??= setTimeout(flush, rideMs);
      });
    },
    board(max) {
      const riders = waiting.splice(0, max);
      if (waiting.length === 0) stopTimer();
      return riders;
    },
    unsupported(riders) {
      if (supported) onUnsupported();
      supported = false;
      riders.forEach(send);
      flush();
    },
    flush,
  };
}

const PREPARE_BATCH = "paygate.bank.v1.ParticipantService/PrepareBatch";
const COMMIT_BATCH = "paygate.bank.v1.ParticipantService/CommitBatch";
const ABORT_BATCH = "paygate.bank.v1.ParticipantService/AbortBatch";

/**
 * One batch RPC with a span per item in each item's own trace (named after
 * its group: a Commit riding a PrepareBatch is a CommitBatch item), all
 * linked from the batch's own span (@paygate/telemetry).
 */
async function inBatch<R>(
  tracer: Tracer,
  groups: readonly { readonly name: string; readonly items: readonly Traced<unknown>[] }[],
  call: (contextValues: ContextValues) => Promise<R>,
): Promise<R> {
  const spans = groups.map((g) =>
    startBatchItemSpans(
      tracer,
      g.name,
      g.items.map((i) => i.ctx),
    ),
  );
  const contextValues = createContextValues().set(
    batchItemSpansKey,
    spans.flatMap((x) => x.spans),
  );
  try {
    const r = await call(contextValues);
    for (const x of spans) x.end();
    return r;
  } catch (e) {
    for (const x of spans) x.end(e);
    throw e;
  }
}

// An item's error is its own answer, not the batch's: carry it as a value.
type PrepareOutcome = { readonly vote: PrepareResponse } | { readonly error: BatchItemError | undefined };

/** Commit or Abort batches: a batch of one is the single RPC, in its caller's trace. */
function decisionBatcher(
  client: Client<typeof ParticipantService>,
  b: BatchingOptions,
  tracer: Tracer,
  kind: "commit" | "abort",
): Batcher<Traced<string>, CommitAnswer> {
  const single = singleCalls(client);
  return createBatcher<Traced<string>, CommitAnswer>({
    itemsMax: b.itemsMax,
    inflightMax: b.inflightMax,
    async send(items) {
      if (items.length === 1) {
        await context.with(items[0]!.ctx, () => single[kind](items[0]!.item, b.decisionTimeoutMs));
        return [undefined];
      }
      const txnIds = items.map((i) => i.item);
      const name = kind === "commit" ? COMMIT_BATCH : ABORT_BATCH;
      const res = await inBatch(
        tracer,
        [{ name, items }],
        async (contextValues): Promise<{ readonly results: readonly { readonly error?: BatchItemError }[] }> =>
          kind === "commit"
            ? client.commitBatch({ txnIds }, { timeoutMs: b.decisionTimeoutMs, contextValues })
            : client.abortBatch({ txnIds }, { timeoutMs: b.decisionTimeoutMs, contextValues }),
      );
      return res.results.map((r) => r.error);
    },
  });
}

/**
 * Prepare batches, which carry the Commits waiting for a ride. A lone
 * Prepare with no Commit to carry is the single RPC, in its caller's trace.
 */
function prepareBatcher(
  client: Client<typeof ParticipantService>,
  b: BatchingOptions,
  tracer: Tracer,
  rides: CommitRides | undefined,
): Batcher<Traced<PrepareInit>, PrepareOutcome> {
  return createBatcher<Traced<PrepareInit>, PrepareOutcome>({
    itemsMax: b.itemsMax,
    inflightMax: b.inflightMax,
    async send(items) {
      const riders = rides?.board(b.itemsMax) ?? [];
      // A failed single call fails its one-item batch: the same error the caller would have seen.
      if (items.length === 1 && riders.length === 0)
        return [
          {
            vote: await context.with(items[0]!.ctx, () =>
              client.prepare(items[0]!.item, { timeoutMs: b.prepareTimeoutMs }),
            ),
          },
        ];
      let res: PrepareBatchResponse;
      try {
        res = await inBatch(
          tracer,
          [
            { name: PREPARE_BATCH, items },
            { name: COMMIT_BATCH, items: riders },
          ],
          (contextValues) =>
            client.prepareBatch(
              { items: items.map((i) => i.item), commitTxnIds: riders.map((r) => r.item) },
              { timeoutMs: b.prepareTimeoutMs, contextValues },
            ),
        );
      } catch (e) {
        // The riders' fate is as unknown as the Prepares': the redrive loop resends them.
        for (const r of riders) r.reject(e);
        throw e;
      }
      if (res.commitResults.length === riders.length) riders.forEach((r, i) => r.resolve(res.commitResults[i]!.error));
      else rides?.unsupported(riders);
      return res.results.map((r) =>
        r.outcome.case === "response" ? { vote: r.outcome.value } : { error: r.outcome.value },
      );
    },
  });
}

/**
 * Batched calls. Bigger batches are one RPC, one span and one fsync at the
 * bank for all of them; Commits wait up to `commitRideMs` to ride along with
 * a PrepareBatch (DESIGN.md §3.3).
 */
function batchedCalls(
  client: Client<typeof ParticipantService>,
  b: BatchingOptions,
  tracer: Tracer,
  onUnsupported: () => void,
): ParticipantCalls {
  // Each item remembers the trace context it was submitted in (its transfer's).
  const traced = <T>(item: T): Traced<T> => ({ item, ctx: context.active() });
  const commits = decisionBatcher(client, b, tracer, "commit");
  const aborts = decisionBatcher(client, b, tracer, "abort");
  const rideMs = b.commitRideMs ?? 0;
  const rides = rideMs > 0 ? createCommitRides(rideMs, (item) => commits.submit(item), onUnsupported) : undefined;
  const prepares = prepareBatcher(client, b, tracer, rides);
  const answer = (error: CommitAnswer) => {
    if (error) throw itemError(error);
  };
  // Commits not yet answered: a read of this bank waits for them.
  const outstanding = new Set<Promise<CommitAnswer>>();
  function commit(txnId: string): Promise<CommitAnswer> {
    const sent = rides ? rides.wait(traced(txnId)) : commits.submit(traced(txnId));
    outstanding.add(sent);
    const forget = () => void outstanding.delete(sent);
    sent.then(forget, forget);
    return sent;
  }
  return {
    async prepare(req, signal) {
      const outcome = await prepares.submit(traced(req), signal);
      if ("vote" in outcome) return outcome.vote;
      throw itemError(outcome.error);
    },
    commit: async (txnId) => answer(await commit(txnId)),
    abort: async (txnId) => answer(await aborts.submit(traced(txnId))),
    flushCommits() {
      if (outstanding.size === 0) return undefined;
      rides?.flush();
      return Promise.allSettled([...outstanding]);
    },
  };
}

export function createBankClients(o: BankClientOptions): { participants: Participants; ledgers: Ledgers } {
  const clients = new Map<string, BankClients>();
  for (const [bank, baseUrl] of o.banks) {
    // File paths, not loaded material: a rotated gateway certificate is picked up without a restart.
    const transport = createMtlsTransport({
      baseUrl,
      tls: o.tls,
      timeoutMs: o.ledgerTimeoutMs,
      interceptors: o.interceptors?.(bank) ?? [],
    });
    const participant = createClient(ParticipantService, transport);
    clients.set(bank, {
      participant: o.batching
        ? batchedCalls(participant, o.batching, o.tracer ?? noopTracer, () =>
            o.logger.warn(
              { bank },
              "bank answered a PrepareBatch without commit_results (an older bank): its Commits go on their own",
            ),
          )
        : singleCalls(participant),
      ledger: createClient(LedgerService, transport),
    });
  }
  const unknownBank = (bank: string) => ({
    ok: false as const,
    reason: "participant_unavailable" as const,
    message: `bank ${bank} is not configured (BANKS)`,
  });

  async function deliver(
    bank: string,
    kind: DecisionKind,
    call: (c: BankClients) => Promise<unknown>,
  ): Promise<Delivery> {
    const c = clients.get(bank);
    if (!c) return { ok: false, reason: unknownBank(bank).message, transient: true };
    try {
      await call(c);
      return { ok: true };
    } catch (e) {
      return deliveryOfFailure(kind, errorInfo(e));
    }
  }

  const participants: Participants = {
    async prepare(bank, txnId, legs, signal) {
      const c = clients.get(bank);
      if (!c) return { vote: "NO", reason: "participant_unavailable" };
      try {
        const res = await c.participant.prepare({ txnId, legs: legs.map(legMsg) }, signal);
        const vote = knownVoteOf({
          vote: res.vote === Vote.YES ? "YES" : res.vote === Vote.NO ? "NO" : "UNSPECIFIED",
          reason: res.reason,
        });
        if (vote) return vote;
        o.logger.warn(
          { transactionId: txnId, bank, vote: res.vote, reason: res.reason },
          "bank voted without a known reason; counting it as NO",
        );
        return UNKNOWN_ANSWER_VOTE;
      } catch (e) {
        return voteOfFailure(failedCall(e, signal.aborted));
      }
    },
    commit: (bank, txnId, timeoutMs) => deliver(bank, "commit", (c) => c.participant.commit(txnId, timeoutMs)),
    abort: (bank, txnId, timeoutMs) => deliver(bank, "abort", (c) => c.participant.abort(txnId, timeoutMs)),
  };

  async function ledgerCall<T>(bank: string, call: (c: BankClients) => Promise<T | undefined>): Promise<BankResult<T>> {
    const c = clients.get(bank);
    if (!c) return unknownBank(bank);
    // A read after a committed reply sees its Commit applied: the Commits decided
    // so far (waiting for a ride or on the wire) are answered first.
    await c.participant.flushCommits();
    try {
      const value = await call(c);
      if (value === undefined)
        return { ok: false, reason: "participant_unavailable", message: `bank ${bank} sent an empty answer` };
      return { ok: true, value };
    } catch (e) {
      return bankFailure(failedCall(e, false));
    }
  }

  const ledgers: Ledgers = {
    getAccount: (bank, accountId) =>
      ledgerCall(bank, async (c) => toBankAccount((await c.ledger.getAccount({ accountId })).account)),
    openAccount: (bank, ownerUserId, currency) =>
      ledgerCall(bank, async (c) => toBankAccount((await c.ledger.openAccount({ ownerUserId, currency })).account)),
    deposit: (bank, depositId, accountId, amountMinor, currency) =>
      ledgerCall(bank, async (c) =>
        toBankAccount((await c.ledger.deposit({ depositId, accountId, amountMinor, currency })).account),
      ),
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
          prepared: t.prepared.map((p) => ({
            txnId: p.txnId,
            preparedAtMs: p.preparedAt ? timestampMs(p.preparedAt) : 0,
          })),
          ledgerConsistent: t.ledgerConsistent,
          problems: t.problems,
        };
      }),
  };

  return { participants, ledgers };
}
