import type { Command } from "commander";
import { asking, type App } from "../app.js";
import type { GatewayClient } from "../gateway-client.js";
import { ExitCode, formatTable, formatTime, usageError, type Column } from "../output.js";
import type { WebhookDeliveryView } from "../views.js";

const OVERLAP_MAX_SECONDS = 7 * 86_400;
const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3_600, d: 86_400 };

/** "24h", "90m", "30s", "7d", "0", or bare seconds. */
export function parseOverlapSeconds(text: string): bigint | undefined {
  const m = /^\s*(\d{1,9})\s*([smhd])?\s*$/.exec(text);
  if (!m) return undefined;
  const seconds = Number(m[1]) * UNIT_SECONDS[m[2] ?? "s"]!;
  return seconds <= OVERLAP_MAX_SECONDS ? BigInt(seconds) : undefined;
}

function deliveryLine(d: WebhookDeliveryView): string {
  const last = d.lastStatusCode > 0 ? `HTTP ${d.lastStatusCode}` : d.attempts > 0 ? "no answer" : "not tried yet";
  return `${d.deliveryId} ${d.eventType} ${d.objectId}: ${d.status} after ${d.attempts} attempt(s), last ${last}${d.lastError ? ` (${d.lastError})` : ""}`;
}

/** A table, or `empty` when there are no rows; without the trailing newline. */
function tableOr(empty: string, columns: readonly Column[], rows: readonly (readonly string[])[]): string {
  return rows.length === 0 ? empty : formatTable(columns, rows).trimEnd();
}

/** A subcommand taking one id and no options: ask the gateway, print what it answered. */
function idCommand(
  parent: Command,
  app: App,
  name: string,
  summary: string,
  arg: string,
  run: (client: GatewayClient, id: string) => Promise<{ json: unknown; text: string }>,
): void {
  parent
    .command(name)
    .summary(summary)
    .argument(`<${arg}>`, arg === "endpoint-id" ? "we_..." : "wd_...")
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      app.use(cmd);
      const session = app.requireSession();
      const out = await run(app.gateway(session.token), id);
      app.print(out.json, out.text);
      app.exitCode = ExitCode.ok;
    });
}

export function registerWebhooks(program: Command, app: App): void {
  const webhooks = program
    .command("webhooks")
    .summary("your webhook endpoints: register, list, delete, roll secrets, see and repeat deliveries")
    .description(
      "The gateway POSTs signed events about your payments to HTTPS endpoints you register (see\n" +
        "docs/WEBHOOKS.md): a merchant hears of its authorizations, captures, refunds and settlements; the\n" +
        "owner of a paid account of transfer.committed. Each endpoint has a signing secret, shown once when\n" +
        "it is made or rolled. Every command sees only your own endpoints; another user's answers as unknown.",
    )
    .addHelpText(
      "after",
      `
Exit codes: 0 done; 1 refused (invalid_webhook_url, webhook_host_not_allowed, invalid_event_type,
too_many_endpoints, endpoint_not_found, delivery_not_found) or the gateway unreachable; 2 bad arguments.

Examples:
  $ paycli webhooks create --url https://shop.example/paygate --events capture.succeeded,refund.succeeded
  $ paycli webhooks list
  $ paycli webhooks deliveries we_0123456789abcdef01234567
  $ paycli webhooks delivery wd_0123456789abcdef01234567
  $ paycli webhooks redeliver wd_0123456789abcdef01234567
  $ paycli webhooks roll-secret we_0123456789abcdef01234567 --overlap 1h
  $ paycli webhooks delete we_0123456789abcdef01234567`,
    );

  addCreateCommand(webhooks, app);
  addListCommand(webhooks, app);

  idCommand(
    webhooks,
    app,
    "delete",
    "delete an endpoint with its secrets and delivery log",
    "endpoint-id",
    async (client, endpointId) => {
      await asking(client.deleteWebhookEndpoint(endpointId));
      return { json: { deleted: endpointId }, text: `deleted ${endpointId}` };
    },
  );

  addRollSecretCommand(webhooks, app);
  addDeliveriesCommand(webhooks, app);

  idCommand(
    webhooks,
    app,
    "delivery",
    "one delivery with every attempt (status code, latency, error)",
    "delivery-id",
    async (client, deliveryId) => {
      const { delivery, attempts } = await asking(client.getWebhookDelivery(deliveryId));
      const head = `${deliveryLine(delivery)}\nevent ${delivery.eventId}${delivery.status === "pending" ? `, next attempt ${formatTime(delivery.nextAttemptAt)}` : ""}`;
      const table = tableOr(
        "no attempts yet",
        [
          { header: "#", align: "right" },
          { header: "AT" },
          { header: "STATUS", align: "right" },
          { header: "LATENCY", align: "right" },
          { header: "ERROR" },
        ],
        attempts.map((a) => [
          String(a.attempt),
          formatTime(a.at),
          a.statusCode > 0 ? String(a.statusCode) : "-",
          `${a.latencyMs} ms`,
          a.error,
        ]),
      );
      return { json: { delivery, attempts }, text: `${head}\n${table}` };
    },
  );

  idCommand(
    webhooks,
    app,
    "redeliver",
    "send a delivered or failed delivery again, now (same event id)",
    "delivery-id",
    async (client, deliveryId) => {
      const delivery = await asking(client.redeliverWebhook(deliveryId));
      return { json: { delivery }, text: `queued again: ${deliveryLine(delivery)}` };
    },
  );
}

function addCreateCommand(webhooks: Command, app: App): void {
  webhooks
    .command("create")
    .summary("register an HTTPS endpoint for some event types; prints its signing secret once")
    .requiredOption("--url <url>", "https://host[:port]/path; the host must be in the gateway's allow-list")
    .requiredOption("--events <types>", "comma-separated event types, e.g. capture.succeeded,refund.succeeded")
    .action(async (opts: { url: string; events: string }, cmd: Command) => {
      app.use(cmd);
      const eventTypes = opts.events
        .split(",")
        .map((t) => t.trim())
        .filter((t) => t !== "");
      if (eventTypes.length === 0) throw usageError("invalid_argument", "--events needs at least one event type");
      const session = app.requireSession();
      const { endpoint, secret } = await asking(
        app.gateway(session.token).createWebhookEndpoint({ url: opts.url, eventTypes }),
      );
      app.print(
        { endpoint, secret },
        `created ${endpoint.endpointId} -> ${endpoint.url} (${endpoint.eventTypes.join(", ")})\nsigning secret (shown once; store it with the receiver): ${secret}`,
      );
      app.exitCode = ExitCode.ok;
    });
}

function addListCommand(webhooks: Command, app: App): void {
  webhooks
    .command("list")
    .summary("your endpoints")
    .action(async (_opts: unknown, cmd: Command) => {
      app.use(cmd);
      const session = app.requireSession();
      const endpoints = await asking(app.gateway(session.token).listWebhookEndpoints());
      const table = tableOr(
        "no webhook endpoints",
        [{ header: "ENDPOINT" }, { header: "STATUS" }, { header: "URL" }, { header: "EVENTS" }, { header: "CREATED" }],
        endpoints.map((e) => [e.endpointId, e.status, e.url, e.eventTypes.join(","), formatTime(e.createdAt)]),
      );
      app.print({ endpoints }, table);
      app.exitCode = ExitCode.ok;
    });
}

function addRollSecretCommand(webhooks: Command, app: App): void {
  webhooks
    .command("roll-secret")
    .summary("make a new signing secret; the previous one keeps signing through the overlap")
    .argument("<endpoint-id>", "we_...")
    .option(
      "--overlap <duration>",
      "how long the previous secret still signs: 0 (now) up to 7d, e.g. 30m, 24h (default: the gateway's, 24h)",
    )
    .action(async (endpointId: string, opts: { overlap?: string }, cmd: Command) => {
      app.use(cmd);
      let overlap: bigint | undefined;
      if (opts.overlap !== undefined) {
        overlap = parseOverlapSeconds(opts.overlap);
        if (overlap === undefined)
          throw usageError(
            "invalid_argument",
            `--overlap must be a duration from 0 to 7d such as 30m or 24h, got ${JSON.stringify(opts.overlap)}`,
          );
      }
      const session = app.requireSession();
      const rolled = await asking(app.gateway(session.token).rollWebhookSecret(endpointId, overlap));
      app.print(
        { endpointId, secret: rolled.secret, previousExpiresAt: rolled.previousExpiresAt },
        `new signing secret for ${endpointId} (shown once): ${rolled.secret}\nthe previous secret signs until ${formatTime(rolled.previousExpiresAt)}`,
      );
      app.exitCode = ExitCode.ok;
    });
}

function addDeliveriesCommand(webhooks: Command, app: App): void {
  webhooks
    .command("deliveries")
    .summary("an endpoint's deliveries, newest first")
    .argument("<endpoint-id>", "we_...")
    .option("--limit <n>", "how many (1-200)", "50")
    .option("--page-token <token>", "the next page, from the previous output")
    .action(async (endpointId: string, opts: { limit: string; pageToken?: string }, cmd: Command) => {
      app.use(cmd);
      const pageSize = Number(opts.limit);
      if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 200)
        throw usageError("invalid_argument", "--limit must be from 1 to 200");
      const session = app.requireSession();
      const page = await asking(
        app.gateway(session.token).listWebhookDeliveries({ endpointId, pageSize, pageToken: opts.pageToken ?? "" }),
      );
      const table = tableOr(
        "no deliveries",
        [
          { header: "DELIVERY" },
          { header: "EVENT" },
          { header: "OBJECT" },
          { header: "STATUS" },
          { header: "ATTEMPTS", align: "right" },
          { header: "LAST" },
          { header: "CREATED" },
        ],
        page.deliveries.map((d) => [
          d.deliveryId,
          d.eventType,
          d.objectId,
          d.status,
          String(d.attempts),
          d.lastStatusCode > 0 ? String(d.lastStatusCode) : "-",
          formatTime(d.createdAt),
        ]),
      );
      app.print(page, table + (page.nextPageToken ? `\nmore: --page-token ${page.nextPageToken}` : ""));
      app.exitCode = ExitCode.ok;
    });
}
