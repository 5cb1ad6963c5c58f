import type { Command } from "commander";
import { checkHolderNameShape, normalizeLinkCode } from "@paygate/vocab";
import { asking, type App } from "../app.js";
import { ExitCode, money, requireAccountIdArg, usageError } from "../output.js";
import { prompt } from "./prompt.js";

export function registerLink(program: Command, app: App): void {
  program
    .command("link")
    .summary("link an account you hold at a bank, with the code your bank gave you")
    .description(
      "Asks the account's bank, through the gateway, to check that you hold the account: the holder's\n" +
        "name as the bank knows it and the link code the bank gave you (e.g. in online banking). Then the\n" +
        "account is yours at the gateway: `balance` shows it and `pay --from` uses it. The code is read\n" +
        "from --code, else PAYCLI_LINK_CODE, else a prompt that does not echo (only on a terminal). After\n" +
        "a few wrong tries the bank locks the account's linking until it gives you a new code.",
    )
    .argument("<account>", "the account id, e.g. bank-a/1004")
    .option("--holder <name>", "the account holder's name (prompted for on a terminal if omitted)")
    .option("--code <code>", "the link code (visible in `ps` and shell history: prefer PAYCLI_LINK_CODE or the prompt)")
    .addHelpText(
      "after",
      `
Exit codes: 0 linked (or already yours); 1 refused: link_failed (the account, name and code do not
match; an unknown account answers the same), link_locked, rate_limited, or the gateway or the bank
unreachable; 2 malformed account, name or code, or nothing to prompt on.

Examples:
  $ paycli link bank-a/1004 --holder "Dana Newcomer"
  $ PAYCLI_LINK_CODE=DANA-2026-BANK-A paycli link bank-a/1004 --holder "Dana Newcomer" --json`,
    )
    .action(async (accountId: string, opts: { holder?: string; code?: string }, cmd: Command) => {
      app.use(cmd);
      requireAccountIdArg(accountId, "bank-a/1004");
      const session = app.requireSession();
      const holderName =
        opts.holder ?? (await prompt(app.io.stdin, app.io.stderr, "account holder's name: ", false)).trim();
      const nameProblem = checkHolderNameShape(holderName);
      if (nameProblem) throw usageError("invalid_argument", nameProblem);
      const linkCode =
        opts.code ??
        app.env.PAYCLI_LINK_CODE ??
        (await prompt(app.io.stdin, app.io.stderr, `link code for ${accountId}: `, true));
      if (normalizeLinkCode(linkCode) === undefined)
        throw usageError("invalid_argument", "a link code is 8 to 32 letters and digits (dashes and spaces allowed)");
      const account = await asking(app.gateway(session.token).linkBankAccount({ accountId, holderName, linkCode }));
      // So that `pay --from` knows it offline too.
      const cached = session.accounts.filter((a) => a.accountId !== account.accountId);
      app.sessions().save({
        ...session,
        accounts: [...cached, { accountId: account.accountId, currency: account.currency, bank: account.bank }],
      });
      app.print(
        {
          account: {
            ...account,
            balance: money(account.balanceMinor, account.currency),
            available: money(account.availableMinor, account.currency),
          },
        },
        `linked ${account.accountId} (${account.currency}) at ${account.bank}: balance ${money(account.balanceMinor, account.currency)}`,
      );
      app.exitCode = ExitCode.ok;
    });
}
