import type { Command } from "commander";
import type { App } from "../app.js";
import { drain } from "./drain.js";

export function registerSync(program: Command, app: App): void {
  program
    .command("sync")
    .summary("send queued payments that are due")
    .description(
      "Sends your queued payments whose next attempt time has come, oldest first, each with the\n" +
        "idempotency key it was queued with (so none can be paid twice). Each outcome is recorded:\n" +
        "committed and declined payments leave the queue; a transient failure (gateway unreachable,\n" +
        "timeout, busy) puts the payment back with a longer, randomized wait (full-jitter exponential\n" +
        "backoff: random(0, min(PAYCLI_BACKOFF_CAP_MS, PAYCLI_BACKOFF_BASE_MS * 2^attempt))).\n" +
        "When the gateway itself is unreachable the pass stops at the first failure instead of\n" +
        "hammering it with every entry. Payments queued by another user wait for that user's login.",
    )
    .option("--watch", "keep running until the queue is empty (or Ctrl-C), sleeping until the next payment is due")
    .addHelpText(
      "after",
      `
Exit codes:
  0  the queue is empty (everything sent was committed)
  1  something was declined or gave up, or your session expired (run \`paycli login\`)
  3  payments are still queued (the gateway is unreachable or they are not due yet)

Examples:
  $ paycli sync
  $ paycli sync --watch          # run until every queued payment is decided
  $ paycli sync --json | jq '.results[] | {key, state}'`,
    )
    .action(async (opts: { watch?: boolean }, cmd: Command) => {
      app.use(cmd);
      app.exitCode = await drain(app, { watch: opts.watch === true, force: false });
    });
}
