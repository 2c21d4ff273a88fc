// Hostile outputs and token leaks, in Debian's Chromium. Rendering is the same
// whatever serves the API; this runs against a real Jupyter Server (the API the
// gateway implements) behind a small server that serves the built IDE with the
// gateway's static routes and has a /probe endpoint on the page's origin, so the
// test can see what an output image would send (Referer, URL).
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ARTIFACTS, ensureBuilt, hasJupyter, launchChromium, startIdeServer, startJupyter } from './harness.ts';
import type { IdeServer, Proc } from './harness.ts';
import { addAndRun, cellAt, newNotebook, newPage } from './pages.ts';

const TOKEN = `tok-${Math.random().toString(36).slice(2)}-secret`;
let jupyter: Proc;
let ide: IdeServer;
let browser: Browser;

if (!hasJupyter()) throw new Error('these tests need Debian python3-jupyter-server and python3-ipykernel (apt-get install python3-jupyter-server python3-ipykernel)');

beforeAll(async () => {
  ensureBuilt();
  await mkdir(ARTIFACTS, { recursive: true });
  jupyter = await startJupyter(TOKEN);
  ide = await startIdeServer(jupyter.url);
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await ide?.close();
  await jupyter?.close();
});

describe('hostile outputs on a Jupyter Server', () => {
  it('runs no script from hostile outputs and never leaks the token', async () => {
    const { page, errors } = await newNotebook(browser, ide.url, TOKEN);
    const violations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/.test(m.text())) violations.push(m.text());
    });
    await page.evaluate(() => {
      (window as unknown as { __pwned: unknown }).__pwned = undefined;
    });
    const hostile = [
      'from IPython.display import display, HTML, SVG, Markdown, Javascript',
      `display(HTML('<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><a id=jl href="javascript:window.__pwned=3">jl</a><iframe srcdoc="<script>parent.__pwned=4</script>"></iframe><style>body{display:none}</style><form action="https://evil.example"><input name=q></form><div style="position:fixed;inset:0;z-index:9999;background:red" id=overlay>overlay</div><img src="/probe/html">'))`,
      `display(SVG('<svg xmlns="http://www.w3.org/2000/svg" onload="window.__pwned=5"><script>window.__pwned=6</script><a href="javascript:window.__pwned=7"><text x="0" y="15">svg</text></a></svg>'))`,
      `display(Markdown('[md](javascript:window.__pwned=9) <img src=x onerror="window.__pwned=10"> ![p](/probe/md)'))`,
      `display(Javascript('window.__pwned=11'))`,
      `display({'text/html': '<details open ontoggle="window.__pwned=12">t</details><math><mi xlink:href="javascript:window.__pwned=13">m</mi></math>', 'text/plain': 'x'}, raw=True)`,
      'import os; print(sorted(k for k, v in os.environ.items()))',
    ].join('\n');
    const cell = cellAt(page, await addAndRun(page, hostile));
    await cell.locator('.out-stream').waitFor({ timeout: 20_000 });
    await page.waitForTimeout(500);
    // click everything clickable in the outputs
    for (const a of await cell.locator('.outputs a').all()) await a.click({ force: true }).catch(() => {});
    await page.waitForTimeout(300);
    expect(await page.evaluate(() => (window as unknown as { __pwned: unknown }).__pwned)).toBeUndefined();
    expect(await cell.locator('.outputs script, .outputs iframe, .outputs style, .outputs form').count()).toBe(0);
    const handlers = await cell.locator('.outputs *').evaluateAll((els) => els.flatMap((e) => [...e.attributes].filter((a) => /^on/i.test(a.name) || /javascript:/i.test(a.value)).map((a) => `${e.tagName}.${a.name}`)));
    expect(handlers).toEqual([]);
    // the IDE is still visible and the overlay stays inside the output box
    expect(await page.locator('.toolbar').isVisible()).toBe(true);
    const overlay = await cell.locator('#user-content-overlay, [id$="overlay"]').first().boundingBox();
    const outBox = await cell.locator('.outputs').boundingBox();
    if (overlay && outBox) expect(overlay.y).toBeGreaterThanOrEqual(outBox.y - 1);
    await page.locator('button.kernel-button').click({ trial: true });
    // images loaded from this origin carry no Referer and no token
    await expect.poll(() => ide.probes.length).toBeGreaterThanOrEqual(1);
    for (const p of ide.probes) {
      expect(p.referer).toBeUndefined();
      expect(p.url).not.toContain(TOKEN);
    }
    // the token is in no output, no URL, no element of the page
    const html = await page.content();
    expect(html).not.toContain(TOKEN);
    expect(page.url()).not.toContain(TOKEN);
    expect(await page.evaluate(() => performance.getEntriesByType('resource').map((e) => e.name).filter((n) => !n.startsWith('ws')))).not.toContain(TOKEN);
    const saved = JSON.stringify(await page.evaluate(() => (window as unknown as { kinesis: { model: { toNotebook(): unknown } } }).kinesis.model.toNotebook()));
    expect(saved).not.toContain(TOKEN);
    await page.screenshot({ path: path.join(ARTIFACTS, 'hostile-outputs.png'), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  }, 120_000);

  it('asks for a token when it has none or a wrong one, and keeps it out of the address bar', async () => {
    const { page } = await newPage(browser);
    await page.goto(`${ide.url}/tree?token=wrong-token`);
    expect(page.url()).not.toContain('wrong-token');
    await page.click('button.change-token');
    await page.locator('form.login input').fill(TOKEN);
    await page.locator('form.login button').click();
    await page.locator('button.new-notebook').waitFor();
    expect(page.url()).toBe(`${ide.url}/tree`);
    expect(await page.evaluate(() => sessionStorage.getItem('kinesis.token'))).toBe(TOKEN);
    await page.close();
  }, 60_000);
});
