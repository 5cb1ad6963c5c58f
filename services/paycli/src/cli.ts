// The command tree. runCli is the whole program minus the process: tests run
// it in-process with their own env, directories, streams and clock.
import { Command, CommanderError, Option } from "commander";
import { createApp, type RunOptions } from "./app.js";
import { DEFAULTS, FAULT_POINTS } from "./config.js";
import { CliError, ExitCode, toJson } from "./output.js";
import { registerAdmin } from "./commands/admin.js";
import { registerBalance } from "./commands/balance.js";
import { registerHistory } from "./commands/history.js";
import { registerLink } from "./commands/link.js";
import { registerLogin, registerLogout } from "./commands/login.js";
import { registerPay } from "./commands/pay.js";
import { registerQueue } from "./commands/queue.js";
import { registerRegister } from "./commands/register.js";
import { registerStatus } from "./commands/status.js";
import { registerSync } from "./commands/sync.js";
import { registerWebhooks } from "./commands/webhooks.js";

const MAIN_HELP = `
Exit codes (every command):
  0  ok
  1  declined, or another error from the gateway or the session (the reason is printed)
  2  usage error: bad arguments or flags, bad configuration, unreadable certificates
  3  payment queued: the gateway is unreachable or busy; \`paycli sync\` sends it later
     (also from \`sync\`/\`queue flush\` while payments remain queued)

Configuration (a flag beats the environment, which beats $PAYCLI_HOME/config.json, which beats the default):
  --gateway   PAYGATE_URL             gateway URL                ${DEFAULTS.gateway}
  --ca        PAYGATE_CA              CA certificate             ${DEFAULTS.ca}
  --cert      PAYGATE_CERT            client certificate         ${DEFAULTS.cert}
  --key-file  PAYGATE_KEY             client private key         ${DEFAULTS.keyFile}
              PAYCLI_HOME             session.json, queue.db     ~/.paycli
              PAYCLI_TIMEOUT_MS       per-call deadline          ${DEFAULTS.timeoutMs}
              PAYCLI_BACKOFF_BASE_MS  first retry within         ${DEFAULTS.backoffBaseMs}
              PAYCLI_BACKOFF_CAP_MS   longest wait between tries ${DEFAULTS.backoffCapMs}
              PAYCLI_ATTEMPTS_MAX     sends before giving up     ${DEFAULTS.attemptsMax}
              PAYCLI_KEEP_RESULTS     finished payments kept     ${DEFAULTS.keepResults}
              PAYCLI_QUEUE_MAX        queued payments allowed    ${DEFAULTS.queueMax}
              PAYCLI_PASSWORD         password for \`login\` and \`register\` (else --password or a prompt)
              PAYCLI_LINK_CODE        the bank's code for \`link\` (else --code or a prompt)
  config.json keys: gateway, ca, cert, keyFile, timeoutMs, backoffBaseMs, backoffCapMs, attemptsMax,
  keepResults, queueMax (paths relative to $PAYCLI_HOME).
  Test only: PAYCLI_FAULTPOINT=${FAULT_POINTS.join("|")} makes paycli SIGKILL itself at that point.

Examples:
  $ paycli register dana && paycli login dana
  $ paycli link bank-a/1004 --holder "Dana Newcomer"
  $ paycli login alice
  $ paycli balance
  $ paycli pay bank-b/2001 12.50 --memo "lunch"
  $ paycli queue && paycli sync --watch
  $ paycli history --follow
  $ paycli webhooks create --url https://shop.example/hook --events capture.succeeded`;

export function buildProgram(app: ReturnType<typeof createApp>): Command {
  const program = new Command("paycli");
  program
    .description(
      "paygate's command-line client: log in, check balances, pay (queued safely while offline), follow history.",
    )
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .configureOutput({
      writeOut: (s) => void app.io.stdout.write(s),
      writeErr: (s) => void app.io.stderr.write(s),
    })
    .exitOverride()
    .showHelpAfterError("(run with --help for usage)")
    .option("--json", "machine-readable output: one JSON document on stdout")
    .addOption(new Option("--gateway <url>", "gateway URL [env PAYGATE_URL]"))
    .addOption(new Option("--ca <file>", "CA certificate file [env PAYGATE_CA]"))
    .addOption(new Option("--cert <file>", "client certificate file [env PAYGATE_CERT]"))
    .addOption(new Option("--key-file <file>", "client private key file [env PAYGATE_KEY]"))
    .addHelpText("after", MAIN_HELP);

  registerRegister(program, app);
  registerLogin(program, app);
  registerLogout(program, app);
  registerBalance(program, app);
  registerLink(program, app);
  registerPay(program, app);
  registerHistory(program, app);
  registerQueue(program, app);
  registerSync(program, app);
  registerStatus(program, app);
  registerWebhooks(program, app);
  registerAdmin(program, app);
  reflowDescriptions(program);
  return program;
}

// Descriptions are written with line breaks for the source's sake; commander
// wraps them to the terminal itself, so keep only the paragraph breaks.
function reflowDescriptions(cmd: Command): void {
  cmd.description(cmd.description().replace(/(?<!\n)\n(?!\n)/g, " "));
  for (const sub of cmd.commands) reflowDescriptions(sub);
}

/** Runs one paycli command; returns the process exit code. Never calls process.exit. */
export async function runCli(options: RunOptions): Promise<number> {
  const app = createApp(options);
  const program = buildProgram(app);
  try {
    await program.parseAsync([...options.argv], { from: "user" });
    return app.exitCode;
  } catch (e) {
    if (e instanceof CommanderError) {
      // commander ends --help by "exiting" with 0; a bare `paycli` or `paycli admin` prints the
      // help with 1, and parse errors (unknown option, missing argument) are usage errors too.
      return e.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    }
    if (e instanceof CliError) {
      if (app.json)
        app.io.stdout.write(
          `${toJson({ ok: false, error: { reason: e.reason, message: e.message, exitCode: e.exitCode, ...e.details } })}\n`,
        );
      app.io.stderr.write(`paycli: ${e.message}\n`);
      return e.exitCode;
    }
    app.io.stderr.write(`paycli: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return ExitCode.failed;
  } finally {
    app.close();
  }
}
