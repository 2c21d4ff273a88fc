// End-to-end: the built IDE in Debian's Chromium against the Kinesis stack (the
// gateway serving the IDE, contents API and kernels; a provider on this machine
// running real ipykernel and signing energy receipts). Screenshots land in
// test-artifacts/ide/.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringifyNotebook } from '@kinesis/protocol/notebook/index';
import { bigNotebook } from '../bench/notebook-bench.ts';
import { ARTIFACTS, ensureBuilt, hasJupyter, launchChromium, startKinesis } from './harness.ts';
import type { Proc } from './harness.ts';
import * as P from './pages.ts';

const TOKEN = `tok-${Math.random().toString(36).slice(2)}-secret`;
let kinesis: Proc;
let browser: Browser;
let base = '';

if (!hasJupyter()) throw new Error('these tests need Debian python3-ipykernel, python3-jupyter-server and python3-matplotlib (apt-get install python3-ipykernel python3-jupyter-server python3-matplotlib)');

beforeAll(async () => {
  ensureBuilt();
  await mkdir(ARTIFACTS, { recursive: true });
  kinesis = await startKinesis(TOKEN);
  base = kinesis.url;
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await kinesis?.close();
});

const newPage = (): Promise<{ page: Page; errors: string[] }> => P.newPage(browser);
const openNewNotebook = (): Promise<{ page: Page; errors: string[] }> => P.newNotebook(browser, base, TOKEN);
const { addAndRun, cellAt, waitIdle } = P;

describe('notebook on the Kinesis stack', () => {
  it('creates a notebook, runs print, shows a matplotlib image, a traceback and an input() prompt', async () => {
    const { page, errors } = await openNewNotebook();
    // the token left the address bar at once
    expect(page.url()).not.toContain(TOKEN);
    const c0 = await addAndRun(page, 'print("hello from kinesis")');
    expect(c0).toBe(0);
    await expect.poll(() => cellAt(page, c0).locator('.out-stream').textContent()).toContain('hello from kinesis');
    await expect.poll(() => cellAt(page, c0).locator('.prompt').textContent()).toBe('[1]');
    // where it ran, its energy (measured or estimated) and cost, from the signed receipt
    const receipt = cellAt(page, c0).locator('.receipt');
    await receipt.waitFor();
    expect(await receipt.textContent()).toMatch(/ran on .+\d.*(measured|estimated)/);
    // and the gateway's verdict on it (kinesis_usage), not just the provider's claim
    await receipt.locator('.verdict.accepted').waitFor();
    await expect.poll(() => page.locator('.session-total').textContent()).toMatch(/session: .*J/);
    // the kernel picker lists the provider's hardware and price
    await page.click('button.kernel-button');
    const option = page.locator('.kernel-option').first();
    await option.waitFor();
    expect(await option.textContent()).toMatch(/CPU|GPU/);
    expect(await option.textContent()).toContain('/kWh');
    await page.keyboard.press('Escape');
    await page.locator('.kernel-picker').waitFor({ state: 'detached' });

    const c1 = await addAndRun(page, 'import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()');
    const img = cellAt(page, c1).locator('.out-rich img');
    await img.waitFor({ timeout: 30_000 });
    expect(await img.getAttribute('src')).toMatch(/^data:image\/png;base64,/);
    expect(await img.evaluate((el: HTMLImageElement) => el.complete && el.naturalWidth > 50)).toBe(true);

    const c2 = await addAndRun(page, 'def f(): raise ValueError("boom")\nf()');
    const err = cellAt(page, c2).locator('.out-error');
    await err.waitFor();
    expect(await err.textContent()).toMatch(/ValueError.*boom/s);
    // tracebacks keep their colours as styled spans
    expect(await err.locator('span[style*="color"]').count()).toBeGreaterThan(0);

    const c3 = await addAndRun(page, 'name = input("your name? ")\nprint("hi", name)');
    const box = cellAt(page, c3).locator('.out-stdin input');
    await box.waitFor();
    await box.fill('Ada');
    await box.press('Enter');
    await expect.poll(() => cellAt(page, c3).locator('.out-stream').textContent()).toContain('hi Ada');

    // markdown with math, rendered when run (the last, empty cell becomes markdown)
    await page.keyboard.press('Escape');
    await page.locator('.cell').last().click({ position: { x: 30, y: 8 } });
    await page.keyboard.press('m');
    await page.keyboard.press('Enter');
    await page.keyboard.insertText('# Title\n\nEnergy $E = mc^2$ and **bold**');
    await page.keyboard.press('Shift+Enter');
    const md = cellAt(page, c3 + 1).locator('.markdown.rendered');
    await md.waitFor();
    expect(await md.locator('h1').textContent()).toBe('Title');
    expect(await md.locator('.katex').count()).toBeGreaterThan(0);
    await page.screenshot({ path: path.join(ARTIFACTS, 'run-outputs.png'), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  }, 120_000);

  it('interrupts a time.sleep and restarts the kernel', async () => {
    const { page } = await openNewNotebook();
    const c0 = await addAndRun(page, 'import time\ntime.sleep(60)');
    await page.waitForSelector('.kernel-status[data-status="busy"]');
    await page.click('button.interrupt');
    const err = cellAt(page, c0).locator('.out-error');
    await err.waitFor({ timeout: 15_000 });
    expect(await err.textContent()).toContain('KeyboardInterrupt');
    await waitIdle(page);
    const c1 = await addAndRun(page, 'x = 41');
    // the kernel is usable after the interrupt
    await expect.poll(() => cellAt(page, c1).locator('.prompt').textContent()).toMatch(/^\[\d+\]$/);
    await page.click('button.restart');
    await waitIdle(page);
    const c2 = await addAndRun(page, 'print("x" in dir())');
    await expect.poll(() => cellAt(page, c2).locator('.out-stream').textContent(), { timeout: 20_000 }).toContain('False');
    await expect.poll(() => cellAt(page, c2).locator('.prompt').textContent()).toBe('[1]');
    await page.screenshot({ path: path.join(ARTIFACTS, 'interrupt-restart.png') });
    await page.close();
  }, 120_000);

  it('saves, reloads with outputs, downloads and re-uploads the .ipynb losslessly', async () => {
    const { page } = await openNewNotebook();
    const c0 = await addAndRun(page, 'from IPython.display import display, HTML\ndisplay(HTML("<b>bold html</b>"))\nprint("saved output")');
    await cellAt(page, c0).locator('.out-html b').waitFor();
    await page.keyboard.press('Control+s');
    await page.waitForSelector('.save-state[data-state="saved"]');
    const nbPath = decodeURIComponent(new URL(page.url()).pathname.slice('/notebooks/'.length));
    const onDisk = JSON.parse(await readFile(path.join(kinesis.root, nbPath), 'utf8'));
    expect(onDisk.nbformat_minor).toBe(5);
    expect(onDisk.cells[c0].outputs.map((o: { output_type: string }) => o.output_type)).toEqual(['display_data', 'stream']);

    await page.reload();
    await waitIdle(page);
    expect(await cellAt(page, c0).locator('.out-html b').textContent()).toBe('bold html');
    expect(await cellAt(page, c0).locator('.out-stream').textContent()).toContain('saved output');

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('button.download')]);
    const file = path.join(ARTIFACTS, 'downloaded.ipynb');
    await download.saveAs(file);
    const downloaded = JSON.parse(await readFile(file, 'utf8'));
    expect(downloaded.cells.map((c: { id: string }) => c.id)).toEqual(onDisk.cells.map((c: { id: string }) => c.id));
    expect(downloaded.cells[c0].outputs).toEqual(onDisk.cells[c0].outputs);

    // re-upload under a new name through the file browser; metadata, attachments and ids survive
    downloaded.metadata.custom = { kept: [1, 2, 3] };
    downloaded.cells.push({ id: 'att-cell', cell_type: 'markdown', metadata: { tags: ['t'] }, source: ['![a](attachment:a.png)'], attachments: { 'a.png': { 'image/png': 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==' } } });
    const upload = path.join(ARTIFACTS, 'uploaded.ipynb');
    await writeFile(upload, JSON.stringify(downloaded));
    await page.goto(`${base}/tree`);
    await page.setInputFiles('input[type=file]', upload);
    await page.waitForSelector('.file-row[data-path="uploaded.ipynb"]');
    await page.click('.file-row[data-path="uploaded.ipynb"] a.file-link');
    await waitIdle(page);
    await page.locator('.cell[data-type="markdown"] img').last().waitFor();
    expect(await page.locator('.cell[data-type="markdown"] img').last().getAttribute('src')).toMatch(/^data:image\/png;base64,/);
    await page.keyboard.press('Control+s');
    await page.waitForSelector('.save-state[data-state="saved"]');
    const again = JSON.parse(await readFile(path.join(kinesis.root, 'uploaded.ipynb'), 'utf8'));
    expect(again.metadata.custom).toEqual({ kept: [1, 2, 3] });
    expect(again.cells.map((c: { id: string }) => c.id)).toEqual(downloaded.cells.map((c: { id: string }) => c.id));
    expect(again.cells[again.cells.length - 1].attachments).toEqual(downloaded.cells[downloaded.cells.length - 1].attachments);
    expect(again.cells[c0].outputs).toEqual(downloaded.cells[c0].outputs);
    await page.screenshot({ path: path.join(ARTIFACTS, 'reuploaded.png') });
    await page.close();
  }, 120_000);

  it('edits with the keyboard alone: A B M Y D D Z C V arrows Enter Esc', async () => {
    const { page } = await openNewNotebook();
    const types = () => page.locator('.cell').evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.type));
    await page.keyboard.press('Escape');
    expect(await types()).toEqual(['code']);
    await page.keyboard.press('b'); // below
    await page.keyboard.press('m'); // → markdown
    await page.keyboard.press('a'); // above it
    expect(await types()).toEqual(['code', 'code', 'markdown']);
    await page.keyboard.press('r'); // → raw
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('y'); // markdown → code
    expect(await types()).toEqual(['code', 'raw', 'code']);
    await page.keyboard.press('Enter');
    await page.keyboard.insertText('1 + 1');
    await page.keyboard.press('Escape');
    await page.keyboard.press('c');
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('v'); // paste below the first cell
    expect(await types()).toEqual(['code', 'code', 'raw', 'code']);
    const sources = () => page.evaluate(() => (window as unknown as { kinesis: { model: { toNotebook(): { cells: { source: string[] }[] } } } }).kinesis.model.toNotebook().cells.map((c) => c.source.join('')));
    expect(await sources()).toEqual(['', '1 + 1', '', '1 + 1']);
    await page.keyboard.press('d');
    await page.keyboard.press('d');
    expect(await types()).toEqual(['code', 'raw', 'code']);
    await page.keyboard.press('z'); // undo the delete
    expect(await types()).toEqual(['code', 'code', 'raw', 'code']);
    // multi-select two cells and delete them, then undo
    await page.keyboard.press('Shift+ArrowDown');
    expect(await page.locator('.cell.selected').count()).toBe(2);
    await page.keyboard.press('d');
    await page.keyboard.press('d');
    expect((await types()).length).toBe(2);
    await page.keyboard.press('z');
    expect((await types()).length).toBe(4);
    // Ctrl+Enter runs in place; Alt+Enter runs and inserts
    await page.locator('.cell').nth(3).click({ position: { x: 30, y: 10 } });
    await page.keyboard.press('Control+Enter');
    await expect.poll(() => cellAt(page, 3).locator('.out-rich').textContent()).toBe('2');
    await page.keyboard.press('Alt+Enter');
    expect((await types()).length).toBe(5);
    expect(await page.locator('.cell.editing').count()).toBe(1);
    // Up on the first line continues editing in the cell above, Down comes back
    const editingIndex = () => page.locator('.cell').evaluateAll((els) => els.findIndex((e) => e.classList.contains('editing')));
    expect(await editingIndex()).toBe(4);
    await page.keyboard.press('ArrowUp');
    await expect.poll(editingIndex).toBe(3);
    await page.keyboard.press('ArrowDown');
    await expect.poll(editingIndex).toBe(4);
    await page.keyboard.press('Escape');
    expect(await page.locator('.nb-main').getAttribute('data-mode')).toBe('command');
    await page.screenshot({ path: path.join(ARTIFACTS, 'keyboard.png') });
    await page.close();
  }, 120_000);

  it('completes and shows hover help from the kernel, finds and replaces, drags to reorder and renames', async () => {
    const { page } = await openNewNotebook();
    const c0 = await addAndRun(page, 'import os');
    await cellAt(page, c0).locator('.prompt').filter({ hasText: '[1]' }).waitFor();
    // completions come from complete_request
    await page.keyboard.insertText('os.pa');
    await page.keyboard.press('Control+Space');
    const row = page.locator('.suggest-widget .monaco-list-row').filter({ hasText: 'path' }).first();
    await row.waitFor({ timeout: 15_000 });
    await page.keyboard.press('Escape');
    // hover help comes from inspect_request: point at the end of the "os" token
    await cellAt(page, c0).locator('.view-lines').click();
    const token = await cellAt(page, c0).locator('.view-line span span').filter({ hasText: /os$/ }).first().boundingBox();
    if (!token) throw new Error('no rendered token');
    await page.mouse.move(token.x + token.width - 6, token.y + token.height / 2);
    await page.mouse.move(token.x + token.width - 4, token.y + token.height / 2 + 1);
    await page.locator('.monaco-hover').filter({ hasText: 'module' }).first().waitFor({ timeout: 15_000 });
    await page.mouse.move(5, 880);
    await page.keyboard.press('Escape');
    await page.locator('.cell').last().click({ position: { x: 30, y: 8 } });
    // markdown cells to search
    await page.keyboard.press('b');
    await page.keyboard.press('m');
    await page.keyboard.press('Enter');
    await page.keyboard.insertText('alpha beta alpha');
    await page.keyboard.press('Escape');
    await page.keyboard.press('b');
    await page.keyboard.press('m');
    await page.keyboard.press('Enter');
    await page.keyboard.insertText('ALPHA');
    await page.keyboard.press('Escape');
    await page.keyboard.press('Control+f');
    await page.locator('.find-input').fill('alpha');
    await expect.poll(() => page.locator('.find-count').textContent()).toBe('1 of 3');
    await page.locator('.replace-input').fill('gamma');
    await page.click('.replace-all');
    await expect.poll(() => page.locator('.find-count').textContent()).toBe('no results');
    const sources = () => page.evaluate(() => (window as unknown as { kinesis: { model: { toNotebook(): { cells: { source: string[] }[] } } } }).kinesis.model.toNotebook().cells.map((c) => c.source.join('')));
    expect((await sources()).slice(2)).toEqual(['gamma beta gamma', 'gamma']);
    await page.keyboard.press('Escape');
    // drag the last cell above the first
    const before = await sources();
    await page.locator('.cell').last().locator('.drag-handle').dragTo(page.locator('.cell').first(), { targetPosition: { x: 200, y: 3 } });
    const after = await sources();
    expect(after[0]).toBe(before[before.length - 1]);
    expect([...after].sort()).toEqual([...before].sort());
    await page.keyboard.press('z'); // the move is an undoable cell operation
    expect(await sources()).toEqual(before);
    // rename from the title; the URL (shareable) and the file follow
    await page.click('.nb-title');
    await page.locator('.nb-title-input').fill('renamed notebook');
    await page.keyboard.press('Enter');
    await page.waitForURL(/renamed%20notebook\.ipynb$/);
    await expect.poll(() => readFile(path.join(kinesis.root, 'renamed notebook.ipynb'), 'utf8').then(() => true, () => false)).toBe(true);
    await page.screenshot({ path: path.join(ARTIFACTS, 'find-drag-rename.png') });
    await page.close();
  }, 120_000);

  it('renders streams, displays and long outputs as Jupyter does', async () => {
    const { page } = await openNewNotebook();
    const c0 = await addAndRun(page, [
      'from IPython.display import display, clear_output',
      'h = display("first", display_id=True)',
      'h.update("second")',
      'for i in range(3): print(f"\\rprogress {i}", end="")',
      'print()',
      'print("x" * 150000)',
    ].join('\n'));
    const cell = cellAt(page, c0);
    await cell.locator('.show-all').waitFor({ timeout: 20_000 });
    expect(await cell.locator('.out-rich').first().textContent()).toBe("'second'");
    const stream = cell.locator('.out-stream pre');
    expect(await stream.textContent()).toContain('progress 2');
    expect(await stream.textContent()).not.toContain('progress 0');
    expect((await stream.textContent())!.length).toBeLessThan(150_000);
    await cell.locator('.show-all').click();
    await expect.poll(async () => (await stream.textContent())!.length).toBeGreaterThan(150_000);
    const c1 = await addAndRun(page, 'import time\nfor i in range(5): clear_output(wait=True); print("tick", i); time.sleep(0.05)');
    await expect.poll(() => cellAt(page, c1).locator('.out-stream').textContent()).toBe('tick 4\n');
    expect(await cellAt(page, c1).locator('.out').count()).toBe(1);
    // thousands of outputs, and one huge HTML output, never freeze the page
    const c2 = await addAndRun(page, 'for i in range(600): display(i)\nfrom IPython.display import HTML\ndisplay(HTML("<p>" + "y" * 2_500_000 + "</p>"))');
    const more = cellAt(page, c2).locator('.show-all-outputs');
    await more.waitFor({ timeout: 30_000 });
    expect(await cellAt(page, c2).locator('.out').count()).toBeLessThanOrEqual(500);
    const large = cellAt(page, c2).locator('.out-rich .show-all');
    await large.waitFor();
    expect(await large.textContent()).toContain('text/html');
    await large.click();
    await cellAt(page, c2).locator('.out-html p').waitFor();
    await more.click();
    await expect.poll(() => cellAt(page, c2).locator('.out').count()).toBe(601);
    await page.close();
  }, 120_000);

  it('autosaves, never overwrites a file changed on disk unasked, changes kernel, manages files', async () => {
    const { page } = await openNewNotebook();
    const nbPath = decodeURIComponent(new URL(page.url()).pathname.slice('/notebooks/'.length));
    // autosave after an edit, without Ctrl+S
    await page.locator('.cell').first().click({ position: { x: 30, y: 8 } });
    await page.keyboard.press('Enter');
    await page.keyboard.insertText('autosaved = 1');
    await page.keyboard.press('Escape');
    await expect.poll(() => readFile(path.join(kinesis.root, nbPath), 'utf8').then((t) => JSON.parse(t).cells[0]?.source.join('')), { timeout: 10_000 }).toBe('autosaved = 1');
    // someone else changes the file: autosave does not overwrite it, Ctrl+S asks first
    await new Promise((r) => setTimeout(r, 1100));
    const theirs = JSON.parse(await readFile(path.join(kinesis.root, nbPath), 'utf8'));
    theirs.metadata.changed_elsewhere = true;
    await writeFile(path.join(kinesis.root, nbPath), JSON.stringify(theirs));
    await page.locator('.cell').first().click({ position: { x: 30, y: 8 } });
    await page.keyboard.press('b');
    await page.waitForSelector('.save-state[data-state^="not saved"]', { timeout: 10_000 });
    expect(JSON.parse(await readFile(path.join(kinesis.root, nbPath), 'utf8')).metadata.changed_elsewhere).toBe(true);
    page.once('dialog', (d) => void d.accept());
    await page.keyboard.press('Control+s');
    await page.waitForSelector('.save-state[data-state="saved"]');
    expect(JSON.parse(await readFile(path.join(kinesis.root, nbPath), 'utf8')).cells).toHaveLength(2);
    // change kernel through the picker: the session moves to the other kernelspec
    const sessionKernel = async (): Promise<{ id: string; name: string } | undefined> => {
      const sessions = (await (await fetch(`${kinesis.url}/api/sessions`, { headers: { Authorization: `token ${TOKEN}` } })).json()) as { path: string; kernel: { id: string; name: string } }[];
      return sessions.find((x) => x.path === nbPath)?.kernel;
    };
    const firstKernel = await sessionKernel();
    expect(firstKernel).toBeDefined();
    await page.click('button.kernel-button');
    const other = page.locator('.kernel-option:not(.current)').first();
    await other.waitFor();
    await other.click();
    // a new kernel for the same session (the gateway may resolve an alias spec such as
    // "cheapest available" to the concrete one, so the id is what must change)
    await expect.poll(async () => (await sessionKernel())?.id, { timeout: 30_000 }).not.toBe(firstKernel?.id);
    await waitIdle(page);
    // the file browser: duplicate, rename, delete
    await page.goto(`${base}/tree`);
    const row = page.locator(`.file-row[data-path="${nbPath}"]`);
    await row.locator('button[title="duplicate"]').click();
    const copy = nbPath.replace(/\.ipynb$/, '-Copy1.ipynb');
    await page.locator(`.file-row[data-path="${copy}"]`).waitFor();
    await page.locator(`.file-row[data-path="${copy}"] button[title="rename"]`).click();
    await page.locator('.rename-input').fill('moved.ipynb');
    await page.keyboard.press('Enter');
    await page.locator('.file-row[data-path="moved.ipynb"]').waitFor();
    page.once('dialog', (d) => void d.accept());
    await page.locator('.file-row[data-path="moved.ipynb"] button[title="delete"]').click();
    await page.locator('.file-row[data-path="moved.ipynb"]').waitFor({ state: 'detached' });
    await expect(readFile(path.join(kinesis.root, 'moved.ipynb'))).rejects.toThrow();
    // a folder, entered and left through the breadcrumbs
    await page.click('text=New folder');
    await page.locator('.file-row[data-type="directory"]').first().locator('a.file-link').click();
    await page.waitForURL(/\/tree\/Untitled%20Folder/);
    await page.locator('.crumbs a').first().click();
    await page.waitForURL(/\/tree$/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'file-browser.png') });
    await page.close();
  }, 120_000);

  it('opens a 1,000-cell notebook with editors only for the cells on screen', async () => {
    await writeFile(path.join(kinesis.root, 'big.ipynb'), stringifyNotebook(bigNotebook(1000)));
    const { page, errors } = await newPage();
    await page.goto(`${base}/notebooks/big.ipynb?token=${TOKEN}`);
    await page.locator('.cell[data-type="code"] .view-lines').first().waitFor();
    expect(await page.locator('.status-bar').textContent()).toContain('1000 cells');
    expect(await page.locator('.cell').count()).toBeLessThan(60);
    expect(await page.locator('.monaco-editor .view-lines').count()).toBeLessThan(30);
    // scroll to the end: the last cell renders, the DOM stays small
    await page.locator('.cell-scroller').evaluate((el) => {
      el.scrollTop = el.scrollHeight;
    });
    await page.locator('.cell[data-id="c00999"]').waitFor();
    await page.waitForTimeout(300);
    await page.locator('.cell-scroller').evaluate((el) => {
      el.scrollTop = el.scrollHeight;
    });
    await page.locator('.cell[data-id="c00999"]').waitFor();
    expect(await page.locator('.cell').count()).toBeLessThan(60);
    // keyboard navigation reveals cells far away
    await page.keyboard.press('Home');
    await page.locator('.cell[data-id="c00000"]').waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, 'big-notebook.png') });
    expect(errors).toEqual([]);
    await page.close();
  }, 120_000);
});
