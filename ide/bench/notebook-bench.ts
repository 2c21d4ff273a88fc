// IDE benchmark: a 1,000-cell notebook (code with outputs, markdown with math, raw)
// opened in headless Chromium from the Kinesis stack (gateway + local provider).
//   interactive: navigation start → the visible code editors show their text and a
//                first keystroke into one of them has been painted (target < 1.5 s)
//   keystroke-to-paint: keydown → the frame after it was painted, while typing 200
//                keys in a cell in the middle of the notebook (target p95 < 16 ms).
//                Measured twice (see typing.ts): in a browser that paints on a 60 Hz
//                vsync, where the wait for the next frame alone is uniform over
//                0-16.7 ms and a bare <textarea> already measures p95 >= 16 ms here, and
//                in a browser launched with --disable-frame-rate-limit
//                --disable-gpu-vsync, where a frame starts as soon as one is needed, so
//                the latency is the app's own. The target is judged on the second,
//                together with the main thread's CPU time per keystroke (< 8 ms, half
//                a frame, so a keystroke's work never spills into a second frame).
//   memory: resident memory of the tab's renderer process, notebook open, edited and
//           scrolled end to end (< 300 MB); JS heap after a forced GC alongside
// Run: `npx tsx ide/bench/notebook-bench.ts`, or call runIdeBench() (npm run bench).
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { stringifyNotebook } from '@kinesis/protocol/notebook/index';
import type { Cell, Notebook, Output } from '@kinesis/protocol/notebook/index';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, ensureBuilt, startKinesis } from '../test/harness.ts';
import { rendererRssMiB } from './proc.ts';
import { writeIdeReport } from './report.ts';
import { TYPED, UNTHROTTLED_ARGS, percentile, textareaBaseline, typeAndMeasure } from './typing.ts';
import type { TypingResult } from './typing.ts';

const CELLS = 1000;
/** The cell typed into, in the middle of the notebook. */
const TYPED_CELL = 'c00500';

// 1x1 PNG, so image outputs exist without inflating the file.
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

/** A deterministic mixed notebook: 60% code (with outputs), 30% markdown (with math), 10% raw. */
export function bigNotebook(n = CELLS): Notebook {
  const cells: Cell[] = [];
  for (let i = 0; i < n; i++) {
    const id = `c${i.toString().padStart(5, '0')}`;
    const k = i % 10;
    if (k < 6) {
      const lines = 3 + (i % 8);
      const source = Array.from({ length: lines }, (_, j) => `x_${i}_${j} = [v * ${j} for v in range(${i % 50})]  # line ${j}\n`).join('') + `print(len(x_${i}_0))`;
      const outputs: Output[] = [{ output_type: 'stream', name: 'stdout', text: `${i % 50}\n`.repeat(1 + (i % 4)) }];
      if (k === 1) outputs.push({ output_type: 'display_data', data: { 'image/png': PNG, 'text/plain': '<Figure>' }, metadata: {} });
      if (k === 2) outputs.push({ output_type: 'execute_result', execution_count: i, data: { 'text/html': `<table><tr><th>a</th><th>b</th></tr>${'<tr><td>1</td><td>2</td></tr>'.repeat(5)}</table>`, 'text/plain': 'df' }, metadata: {} });
      cells.push({ id, cell_type: 'code', source, metadata: {}, outputs, execution_count: i + 1 });
    } else if (k < 9) {
      cells.push({ id, cell_type: 'markdown', source: `## Section ${i}\n\nSome *text* with math $\\alpha_${i % 9} + \\beta^2 = \\gamma$ and a list:\n\n- one\n- two`, metadata: {} });
    } else {
      cells.push({ id, cell_type: 'raw', source: `raw cell ${i}`, metadata: {} });
    }
  }
  return { nbformat: 4, nbformat_minor: 5, metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' } }, cells };
}

/** Keystroke figures of one browser run: typing in the notebook, and in a bare <textarea> (the floor). */
export interface KeystrokeRun {
  /** Chromium flags beyond the harness's own. */
  readonly flags: readonly string[];
  readonly notebook: TypingResult;
  readonly textarea: TypingResult;
}

export interface IdeBenchResult {
  readonly cells: number;
  readonly typedKeys: number;
  readonly interactiveMs: number;
  readonly editorsReadyMs: number;
  /** Keystroke to paint, browser painting on a 60 Hz vsync (includes the wait for the next frame). */
  readonly keystrokeP50Ms: number;
  readonly keystrokeP95Ms: number;
  readonly keystrokeMaxMs: number;
  /** Chrome's Event Timing (keydown → next paint) p95; null when under its 16 ms reporting threshold. */
  readonly keystrokeEventTimingP95Ms: number | null;
  /** Keystrokes Event Timing reported at 16 ms or more. */
  readonly keystrokesOver16Ms: number;
  /** The same typing into a bare <textarea> in the same browser (the environment's floor). */
  readonly textareaKeystrokeP50Ms: number;
  readonly textareaKeystrokeP95Ms: number;
  readonly textareaKeysOver16Ms: number;
  /** Renderer main-thread busy time per keystroke (CDP TaskDuration, wall time), vsync run. */
  readonly keystrokeWorkMs: number;
  readonly textareaWorkMs: number;
  /** Renderer main-thread CPU time per keystroke (/proc schedstat), vsync run: what the target judges. */
  readonly keystrokeCpuMs: number;
  readonly textareaCpuMs: number;
  /** The same measures in a browser that starts a frame as soon as one is needed: the app's own latency. */
  readonly unthrottled: KeystrokeRun;
  readonly jsHeapUsedMB: number;
  /** Resident memory of the tab's renderer process (all of it: heap, DOM, code, GPU-less raster). */
  readonly rendererRssMB: number;
  readonly domNodes: number;
  readonly editorsCreated: number;
  readonly scrollFrameP95Ms: number;
  readonly targets: { interactiveMs: number; keystrokeP95Ms: number; keystrokeWorkMs: number; memoryMB: number };
  /** Interactive, memory, unthrottled keystroke p95, and main-thread CPU per key in the vsync run (see judge()). */
  readonly pass: boolean;
  readonly machine: string;
  /** 1-minute load average when the run ended: these figures mean little on a busy machine. */
  readonly loadAverage: number;
  readonly date: string;
}

export const TARGETS = { interactiveMs: 1500, keystrokeP95Ms: 16, keystrokeWorkMs: 8, memoryMB: 300 } as const;

/** Notebook open (editors showing text) → select TYPED_CELL, click into its editor, type and measure. */
async function typeInNotebook(page: Page, browserPid: number): Promise<TypingResult> {
  await page.evaluate((id) => {
    const k = (window as unknown as { kinesis: { view: { select(id: string): void } } }).kinesis;
    k.view.select(id);
  }, TYPED_CELL);
  const lines = `.cell[data-id="${TYPED_CELL}"] .view-lines`;
  await page.waitForSelector(lines);
  await page.locator(lines).click();
  const r = await typeAndMeasure(page, browserPid, (i) => (i % 20 === 19 ? ' ' : 'a'));
  const typedOk = await page.evaluate((id) => String((window as unknown as { kinesis: { model: { cell(id: string): { get(k: string): unknown } } } }).kinesis.model.cell(id)?.get('source')).includes('aaaa'), TYPED_CELL);
  if (!typedOk) throw new Error('typing did not reach the notebook document');
  return r;
}

/** Resolves, on the page's clock, when the first code cell's editor shows its text. */
const EDITORS_READY = `new Promise((resolve) => {
  function check() {
    const first = document.querySelector('.cell[data-type="code"] .view-lines');
    if (first && (first.textContent || '').includes('x_0_0')) resolve(performance.now());
    else requestAnimationFrame(check);
  }
  check();
})`;

/** Opens `file` in a fresh tab, with the HTTP cache warmed once (a returning user has the hashed assets cached). */
async function openNotebook(browser: Browser, url: string, token: string, file: string): Promise<{ page: Page; editorsReadyMs: number }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${url}/tree?token=${token}`);
  await page.waitForSelector('.file-row');
  await page.goto(`${url}/notebooks/${file}`);
  // Functions handed to the page are strings: tsx's keepNames would wrap named
  // inner functions in a `__name` helper that does not exist in the page.
  const editorsReadyMs = await page.evaluate<number>(EDITORS_READY);
  return { page, editorsReadyMs };
}

/**
 * The same notebook (a fresh copy, so edits autosaved by the first run are not in it),
 * the same cell and the same keys, in a browser that produces frames when needed.
 */
async function unthrottledRun(url: string, token: string, root: string): Promise<KeystrokeRun> {
  await writeFile(path.join(root, 'big-unthrottled.ipynb'), stringifyNotebook(bigNotebook()));
  const server = await chromium.launchServer({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, ...UNTHROTTLED_ARGS], headless: true });
  const browser = await chromium.connect(server.wsEndpoint());
  const pid = server.process().pid ?? -1;
  try {
    const { page } = await openNotebook(browser, url, token, 'big-unthrottled.ipynb');
    const notebook = await typeInNotebook(page, pid);
    await page.close();
    return { flags: UNTHROTTLED_ARGS, notebook, textarea: await textareaBaseline(browser, pid) };
  } finally {
    await browser.close();
    await server.close();
  }
}

export async function runIdeBench(): Promise<IdeBenchResult> {
  ensureBuilt();
  const token = `bench-${Date.now()}`;
  const stack = await startKinesis(token);
  // launchServer, so the browser's pid is known and its renderer's memory and CPU time can be read.
  const server = await chromium.launchServer({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  const browser = await chromium.connect(server.wsEndpoint());
  const pid = server.process().pid ?? -1;
  try {
    await writeFile(path.join(stack.root, 'big.ipynb'), stringifyNotebook(bigNotebook()));
    const { page, editorsReadyMs } = await openNotebook(browser, stack.url, token, 'big.ipynb');
    // First input, as a user would give it the moment the editors appear: Enter
    // (command mode → edit the first cell) and a keystroke, until that keystroke is
    // painted. Both times are on the page's clock, from navigation start.
    await page.evaluate(`(() => {
      window.__painted = [];
      window.addEventListener('keydown', (e) => {
        requestAnimationFrame(() => setTimeout(() => window.__painted.push([e.key, performance.now()]), 0));
      }, true);
    })()`);
    await page.keyboard.press('Enter');
    await page.keyboard.type('#');
    await page.waitForFunction(`window.__painted.some((p) => p[0] === '#') && String(window.kinesis.model.cell('c00000').get('source')).includes('#')`);
    const firstInputDone = await page.evaluate<number>(`window.__painted.find((p) => p[0] === '#')[1]`);
    const interactiveMs = Math.max(editorsReadyMs, firstInputDone);

    // Keystroke-to-paint while typing in the middle of the notebook.
    await page.keyboard.press('Escape');
    const typed = await typeInNotebook(page, pid);

    // Scrolling through the whole notebook: time per scroll step until painted.
    const scrollFrames = await page.evaluate<number[]>(`(async () => {
      const sc = document.querySelector('.cell-scroller');
      const times = [];
      sc.scrollTop = 0;
      for (let i = 0; i < 80; i++) {
        const t0 = performance.now();
        sc.scrollTop += 700;
        await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
        times.push(performance.now() - t0);
      }
      return times;
    })()`);

    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Performance.enable');
    await cdp.send('HeapProfiler.collectGarbage');
    // Let the renderer return the freed pages before reading its RSS.
    await page.waitForTimeout(1000);
    const { metrics } = await cdp.send('Performance.getMetrics');
    const metric = (n: string): number => metrics.find((m) => m.name === n)?.value ?? NaN;
    const editorsCreated = await page.evaluate(() => (window as unknown as { kinesis: { pool: { created: number } } }).kinesis.pool.created);
    const jsHeapUsedMB = metric('JSHeapUsedSize') / 1024 / 1024;
    const baseline = await textareaBaseline(browser, pid);
    const rendererMB = rendererRssMiB(pid);
    await page.close();
    const unthrottled = await unthrottledRun(stack.url, token, stack.root);
    const os = await import('node:os');
    const result: IdeBenchResult = {
      cells: CELLS,
      typedKeys: TYPED,
      interactiveMs: Math.round(interactiveMs),
      editorsReadyMs: Math.round(editorsReadyMs),
      keystrokeP50Ms: typed.p50,
      keystrokeP95Ms: typed.p95,
      keystrokeMaxMs: typed.max,
      keystrokeWorkMs: typed.workPerKey,
      keystrokeCpuMs: typed.cpuPerKey,
      keystrokeEventTimingP95Ms: typed.eventTimingP95,
      keystrokesOver16Ms: typed.over16,
      textareaKeystrokeP50Ms: baseline.p50,
      textareaKeystrokeP95Ms: baseline.p95,
      textareaKeysOver16Ms: baseline.over16,
      textareaWorkMs: baseline.workPerKey,
      textareaCpuMs: baseline.cpuPerKey,
      unthrottled,
      jsHeapUsedMB: +jsHeapUsedMB.toFixed(1),
      rendererRssMB: +rendererMB.toFixed(1),
      domNodes: metric('Nodes'),
      editorsCreated,
      scrollFrameP95Ms: +percentile(scrollFrames, 95).toFixed(2),
      targets: { ...TARGETS },
      pass: false,
      machine: `${process.platform} ${process.arch}, ${os.cpus().length} CPUs, Chromium ${browser.version()}`,
      loadAverage: +(os.loadavg()[0] ?? 0).toFixed(2),
      date: new Date().toISOString(),
    };
    const final = { ...result, pass: judge(result).pass };
    await writeIdeReport(final, judge(final));
    return final;
  } finally {
    await browser.close();
    await server.close();
    await stack.close();
  }
}

export interface Verdict {
  readonly interactive: boolean;
  readonly memory: boolean;
  /** Unthrottled keystroke-to-paint p95 under the target. */
  readonly keystroke: boolean;
  /** Main-thread CPU time per keystroke under the target, browser on vsync. */
  readonly work: boolean;
  readonly pass: boolean;
}

/**
 * Keystrokes are judged where the latency measure means the app's latency (the
 * unthrottled run), and on the main thread's CPU time per key in the vsync run, where
 * frames are paced as a user's browser paces them (the unthrottled browser draws
 * extra frames, about 1.25 per key in a trace here, that a paced one coalesces). CPU time, not
 * task wall time: the latter also counts time this thread waited while other work on
 * the 2-core machine held the CPUs. Both are reported. The vsync-quantized p95 is
 * reported but not judged: a bare textarea does not meet it on this machine.
 */
export function judge(r: IdeBenchResult): Verdict {
  const interactive = r.interactiveMs < r.targets.interactiveMs;
  const memory = r.rendererRssMB < r.targets.memoryMB;
  const keystroke = r.unthrottled.notebook.p95 < r.targets.keystrokeP95Ms;
  const work = r.keystrokeCpuMs < r.targets.keystrokeWorkMs;
  return { interactive, memory, keystroke, work, pass: interactive && memory && keystroke && work };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runIdeBench().then((r) => {
    console.log(JSON.stringify(r, null, 2));
    process.exit(r.pass ? 0 : 1);
  }, (e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
