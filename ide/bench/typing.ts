// Keystroke-to-paint measurement shared by the IDE benchmark's two browser runs.
//
// Latency: keydown event → a task queued right after the next frame's paint
// (requestAnimationFrame, then setTimeout 0). Work, per key typed, two ways: the
// renderer main thread's busy time (CDP Performance TaskDuration: script, style,
// layout, paint, commit, and the input dispatch itself), a wall time that also grows
// while other processes hold this 2-core machine's CPUs, and the CPU time that thread
// actually ran (/proc schedstat), which does not.
//
// Why two runs: in a browser that paints on a 60 Hz vsync, a keystroke waits for the
// next frame, and that wait alone is uniform over 0-16.7 ms (p95 15.9 ms) whatever the
// app does; on this machine a bare <textarea> already measures p95 >= 16 ms that way.
// With UNTHROTTLED_ARGS, Chromium starts a frame as soon as one is needed, so the same
// measure becomes the app's own latency: event handling plus the frame it causes.
import type { Browser, Page } from 'playwright-core';
import { rendererMainCpuMs } from './proc.ts';

export const TYPED = 200;

/** Frames are produced when needed instead of on the (virtual) display's 60 Hz vsync. */
export const UNTHROTTLED_ARGS: readonly string[] = ['--disable-frame-rate-limit', '--disable-gpu-vsync'];

export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
}

export interface TypingResult {
  readonly p50: number;
  readonly p95: number;
  readonly max: number;
  /** Chrome's Event Timing (keydown → next paint, as INP) p95; null when under its 16 ms reporting threshold. */
  readonly eventTimingP95: number | null;
  /** Keystrokes Event Timing reported at 16 ms or more. */
  readonly over16: number;
  /** Renderer main-thread busy time (wall) per keystroke, ms. */
  readonly workPerKey: number;
  /** Renderer main-thread CPU time per keystroke, ms. */
  readonly cpuPerKey: number;
}

// A string, not a function: tsx's keepNames would wrap named inner functions in a
// `__name` helper that does not exist in the page.
const LATENCY_PROBE = `(() => {
  window.__lat = [];
  window.addEventListener('keydown', (e) => {
    const t0 = e.timeStamp;
    requestAnimationFrame(() => setTimeout(() => window.__lat.push(performance.now() - t0), 0));
  }, true);
  // Chrome's own event-to-next-paint measure (Event Timing API, as INP uses). It
  // reports only events of 16 ms or more; unreported keystrokes took less.
  window.__slowKeys = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (e.name === 'keydown') window.__slowKeys.push(e.duration);
  }).observe({ type: 'event', durationThreshold: 16, buffered: false });
})()`;

/**
 * Types TYPED keys (one every 25 ms) into whatever has focus on `page`, measuring each.
 * `browserPid`: the browser's process, under which the page's renderer is found (the
 * renderer whose main thread ran most while typing).
 */
export async function typeAndMeasure(page: Page, browserPid: number, key: (i: number) => string): Promise<TypingResult> {
  await page.evaluate(LATENCY_PROBE);
  const cdp = await page.context().newCDPSession(page);
  try {
    await cdp.send('Performance.enable');
    const taskTime = async (): Promise<number> => (await cdp.send('Performance.getMetrics')).metrics.find((m) => m.name === 'TaskDuration')?.value ?? NaN;
    const busyBefore = await taskTime();
    const cpuBefore = rendererMainCpuMs(browserPid);
    for (let i = 0; i < TYPED; i++) await page.keyboard.type(key(i), { delay: 0 }).then(() => page.waitForTimeout(25));
    await page.waitForTimeout(300);
    const workPerKey = ((await taskTime()) - busyBefore) * 1000 / TYPED;
    let cpu = 0;
    for (const [pid, ms] of rendererMainCpuMs(browserPid)) cpu = Math.max(cpu, ms - (cpuBefore.get(pid) ?? ms));
    const lat = await page.evaluate<number[]>('window.__lat');
    const slow = await page.evaluate<number[]>('window.__slowKeys');
    // p95 by Event Timing: keystrokes it did not report count as under 16 ms.
    const et = [...Array<number>(Math.max(0, TYPED - slow.length)).fill(0), ...slow].sort((a, b) => a - b);
    const etP95 = et[Math.ceil(0.95 * et.length) - 1] ?? 0;
    return {
      p50: +percentile(lat, 50).toFixed(2),
      p95: +percentile(lat, 95).toFixed(2),
      max: +Math.max(...lat).toFixed(2),
      eventTimingP95: etP95 >= 16 ? etP95 : null,
      over16: slow.length,
      workPerKey: +workPerKey.toFixed(2),
      cpuPerKey: +(cpu / TYPED).toFixed(2),
    };
  } finally {
    await cdp.detach();
  }
}

/** The same typing into a bare <textarea> in the same browser: the floor this machine and browser set. */
export async function textareaBaseline(browser: Browser, browserPid: number): Promise<TypingResult> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  try {
    await page.setContent('<textarea id="t" style="width:600px;height:300px"></textarea>');
    await page.click('#t');
    return await typeAndMeasure(page, browserPid, () => 'a');
  } finally {
    await page.close();
  }
}
