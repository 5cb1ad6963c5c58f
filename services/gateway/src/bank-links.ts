// Connect clients for the banks' LinkService (DESIGN.md §11), over mTLS with
// the gateway's own certificate (a bank answers only that identity). They
// implement the domain's BankLinks port and turn every transport failure
// into a value: the bank's own reasons pass through, anything else is
// participant_unavailable (or participant_timeout).
import { Code, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { LinkService } from "@paygate/proto/bank";
import { createMtlsTransport, errorInfo, type Reason, type TlsFiles } from "@paygate/rpc";
import { toBankAccount } from "./banks.js";
import { bankFailure } from "./domain/participant-replies.js";
import type { BankLinks, BankResult } from "./domain/ports.js";

export interface BankLinkClientOptions {
  readonly banks: ReadonlyMap<string, string>;
  readonly tls: TlsFiles;
  readonly timeoutMs: number;
  /** Per bank (trace propagation, client metrics). */
  readonly interceptors?: (bank: string) => Interceptor[];
}

/** What a bank may answer about the request or the account; anything else says nothing about them. */
const LINK_REASONS: ReadonlySet<string> = new Set<Reason>([
  "link_failed",
  "link_locked",
  "already_linked",
  "account_not_found",
  "account_closed",
  "invalid_argument",
  "invalid_account_id",
]);

export function createBankLinkClients(o: BankLinkClientOptions): BankLinks {
  const clients = new Map<string, Client<typeof LinkService>>();
  for (const [bank, baseUrl] of o.banks) {
    // File paths, not loaded material: a rotated gateway certificate is picked up without a restart.
    clients.set(
      bank,
      createClient(
        LinkService,
        createMtlsTransport({
          baseUrl,
          tls: o.tls,
          timeoutMs: o.timeoutMs,
          interceptors: o.interceptors?.(bank) ?? [],
        }),
      ),
    );
  }

  async function call<T>(
    bank: string,
    fn: (c: Client<typeof LinkService>) => Promise<T | undefined>,
  ): Promise<BankResult<T>> {
    const c = clients.get(bank);
    if (!c) return { ok: false, reason: "participant_unavailable", message: `bank ${bank} is not configured (BANKS)` };
    try {
      const value = await fn(c);
      if (value === undefined)
        return { ok: false, reason: "participant_unavailable", message: `bank ${bank} sent an empty answer` };
      return { ok: true, value };
    } catch (e) {
      const info = errorInfo(e);
      return bankFailure(
        { reason: info.reason, message: info.message, timedOut: info.code === Code.DeadlineExceeded },
        LINK_REASONS,
      );
    }
  }

  return {
    verify: (bank, input) =>
      call(bank, async (c) => toBankAccount((await c.verifyLink(input, { timeoutMs: o.timeoutMs })).account)),
    issueCode: (bank, accountId, holderName) =>
      call(bank, async (c) => {
        const res = await c.issueLinkCode({ accountId, holderName }, { timeoutMs: o.timeoutMs });
        return { linkCode: res.linkCode, holderName: res.holderName };
      }),
    unlink: (bank, accountId) =>
      call(bank, async (c) => {
        const res = await c.unlink({ accountId }, { timeoutMs: o.timeoutMs });
        const account = toBankAccount(res.account);
        return account && { account, previousOwnerUserId: res.previousOwnerUserId };
      }),
  };
}
