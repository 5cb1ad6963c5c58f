// Replica leases on SQLite. One replica uses this store, so there is never
// anyone to take over; the table is kept for the same contract as
// PostgreSQL's (a restart under the same name renews its own lease).
import type { ReplicaLeases } from "../domain/ports.js";
import { num, type Db } from "./db.js";
import type { GroupCommit } from "./group-commit.js";

export function createSqliteLeases(db: Db, group: GroupCommit, nowMs: () => number = Date.now): ReplicaLeases {
  const q = {
    beat: db.prepare(`INSERT INTO replica_leases (replica, boot_id, lease_until) VALUES (@replica, @boot, @until)
      ON CONFLICT (replica) DO UPDATE SET boot_id = excluded.boot_id, lease_until = excluded.lease_until, taken_over_by = '', taken_over_at = 0`),
    get: db.prepare("SELECT lease_until FROM replica_leases WHERE replica = ?"),
    expired: db.prepare(`SELECT replica FROM replica_leases WHERE replica != @self AND lease_until < @cutoff
      AND (taken_over_by = '' OR (taken_over_by != @self AND taken_over_at < @cutoff)) ORDER BY replica LIMIT @limit`),
    claim: db.prepare("UPDATE replica_leases SET taken_over_by = @self, taken_over_at = @now WHERE replica = @replica"),
    done: db.prepare("UPDATE replica_leases SET taken_over_by = @by, taken_over_at = @far WHERE replica = @replica"),
  };
  return {
    heartbeat: (replica, bootId, leaseMs) =>
      group.enqueue(() => void q.beat.run({ replica, boot: bootId, until: nowMs() + leaseMs })),
    async isAlive(replica) {
      const r = q.get.get(replica) as { lease_until: bigint } | undefined;
      return r !== undefined && num(r.lease_until) >= nowMs();
    },
    claimExpired: (self, graceMs, limit) =>
      group.enqueue(() => {
        const now = nowMs();
        const rows = (q.expired.all({ self, cutoff: now - graceMs, limit }) as { replica: string }[]).map(
          (r) => r.replica,
        );
        for (const replica of rows) q.claim.run({ self, now, replica });
        return rows;
      }),
    // Done until it heartbeats again (which clears taken_over_by).
    takenOver: (replica, by) => group.enqueue(() => void q.done.run({ replica, by, far: Number.MAX_SAFE_INTEGER })),
  };
}
