import type { Command } from "commander";
import { failureError, type App } from "../app.js";
import { ExitCode, formatTable, money } from "../output.js";

export function registerBalance(program: Command, app: App): void {
  program
    .command("balance")
    .summary("show your accounts: balance, held, available")
    .description(
      "Shows one of your accounts, or all of them: the posted balance, the amount held (by payments\n" +
        "being decided and by card authorizations) and what is available to spend (balance - held).",
    )
    .argument("[account]", "one account id, e.g. bank-a/1001 (default: all of yours)")
    .addHelpText(
      "after",
      "\nExamples:\n  $ paycli balance\n  $ paycli balance bank-a/1001\n  $ paycli balance --json | jq -r '.accounts[] | .accountId + \" \" + .available'",
    )
    .action(async (account: string | undefined, _opts: unknown, cmd: Command) => {
      app.use(cmd);
      const session = app.requireSession();
      let accounts;
      try {
        accounts = await app.gateway(session.token).balances(account);
      } catch (e) {
        throw failureError(e);
      }
      if (account === undefined) {
        app.sessions().save({
          ...session,
          accounts: accounts.map((a) => ({ accountId: a.accountId, currency: a.currency, bank: a.bank })),
          accountsSeenAt: new Date(app.now()).toISOString(),
        });
      }
      const rows = accounts.map((a) => [
        a.accountId,
        a.currency,
        money(a.balanceMinor, a.currency),
        money(a.heldMinor, a.currency),
        money(a.availableMinor, a.currency),
      ]);
      app.print(
        {
          accounts: accounts.map((a) => ({
            ...a,
            balance: money(a.balanceMinor, a.currency),
            held: money(a.heldMinor, a.currency),
            available: money(a.availableMinor, a.currency),
          })),
        },
        accounts.length === 0
          ? "no accounts"
          : formatTable(
              [
                { header: "ACCOUNT" },
                { header: "CURRENCY" },
                { header: "BALANCE", align: "right" },
                { header: "HELD", align: "right" },
                { header: "AVAILABLE", align: "right" },
              ],
              rows,
            ),
      );
      app.exitCode = ExitCode.ok;
    });
}
