// Named crash points inside the protocols, for tests that must kill a process
// at an exact step (e.g. "after COMMIT is logged, before any Commit is sent").
// Inert unless the service's config lists the point (PAYGATE_FAULTPOINTS,
// documented as test-only); production configs leave it empty.

export const faultPoints = [
  // bank (participant)
  "bank.after_prepare_logged", // PREPARED is durable, the YES vote is not sent
  "bank.before_commit_apply", // Commit arrived, nothing applied yet
  "bank.after_commit_applied", // applied durably, the ack is not sent
  "bank.after_link_verified", // the account is durably the caller's at the bank, the answer is not sent
  // gateway (coordinator)
  "gateway.after_votes_before_decision", // every vote is YES, no decision logged
  "gateway.after_commit_logged", // COMMIT is durable, no Commit sent yet
  "gateway.after_abort_logged", // ABORT is durable, no Abort sent yet
  "gateway.after_link_verified", // the bank linked the account, the directory does not have it yet
  "gateway.after_link_recorded", // the directory has it, the caller is not answered yet
  "gateway.webhook_before_send", // a delivery is claimed, nothing sent
  "gateway.webhook_after_response", // the receiver answered 2xx, the attempt is not recorded
] as const;

export type FaultPoint = (typeof faultPoints)[number];

export interface Faults {
  /** Crashes the process (SIGKILL, no cleanup) if this point is armed. */
  hit(point: FaultPoint): void;
  readonly armed: ReadonlySet<string>;
}

export function parseFaultPoints(names: readonly string[]): { armed: Set<FaultPoint>; unknown: string[] } {
  const known = new Set<string>(faultPoints);
  const armed = new Set<FaultPoint>();
  const unknown: string[] = [];
  for (const n of names) {
    if (known.has(n)) armed.add(n as FaultPoint);
    else unknown.push(n);
  }
  return { armed, unknown };
}

export function createFaults(armed: ReadonlySet<FaultPoint>): Faults {
  return {
    armed,
    hit(point) {
      if (!armed.has(point)) return;
      process.stderr.write(`FAULT ${point}: killing process ${process.pid}\n`);
      process.kill(process.pid, "SIGKILL");
    },
  };
}

export const noFaults: Faults = createFaults(new Set());
