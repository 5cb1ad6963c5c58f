// Shared by the bank's service and process tests: certificates from the same
// script `make certs` uses, a small seed, and clients with a chosen identity.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { createClient, type Client } from "@connectrpc/connect";
import { LedgerService, ParticipantService } from "@paygate/proto/bank";
import { createMtlsTransport, type TlsFiles } from "@paygate/rpc";

export const repoRoot = resolve(fileURLToPath(new URL("../../..", import.meta.url)));

export const TEST_SEED = `
banks: [bank-a, bank-b]
users:
  - { id: alice, username: alice, password: pw, roles: [customer] }
  - { id: bob, username: bob, password: pw, roles: [customer] }
accounts:
  - { id: bank-a/1001, owner: alice, currency: USD, opening_minor: 100000 }
  - { id: bank-a/1002, owner: bob, currency: USD, opening_minor: 5000 }
  - { id: bank-a/1003, owner: alice, currency: EUR, opening_minor: 7000 }
  - { id: bank-b/2001, owner: bob, currency: USD, opening_minor: 50000 }
`;

export interface TestDir {
  readonly dir: string;
  readonly certs: string;
  readonly seedFile: string;
  cleanup(): void;
}

export function makeTestDir(prefix: string): TestDir {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const certs = join(dir, "certs");
  execFileSync("bash", [join(repoRoot, "scripts/certs.sh"), certs], { stdio: "ignore" });
  const seedFile = join(dir, "seed.yaml");
  writeFileSync(seedFile, TEST_SEED);
  return { dir, certs, seedFile, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function tlsFiles(certs: string, name: string): TlsFiles {
  return { caFile: join(certs, "ca.crt"), certFile: join(certs, `${name}.crt`), keyFile: join(certs, `${name}.key`) };
}

export interface BankClients {
  readonly participant: Client<typeof ParticipantService>;
  readonly ledger: Client<typeof LedgerService>;
}

export function bankClients(port: number, certs: string, certName: string): BankClients {
  const transport = createMtlsTransport({
    baseUrl: `https://127.0.0.1:${port}`,
    tls: tlsFiles(certs, certName),
    timeoutMs: 10_000,
  });
  return { participant: createClient(ParticipantService, transport), ledger: createClient(LedgerService, transport) };
}

let txnCounter = 0;
/** A fresh txn id "<replica>:<uuid>"; the counter keeps ids readable in failures. */
export function newTxnId(replica = "gateway-0"): string {
  txnCounter++;
  return `${replica}:${crypto.randomUUID().slice(0, 24)}${String(txnCounter).padStart(12, "0")}`;
}

/** The ledger proves itself, and per currency balances = deposited + committed transfers. */
export async function assertLedgerConsistent(ledger: BankClients["ledger"]): Promise<void> {
  const t = await ledger.totals({});
  assert.deepEqual(t.problems, []);
  assert.equal(t.ledgerConsistent, true);
  for (const c of t.currencies)
    assert.equal(c.balanceMinor, c.depositedMinor + c.transferNetMinor, `${t.bank} ${c.currency}`);
}
