// At start-up, with a webhook URL configured, the checkout makes sure the
// gateway has an endpoint for it and that the shop holds its signing secret:
//
//   the merchant's endpoints (ListEndpoints)
//     none for the URL                 -> CreateEndpoint(url, CONSUMED_EVENT_TYPES); store the secret
//     one, and the shop has its secret -> nothing to do
//     one, and no secret for it        -> RollSecret(overlap 0); store the new secret
//
// A secret is stored durably before anything relies on it. A crash between the
// gateway's answer and that write leaves an endpoint whose secret nobody
// holds: the next start finds it and rolls. Runs beside the shop, retrying
// with backoff until the gateway answers; the shop serves meanwhile, and
// polling and the settlement job cover what webhooks would have said.
import { CONSUMED_EVENT_TYPES } from "./webhooks.js";
import type { WebhookAdmin, WebhookSecretStore } from "./ports.js";

export type RegistrationOutcome = "created" | "rolled" | "present";

export interface RegistrationDeps {
  readonly admin: WebhookAdmin;
  readonly store: WebhookSecretStore;
  readonly url: string;
  /** A secret replaced here is still accepted this long after the gateway stops signing with it (the replay window). */
  readonly toleranceSeconds: number;
  readonly clock?: () => number;
}

export async function registerEndpoint(
  deps: RegistrationDeps,
): Promise<{ outcome: RegistrationOutcome; endpointId: string }> {
  const clock = deps.clock ?? Date.now;
  const graceMs = deps.toleranceSeconds * 1000;
  const existing = (await deps.admin.listEndpoints()).find((e) => e.url === deps.url);
  if (!existing) {
    const created = await deps.admin.createEndpoint(deps.url, CONSUMED_EVENT_TYPES);
    const nowMs = clock();
    deps.store.addWebhookSecret(
      { endpointId: created.endpointId, secret: created.secret, createdAtMs: nowMs },
      nowMs + graceMs,
    );
    return { outcome: "created", endpointId: created.endpointId };
  }
  if (deps.store.hasWebhookSecret(existing.endpointId, clock()))
    return { outcome: "present", endpointId: existing.endpointId };
  const rolled = await deps.admin.rollSecret(existing.endpointId, 0);
  const nowMs = clock();
  deps.store.addWebhookSecret(
    { endpointId: existing.endpointId, secret: rolled.secret, createdAtMs: nowMs },
    Math.max(rolled.previousExpiresAtMs, nowMs) + graceMs,
  );
  return { outcome: "rolled", endpointId: existing.endpointId };
}

export interface RegistrationLoop {
  /** Settles when registration succeeded, or the loop was stopped (then with undefined). */
  readonly done: Promise<{ outcome: RegistrationOutcome; endpointId: string } | undefined>;
  stop(): void;
}

export interface RegistrationLoopOptions {
  readonly retryBaseMs: number;
  readonly retryCapMs: number;
  readonly onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
}

/** Registers, retrying with doubling delays (base .. cap) until it succeeds or stop(). */
export function startRegistration(deps: RegistrationDeps, options: RegistrationLoopOptions): RegistrationLoop {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      wake = resolve;
      // Not unref'd: stop() clears it, and a shop that is shutting down stops the loop first.
      timer = setTimeout(resolve, ms);
    });
  const done = (async () => {
    for (let attempt = 1; !stopped; attempt++) {
      try {
        return await registerEndpoint(deps);
      } catch (e) {
        if (stopped) break;
        const delayMs = Math.min(options.retryCapMs, options.retryBaseMs * 2 ** Math.min(attempt - 1, 20));
        options.onRetry?.(e, attempt, delayMs);
        await sleep(delayMs);
      }
    }
    return undefined;
  })();
  return {
    done,
    stop() {
      stopped = true;
      clearTimeout(timer);
      wake?.();
    },
  };
}
