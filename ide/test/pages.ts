// Page helpers shared by the browser tests.
import type { Browser, Page } from 'playwright-core';

export async function newPage(browser: Browser): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  return { page, errors };
}

export async function waitIdle(page: Page, timeout = 30_000): Promise<void> {
  await page.waitForSelector('.kernel-status[data-status="idle"]', { timeout });
}

/** Opens `${base}/?token=…`, creates a notebook from the file browser and waits for its kernel. */
export async function newNotebook(browser: Browser, base: string, token: string): Promise<{ page: Page; errors: string[] }> {
  const p = await newPage(browser);
  await p.page.goto(`${base}/?token=${token}`);
  await p.page.click('button.new-notebook');
  await p.page.waitForURL(/\/notebooks\//);
  await waitIdle(p.page);
  return p;
}

/**
 * Types `code` into the last cell (empty: a new notebook has one, and Shift+Enter on
 * the last cell adds the next) and runs it with Shift+Enter; returns its index.
 * insertText goes through Monaco's typing path, so auto-indent applies: test code
 * never dedents.
 */
export async function addAndRun(page: Page, code: string): Promise<number> {
  const index = (await page.locator('.cell').count()) - 1;
  // a click on the gutter selects the cell in command mode; Enter edits it
  await page.locator('.cell').nth(index).click({ position: { x: 30, y: 8 } });
  await page.keyboard.press('Enter');
  await page.keyboard.insertText(code);
  await page.keyboard.press('Shift+Enter');
  return index;
}

export const cellAt = (page: Page, i: number) => page.locator('.cell').nth(i);
