import { randomUUID } from "node:crypto";
import type { Command } from "commander";
import { parseMajorAmount } from "@paygate/money";
import { checkIdempotencyKeyShape } from "@paygate/vocab";
import { asking, failureError, type App } from "../app.js";
import { CliError, ExitCode, formatTable, money, requireAccountIdArg, usageError } from "../output.js";
import type { RoleName } from "../views.js";
import { prompt } from "./prompt.js";

const ROLES: readonly RoleName[] = ["customer", "merchant", "admin"];

export function registerAdmin(program: Command, app: App): void {
  const admin = program
    .command("admin")
    .summary("create users and accounts, deposit, reconcile (admin role)")
    .description(
      "Administration through the gateway's AdminService. Your session must have the admin role\n(e.g. `paycli login admin`); others get permission_denied.",
    )
    .addHelpText(
      "after",
      "\nExamples:\n  $ paycli admin create-user carol --role customer\n  $ paycli admin open-account carol --bank bank-a --currency USD\n  $ paycli admin deposit bank-a/1003 250.00\n  $ paycli admin issue-link-code bank-a/1004\n  $ paycli admin unlink bank-a/1004\n  $ paycli admin reconcile",
    );

  addCreateUserCommand(admin, app);
  addOpenAccountCommand(admin, app);
  addDepositCommand(admin, app);
  addIssueLinkCodeCommand(admin, app);
  addUnlinkCommand(admin, app);
  addReconcileCommand(admin, app);
}

function addCreateUserCommand(admin: Command, app: App): void {
  admin
    .command("create-user")
    .summary("create a user")
    .argument("<username>", "login name for the new user")
    .option("--password <password>", "initial password (else PAYCLI_NEW_PASSWORD, else a prompt)")
    .option(
      "--role <role>",
      `role, repeatable: ${ROLES.join(", ")} (default customer)`,
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option("--display-name <name>", "name shown to people", "")
    .addHelpText(
      "after",
      "\nExamples:\n  $ paycli admin create-user carol --role customer --display-name 'Carol C'\n  $ PAYCLI_NEW_PASSWORD=s3cret-enough paycli admin create-user shop2 --role merchant --json",
    )
    .action(
      async (username: string, opts: { password?: string; role: string[]; displayName: string }, cmd: Command) => {
        app.use(cmd);
        const roles = (opts.role.length === 0 ? ["customer"] : opts.role).map((r) => r.toLowerCase());
        const bad = roles.filter((r) => !(ROLES as readonly string[]).includes(r));
        if (bad.length > 0)
          throw usageError("invalid_argument", `unknown role ${bad.join(", ")}; use ${ROLES.join(", ")}`);
        const session = app.requireSession();
        const client = app.gateway(session.token);
        const password =
          opts.password ??
          app.env.PAYCLI_NEW_PASSWORD ??
          (await prompt(app.io.stdin, app.io.stderr, `password for new user ${username}: `, true));
        const user = await asking(
          client.createUser({ username, password, roles: roles as RoleName[], displayName: opts.displayName }),
        );
        app.print({ user }, `created user ${user.username} (id ${user.userId}; ${user.roles.join(", ")})`);
        app.exitCode = ExitCode.ok;
      },
    );
}

function addOpenAccountCommand(admin: Command, app: App): void {
  admin
    .command("open-account")
    .summary("open an account for a user at a bank")
    .argument("<owner-user-id>", "the user who will own the account")
    .requiredOption("--bank <bank>", "the bank to open it at, e.g. bank-a")
    .option("--currency <code>", "ISO 4217 currency", "USD")
    .addHelpText(
      "after",
      "\nExamples:\n  $ paycli admin open-account carol --bank bank-a\n  $ paycli admin open-account carol --bank bank-b --currency EUR --json",
    )
    .action(async (owner: string, opts: { bank: string; currency: string }, cmd: Command) => {
      app.use(cmd);
      const session = app.requireSession();
      const account = await asking(
        app
          .gateway(session.token)
          .openAccount({ ownerUserId: owner, bank: opts.bank, currency: opts.currency.toUpperCase() }),
      );
      app.print(
        { account },
        `opened ${account.accountId} (${account.currency}) at ${account.bank} for ${account.ownerUserId}`,
      );
      app.exitCode = ExitCode.ok;
    });
}

function addDepositCommand(admin: Command, app: App): void {
  admin
    .command("deposit")
    .summary("add money to an account (the only way money enters the system)")
    .argument("<account>", "the account to credit, e.g. bank-a/1001")
    .argument("<amount>", "amount in major units, e.g. 250.00")
    .option("--currency <code>", "ISO 4217 currency", "USD")
    .option("--key <idempotency-key>", "reuse the key of a deposit whose outcome you did not see (default: a new UUID)")
    .addHelpText(
      "after",
      "\nA deposit is not queued offline: if the gateway does not answer, the key is printed — run the\nsame command with --key <that key> and it is applied at most once.\n\nExamples:\n  $ paycli admin deposit bank-a/1001 250.00\n  $ paycli admin deposit bank-a/1001 250.00 --key 5d1e...",
    )
    .action(async (account: string, amountText: string, opts: { currency: string; key?: string }, cmd: Command) => {
      app.use(cmd);
      const amountMinor = parseMajorAmount(amountText);
      if (amountMinor === undefined || amountMinor <= 0n)
        throw usageError(
          "invalid_amount",
          `amount ${JSON.stringify(amountText)} is not a positive number like 250 or 250.00`,
        );
      const currency = opts.currency.toUpperCase();
      requireAccountIdArg(account, "bank-a/1001");
      const session = app.requireSession();
      const key = opts.key ?? randomUUID();
      const keyProblem = checkIdempotencyKeyShape(key);
      if (keyProblem) throw usageError("idempotency_key_missing", keyProblem);
      let after;
      try {
        after = await app.gateway(session.token).deposit({ key, accountId: account, amountMinor, currency });
      } catch (e) {
        const err = failureError(e);
        throw new CliError(
          err.exitCode,
          err.reason,
          `${err.message} (deposit key ${key}: if unsure whether it was applied, run the same command with --key ${key})`,
          { ...err.details, key },
        );
      }
      app.print(
        { key, account: after },
        `deposited ${money(amountMinor, currency)} to ${after.accountId}; balance now ${money(after.balanceMinor, after.currency)} (key ${key})`,
      );
      app.exitCode = ExitCode.ok;
    });
}

function addIssueLinkCodeCommand(admin: Command, app: App): void {
  admin
    .command("issue-link-code")
    .summary("ask an account's bank for a new link code (shown once)")
    .description(
      "For an account that belongs to no user: its bank makes a new code (it keeps only a hash),\n" +
        "replacing the old one and lifting a lock after failed attempts. Give the code to the holder.",
    )
    .argument("<account>", "the account, e.g. bank-a/1004")
    .option("--holder <name>", "the holder's name for the bank to record (needed if it has none)", "")
    .addHelpText(
      "after",
      "\nExamples:\n  $ paycli admin issue-link-code bank-a/1004\n  $ paycli admin issue-link-code bank-b/2009 --holder 'Frank Fresh' --json",
    )
    .action(async (account: string, opts: { holder: string }, cmd: Command) => {
      app.use(cmd);
      requireAccountIdArg(account, "bank-a/1004");
      const session = app.requireSession();
      const issued = await asking(
        app.gateway(session.token).issueLinkCode({ accountId: account, holderName: opts.holder }),
      );
      app.print(
        issued,
        `link code for ${issued.accountId} (holder ${issued.holderName}): ${issued.linkCode}\nshown once: the bank keeps only a hash`,
      );
      app.exitCode = ExitCode.ok;
    });
}

function addUnlinkCommand(admin: Command, app: App): void {
  admin
    .command("unlink")
    .summary("take an account away from its user (at its bank, then at the gateway)")
    .argument("<account>", "the account, e.g. bank-a/1004")
    .addHelpText(
      "after",
      "\nIt can be linked again with a new code (issue-link-code).\n\nExamples:\n  $ paycli admin unlink bank-a/1004",
    )
    .action(async (account: string, _opts: unknown, cmd: Command) => {
      app.use(cmd);
      requireAccountIdArg(account, "bank-a/1004");
      const session = app.requireSession();
      const r = await asking(app.gateway(session.token).unlinkBankAccount(account));
      app.print(
        r,
        r.previousOwnerUserId === ""
          ? `${r.accountId} already belonged to nobody`
          : `unlinked ${r.accountId} from ${r.previousOwnerUserId}`,
      );
      app.exitCode = ExitCode.ok;
    });
}

function addReconcileCommand(admin: Command, app: App): void {
  admin
    .command("reconcile")
    .summary("check that money is conserved across all banks")
    .description(
      "Asks every bank for its totals: per currency, the sum of balances must equal the sum of\ndeposits; lists unreachable banks, inconsistent ledgers and in-doubt transactions.",
    )
    .addHelpText(
      "after",
      "\nExit codes: 0 conserved; 1 not conserved (or a bank did not answer).\n\nExamples:\n  $ paycli admin reconcile\n  $ paycli admin reconcile --json | jq .conserved",
    )
    .action(async (_opts: unknown, cmd: Command) => {
      app.use(cmd);
      const session = app.requireSession();
      const r = await asking(app.gateway(session.token).reconcile());
      const text = [
        r.conserved ? "conserved: yes" : "conserved: NO",
        formatTable(
          [
            { header: "CURRENCY" },
            { header: "BALANCES", align: "right" },
            { header: "HELD", align: "right" },
            { header: "DEPOSITED", align: "right" },
            { header: "CONSERVED" },
          ],
          r.currencies.map((c) => [
            c.currency,
            money(c.balanceMinor, c.currency),
            money(c.heldMinor, c.currency),
            money(c.depositedMinor, c.currency),
            c.conserved ? "yes" : "NO",
          ]),
        ),
        formatTable(
          [
            { header: "BANK" },
            { header: "REACHABLE" },
            { header: "LEDGER OK" },
            { header: "PREPARED", align: "right" },
            { header: "PROBLEMS" },
          ],
          r.banks.map((b) => [
            b.bank,
            b.reachable ? "yes" : "NO",
            b.ledgerConsistent ? "yes" : "NO",
            b.preparedCount.toString(),
            b.problems.join("; ") || "-",
          ]),
        ),
        r.inDoubt.length === 0
          ? "in doubt: none"
          : `in doubt:\n${formatTable(
              [{ header: "TRANSACTION" }, { header: "WHERE" }, { header: "STATE" }, { header: "AGE", align: "right" }],
              r.inDoubt.map((d) => [d.transactionId, d.where, d.state, `${(Number(d.ageMs) / 1000).toFixed(1)}s`]),
            )}`,
      ].join("\n");
      app.print(r, text);
      app.exitCode = r.conserved ? ExitCode.ok : ExitCode.failed;
    });
}
