import type { Command } from "commander";
import { asking, type App } from "../app.js";
import { ExitCode, usageError } from "../output.js";
import { prompt } from "./prompt.js";

export function registerRegister(program: Command, app: App): void {
  program
    .command("register")
    .summary("sign up: create your customer user at the gateway")
    .description(
      "Creates a customer user with no accounts (then `paycli login`, and `paycli link` the accounts you\n" +
        "hold at your banks). Usernames are 3-32 of a-z 0-9 _ . - starting with a letter; passwords at\n" +
        "least 10 characters and not a common one. The password comes from --password, else\n" +
        "PAYCLI_PASSWORD, else a prompt that does not echo and asks twice (only on a terminal).",
    )
    .argument("[username]", "the username you want (prompted for on a terminal if omitted)")
    .option("--display-name <name>", "the name shown to people (default: the username)", "")
    .option(
      "--password <password>",
      "the password (visible in `ps` and shell history: prefer PAYCLI_PASSWORD or the prompt)",
    )
    .addHelpText(
      "after",
      `
Exit codes: 0 created; 1 refused (username taken or malformed, password too short or common, too many
sign-ups from here: rate_limited) or gateway unreachable; 2 no password and no terminal, or the two
typed passwords differ.

Examples:
  $ paycli register dana --display-name "Dana Newcomer" && paycli login dana
  $ PAYCLI_PASSWORD='a long passphrase' paycli register dana --json`,
    )
    .action(async (username: string | undefined, opts: { displayName: string; password?: string }, cmd: Command) => {
      app.use(cmd);
      app.config();
      const name = username ?? (await prompt(app.io.stdin, app.io.stderr, "username: ", false)).trim();
      let password = opts.password ?? app.env.PAYCLI_PASSWORD;
      if (password === undefined) {
        password = await prompt(app.io.stdin, app.io.stderr, `new password for ${name}: `, true);
        const again = await prompt(app.io.stdin, app.io.stderr, "the same password again: ", true);
        if (again !== password) throw usageError("passwords_differ", "the two passwords differ; nothing was sent");
      }
      const user = await asking(
        app.gateway(null).register({ username: name, password, displayName: opts.displayName }),
      );
      app.print(
        { user },
        `created user ${user.username} (id ${user.userId}, ${user.displayName}); next: paycli login ${user.username}`,
      );
      app.exitCode = ExitCode.ok;
    });
}
