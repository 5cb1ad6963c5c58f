// Debian's Chromium driven by playwright-core (which never downloads a
// browser), and the shopper's moves on the checkout page. Screenshots land in
// test-results/checkout/ as test artifacts.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContextOptions, type Page } from "playwright-core";
import { repoRoot } from "@paygate/testkit";

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const ARTIFACTS_DIR = join(repoRoot, "test-results", "checkout");

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

export const DESKTOP: BrowserContextOptions = { viewport: { width: 1200, height: 860 }, locale: "en-US" };
export const PHONE: BrowserContextOptions = {
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
  locale: "en-US",
};

export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const path = join(ARTIFACTS_DIR, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

export interface ShopperCard {
  readonly name: string;
  readonly number: string;
  /** Typed as digits ("0440"): the page inserts the slash. */
  readonly expiry: string;
  readonly cvc: string;
}

/** Types like a person (key by key), so the page's formatting runs. */
export async function fillCard(page: Page, card: ShopperCard): Promise<void> {
  await page.getByLabel("Name on card").fill(card.name);
  await page.getByLabel("Card number").fill("");
  await page.getByLabel("Card number").pressSequentially(card.number.replace(/\D/g, ""));
  await page.getByLabel("Expiry date").fill("");
  await page.getByLabel("Expiry date").pressSequentially(card.expiry.replace(/\D/g, ""));
  await page.getByLabel("Security code").fill(card.cvc);
}

/** The id of the focused element. (Page code goes as strings: the test runs without the DOM's types.) */
export async function focusedId(page: Page): Promise<string> {
  return page.evaluate<string>("document.activeElement ? document.activeElement.id : ''");
}

/** How many pixels the page is wider than the viewport (0 = no sideways scrolling). */
export async function horizontalOverflow(page: Page): Promise<number> {
  return page.evaluate<number>("document.documentElement.scrollWidth - document.documentElement.clientWidth");
}

export async function attemptKeyOf(page: Page): Promise<string> {
  return page.locator('input[name="idempotencyKey"]').inputValue();
}

/** Clicks Pay and waits for the result page to load. */
export async function pay(page: Page): Promise<void> {
  await Promise.all([page.waitForURL("**/make-payment"), page.getByRole("button", { name: /^Pay / }).click()]);
}

/** An expiry a few years ahead, as the shopper types it ("MMYY"). */
export function futureExpiry(years = 4): { typed: string; month: number; year: number } {
  const now = new Date();
  const month = now.getUTCMonth() + 1;
  const year = now.getUTCFullYear() + years;
  return { typed: `${String(month).padStart(2, "0")}${String(year % 100).padStart(2, "0")}`, month, year };
}
