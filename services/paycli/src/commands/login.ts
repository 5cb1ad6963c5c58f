import type { Command } from "commander";
import { failureError, type App } from "../app.js";
import { PENDING_STATES } from "../domain/queue.js";
import { GatewayError } from "../gateway-client.js";
import { ExitCode, formatTime } from "../output.js";
import type { CachedAccount } from "../store/session-store.js";
import { prompt } from "./prompt.js";

export function registerLogin(program: Command, app: App): void {
  program
    .command("login")
    .summary("log in and save the session token")
    .description(
      "Logs in to the gateway and saves the session (token, user, roles, expiry, your account list)\n" +
        "in $PAYCLI_HOME/session.json, readable only by you (mode 0600). The password comes from\n" +
        "--password, else the PAYCLI_PASSWORD environment variable, else a prompt that does not echo\n" +
        "(only on a terminal). The account list lets `pay` choose --from even while offline.",
    )
    .argument("[username]", "your username (prompted for on a terminal if omitted)")
    .option(
      "--password <password>",
      "the password (visible in `ps` and shell history: prefer PAYCLI_PASSWORD or the prompt)",
    )
    .addHelpText(
      "after",
      `
Exit codes: 0 logged in; 1 wrong credentials, locked, or gateway unreachable; 2 no password and no terminal.

Examples:
  $ paycli login alice
  $ PAYCLI_PASSWORD=alice-demo-2026 paycli login alice --json`,
    )
    .action(async (username: string | undefined, opts: { password?: string }, cmd: Command) => {
      app.use(cmd);
      const config = app.config();
      const name = username ?? (await prompt(app.io.stdin, app.io.stderr, "username: ", false)).trim();
      const password =
        opts.password ??
        app.env.PAYCLI_PASSWORD ??
        (await prompt(app.io.stdin, app.io.stderr, `password for ${name}: `, true));
      let login;
      try {
        login = await app.gateway(null).login(name, password);
      } catch (e) {
        throw failureError(e);
      }
      // Best effort: with the account list cached, `pay` can pick --from offline.
      let accounts: CachedAccount[] = [];
      let accountsSeenAt: string | null = null;
      try {
        accounts = (await app.gateway(login.token).balances()).map((a) => ({
          accountId: a.accountId,
          currency: a.currency,
          bank: a.bank,
        }));
        accountsSeenAt = new Date(app.now()).toISOString();
      } catch (e) {
        if (!(e instanceof GatewayError)) throw e;
      }
      const expiresAt = (login.expiresAt ?? new Date(app.now())).toISOString();
      app.sessions().save({
        gatewayUrl: config.gatewayUrl,
        token: login.token,
        userId: login.userId,
        username: name,
        roles: login.roles,
        expiresAt,
        accounts,
        accountsSeenAt,
      });

      const waiting = app
        .queue()
        .pending(10_000)
        .filter((e) => e.userId === login.userId && PENDING_STATES.includes(e.state)).length;
      const lines = [
        `logged in as ${name} (user ${login.userId}, ${login.roles.join(", ") || "no roles"}) until ${formatTime(login.expiresAt)}`,
      ];
      if (accounts.length > 0)
        lines.push(`accounts: ${accounts.map((a) => `${a.accountId} (${a.currency})`).join(", ")}`);
      if (waiting > 0) lines.push(`${waiting} queued payment${waiting === 1 ? "" : "s"} waiting: run \`paycli sync\``);
      app.print(
        { userId: login.userId, username: name, roles: login.roles, expiresAt, accounts, queued: waiting },
        lines.join("\n"),
      );
      app.exitCode = ExitCode.ok;
    });
}

export function registerLogout(program: Command, app: App): void {
  program
    .command("logout")
    .summary("end the session and forget the token")
    .description(
      "Revokes the session at the gateway and deletes $PAYCLI_HOME/session.json. If the gateway\n" +
        "cannot be reached the local token is still deleted (it stays valid on the gateway until it\n" +
        "expires). Queued payments stay queued and are sent after you log in again as the same user.",
    )
    .addHelpText("after", "\nExamples:\n  $ paycli logout\n  $ paycli logout --json")
    .action(async (_opts: unknown, cmd: Command) => {
      app.use(cmd);
      const sessions = app.sessions();
      let session;
      try {
        session = sessions.load();
      } catch {
        session = undefined;
      }
      if (session === undefined) {
        sessions.clear();
        app.print({ loggedOut: false, revoked: false }, "not logged in");
        app.exitCode = ExitCode.ok;
        return;
      }
      let revoked = true;
      let warning: string | null = null;
      try {
        await app.gateway(session.token).logout();
      } catch (e) {
        if (!(e instanceof GatewayError)) throw e;
        // needs_login: the gateway no longer knows the token, which is what we wanted.
        if (e.failure.kind !== "needs_login") {
          revoked = false;
          warning = `could not revoke the session at the gateway (${e.failure.message}); it stays valid there until ${formatTime(new Date(session.expiresAt))}`;
        }
      }
      sessions.clear();
      const waiting = app
        .queue()
        .pending(10_000)
        .filter((e) => e.userId === session.userId).length;
      if (warning !== null) app.note(`warning: ${warning}`);
      const lines = [`logged out ${session.username}`];
      if (waiting > 0)
        lines.push(
          `${waiting} queued payment${waiting === 1 ? "" : "s"} stay queued until you log in again as ${session.username}`,
        );
      app.print({ loggedOut: true, revoked, warning, queued: waiting }, lines.join("\n"));
      app.exitCode = ExitCode.ok;
    });
}
