// Draining the queue, shared by `sync`, `sync --watch` and `queue flush`.
import type { App } from "../app.js";
import { ExitCode, formatIn, formatTime } from "../output.js";
import type { PassStop, SendResult } from "../queue-runner.js";
import type { StoredEntry } from "../store/queue-store.js";
import { describeResult, entryJson, resultJson } from "./entries.js";

export interface DrainOptions {
  /** Keep going (sleeping until the next entry is due) until the queue is empty or Ctrl-C. */
  readonly watch: boolean;
  /** Ignore each entry's backoff schedule: try it now (`queue flush`). */
  readonly force: boolean;
}

// Watching ends on its own once every entry is decided or has given up
// (PAYCLI_ATTEMPTS_MAX); this only bounds a loop that somehow makes no progress.
const WATCH_PASSES_MAX = 1_000_000;

export async function drain(app: App, options: DrainOptions): Promise<ExitCode> {
  const session = app.requireSession();
  const config = app.config();
  const runner = app.runner(session.token);
  const store = app.queue();
  const mine = () => store.pending(10_000).filter((e) => e.userId === session.userId);
  if (mine().length === 0) {
    const others = store.pending(10_000).length;
    app.print(
      { results: [], pending: [], stoppedBy: null, otherUsers: others },
      others === 0
        ? "nothing to send: the queue is empty"
        : `nothing of yours to send; ${others} queued payment${others === 1 ? " belongs" : "s belong"} to another user`,
    );
    return ExitCode.ok;
  }

  const { results, stop, otherUsers, busy } = await runPasses(
    app,
    options,
    { userId: session.userId, config, runner },
    mine,
  );

  const pending = mine();
  const gaveUp = results.filter((r) => r.entry.state === "gave_up").length;
  const committed = results.filter((r) => r.entry.state === "committed").length;
  const declined = results.filter((r) => r.entry.state === "declined").length;
  const lines = summaryLines(app, options, { results, stop, otherUsers, busy }, pending, {
    committed,
    declined,
    gaveUp,
  });

  app.print(
    {
      results: results.map(resultJson),
      pending: pending.map(entryJson),
      committed,
      declined,
      gaveUp,
      stoppedBy: stop,
      otherUsers,
      busy,
    },
    lines.join("\n"),
  );
  if (stop?.kind === "needs_login" || declined > 0 || gaveUp > 0) return ExitCode.failed;
  return pending.length > 0 ? ExitCode.queued : ExitCode.ok;
}

interface Passes {
  readonly results: SendResult[];
  readonly stop: PassStop | null;
  readonly otherUsers: number;
  readonly busy: number;
}

/** One pass, or (watching) passes until nothing of ours is queued, a pass must stop, or Ctrl-C. */
async function runPasses(
  app: App,
  options: DrainOptions,
  sender: { userId: string; config: ReturnType<App["config"]>; runner: ReturnType<App["runner"]> },
  mine: () => StoredEntry[],
): Promise<Passes> {
  const { userId, config, runner } = sender;
  const results: SendResult[] = [];
  let stop: PassStop | null = null;
  let otherUsers = 0;
  let busy = 0;
  for (let pass = 0; pass < WATCH_PASSES_MAX; pass++) {
    const report = await runner.runPass({
      userId,
      force: options.force && pass === 0,
      signal: app.signal,
      onResult: (r) => app.note(describeResult(r, app.now())),
    });
    results.push(...report.results);
    stop = report.stoppedBy;
    otherUsers = report.otherUsers;
    busy = report.busy;
    if (!options.watch || stop?.kind === "needs_login" || stop?.kind === "interrupted" || app.signal?.aborted) break;
    if (mine().length === 0) break;

    const now = app.now();
    const wakeAt = stop?.kind === "gateway" ? stop.retryAt : (runner.nextDueAt(userId) ?? now);
    const sleepMs = Math.min(Math.max(0, wakeAt - now), config.watchSleepMaxMs);
    const waiting = mine().length;
    const why = stop?.kind === "gateway" ? `${stop.message}; ` : "";
    app.note(
      `${why}${waiting} payment${waiting === 1 ? "" : "s"} queued; next try ${formatIn(now + sleepMs, now)} (${formatTime(now + sleepMs)}); Ctrl-C to stop`,
    );
    await app.sleep(sleepMs, app.signal);
    if (app.signal?.aborted) {
      stop = { kind: "interrupted" };
      break;
    }
  }
  return { results, stop, otherUsers, busy };
}

/** What was sent, why the drain stopped, and what to do next. */
function summaryLines(
  app: App,
  options: DrainOptions,
  passes: Passes,
  pending: StoredEntry[],
  tally: { committed: number; declined: number; gaveUp: number },
): string[] {
  const { results, stop, otherUsers, busy } = passes;
  const { committed, declined, gaveUp } = tally;
  const lines = [
    `sent ${results.length}: ${committed} committed, ${declined} declined, ${gaveUp} gave up; ${pending.length} still queued`,
  ];
  if (stop?.kind === "needs_login")
    lines.push(`stopped: ${stop.message} — run \`paycli login\`, then \`paycli sync\` again`);
  if (stop?.kind === "gateway" && !options.watch)
    lines.push(
      `stopped: ${stop.message}; the rest waits for its next attempt (run \`paycli sync --watch\` to keep trying)`,
    );
  if (stop?.kind === "interrupted") lines.push("interrupted; queued payments stay queued");
  if (busy > 0)
    lines.push(`${busy} payment${busy === 1 ? " is" : "s are"} being sent by another paycli process right now`);
  if (otherUsers > 0)
    lines.push(
      `${otherUsers} queued payment${otherUsers === 1 ? " belongs" : "s belong"} to another user; log in as them to send ${otherUsers === 1 ? "it" : "them"}`,
    );
  const next = pending.map((e) => e.nextAttemptAt ?? 0).filter((t) => t > 0);
  if (pending.length > 0 && next.length > 0 && stop?.kind !== "needs_login") {
    const at = Math.min(...next);
    lines.push(
      `next attempt ${formatIn(at, app.now())} (${formatTime(at)}): \`paycli sync\`, or \`paycli queue flush\` to try now`,
    );
  }
  return lines;
}
