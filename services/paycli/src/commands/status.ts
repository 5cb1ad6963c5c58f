import type { Command } from "commander";
import type { App } from "../app.js";
import { PENDING_STATES } from "../domain/queue.js";
import { GatewayError } from "../gateway-client.js";
import { CliError, ExitCode, formatIn, formatTable, formatTime } from "../output.js";
import type { Session } from "../store/session-store.js";

export function registerStatus(program: Command, app: App): void {
  program
    .command("status")
    .summary("gateway URL, reachable?, who is logged in, session expiry, queue depth")
    .description(
      "Shows where paycli points (gateway URL, certificate files and where each setting came from),\n" +
        "whether the gateway answers (one GetBalance call, also checking the session), who is logged\n" +
        "in and until when, and how many payments wait in the local queue.",
    )
    .addHelpText(
      "after",
      "\nExit codes: 0 the gateway answered; 1 it did not (the rest is still shown).\n\nExamples:\n  $ paycli status\n  $ paycli status --json | jq .reachable",
    )
    .action(async (_opts: unknown, cmd: Command) => {
      app.use(cmd);
      const config = app.config();
      const { session, sessionProblem } = loadSession(app);
      const counts = app.queue().counts();
      const depth = PENDING_STATES.reduce((n, s) => n + counts[s], 0);
      const mine =
        session === undefined
          ? 0
          : app
              .queue()
              .pending(10_000)
              .filter((e) => e.userId === session.userId).length;

      const { reachable, sessionValid, gatewayProblem } = await probeGateway(app, session);

      const rows = statusRows(app, config, session, {
        reachable,
        sessionValid,
        gatewayProblem,
        sessionProblem,
        depth,
        mine,
        counts,
      });
      app.print(
        {
          gatewayUrl: config.gatewayUrl,
          reachable,
          gatewayProblem,
          sources: config.sources,
          tls: config.tls,
          home: config.home,
          loggedIn: session !== undefined,
          user:
            session === undefined ? null : { userId: session.userId, username: session.username, roles: session.roles },
          sessionExpiresAt: session?.expiresAt ?? null,
          sessionValid,
          queue: { depth, mine, counts },
        },
        formatTable([{ header: "" }, { header: "" }], rows)
          .split("\n")
          .slice(2)
          .join("\n"),
      );
      app.exitCode = reachable ? ExitCode.ok : ExitCode.failed;
    });
}

/** The saved session, or why it could not be read (shown instead of the user). */
function loadSession(app: App): { session: Session | undefined; sessionProblem: string | null } {
  try {
    return { session: app.sessions().load(), sessionProblem: null };
  } catch (e) {
    return { session: undefined, sessionProblem: (e as Error).message };
  }
}

interface Probe {
  readonly reachable: boolean;
  /** null: no session to check, or the gateway did not say. */
  readonly sessionValid: boolean | null;
  readonly gatewayProblem: string | null;
}

/** One GetBalance call: does the gateway answer, and does it accept the session? */
async function probeGateway(app: App, session: Session | undefined): Promise<Probe> {
  let reachable = false;
  let sessionValid: boolean | null = null;
  let gatewayProblem: string | null = null;
  try {
    await app.gateway(session?.token ?? null).balances();
    reachable = true;
    sessionValid = session !== undefined;
  } catch (e) {
    if (e instanceof CliError) gatewayProblem = e.message;
    else if (e instanceof GatewayError) {
      if (e.failure.kind === "transient") gatewayProblem = e.failure.message;
      else {
        // The gateway answered, even if it said no.
        reachable = true;
        sessionValid = session === undefined ? null : e.failure.kind !== "needs_login";
        if (e.failure.kind === "needs_login" && session !== undefined)
          gatewayProblem = `session not accepted: ${e.failure.message}`;
      }
    } else throw e;
  }
  return { reachable, sessionValid, gatewayProblem };
}

interface Facts extends Probe {
  readonly sessionProblem: string | null;
  readonly depth: number;
  readonly mine: number;
  readonly counts: ReturnType<ReturnType<App["queue"]>["counts"]>;
}

/** The text table: one row per thing status reports. */
function statusRows(
  app: App,
  config: ReturnType<App["config"]>,
  session: Session | undefined,
  facts: Facts,
): [string, string][] {
  const { reachable, sessionValid, gatewayProblem, sessionProblem, depth, mine, counts } = facts;
  const now = app.now();
  const expiresMs = session === undefined ? null : Date.parse(session.expiresAt);
  return [
    ["gateway", `${config.gatewayUrl} (${config.sources.gateway})`],
    ["reachable", reachable ? "yes" : `no${gatewayProblem ? ` — ${gatewayProblem}` : ""}`],
    [
      "certificates",
      `ca ${config.tls.caFile} (${config.sources.ca}), cert ${config.tls.certFile} (${config.sources.cert}), key ${config.tls.keyFile} (${config.sources.keyFile})`,
    ],
    ["home", config.home],
    [
      "logged in as",
      session === undefined
        ? (sessionProblem ?? "nobody (run `paycli login`)")
        : `${session.username} (user ${session.userId}; ${session.roles.join(", ")})`,
    ],
    [
      "session expires",
      expiresMs === null
        ? "-"
        : `${formatTime(expiresMs)} (${expiresMs <= now ? "expired" : formatIn(expiresMs, now)})${sessionValid === false ? ", rejected by the gateway" : ""}`,
    ],
    [
      "queue depth",
      `${depth} waiting${session !== undefined ? ` (${mine} yours)` : ""}; ${counts.gave_up} gave up; ${counts.committed + counts.declined} recent results kept`,
    ],
  ];
}
