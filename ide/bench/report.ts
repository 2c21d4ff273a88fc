// bench/results/ide.json and ide.md from one IDE benchmark run.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { REPO } from '../test/harness.ts';
import type { IdeBenchResult, Verdict } from './notebook-bench.ts';
import type { TypingResult } from './typing.ts';

const ok = (b: boolean): string => (b ? 'pass' : 'FAIL');
const lat = (t: TypingResult): string => `${t.p50} / ${t.p95} / ${t.max} ms`;
const et = (t: TypingResult, keys: number): string => `${t.eventTimingP95 === null ? '< 16' : t.eventTimingP95} ms (${t.over16} of ${keys} keys at 16 ms or more)`;

export async function writeIdeReport(r: IdeBenchResult, v: Verdict): Promise<void> {
  const dir = path.join(REPO, 'bench/results');
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'ide.json'), JSON.stringify(r, null, 2) + '\n');
  const u = r.unthrottled;
  const n = r.typedKeys;
  const md = `# IDE benchmark: ${r.pass ? 'pass' : 'FAIL'}

${r.date} · ${r.machine} · load average ${r.loadAverage} (other work on this 2-core machine inflates every figure below)

A ${r.cells}-cell notebook (60% code with stream, image and HTML outputs, 30% markdown with math, 10% raw), served by the Kinesis gateway (contents API, static IDE, a local provider running ipykernel) in headless Chromium (flags: --headless --no-sandbox --disable-gpu).

| measure | result | target | |
| --- | --- | --- | --- |
| interactive (visible editors show text and a first keystroke is painted) | ${r.interactiveMs} ms | < ${r.targets.interactiveMs} ms | ${ok(v.interactive)} |
| visible editors ready | ${r.editorsReadyMs} ms | | |
| **keystroke to paint, frames when needed** (${u.flags.join(' ')}), p50 / p95 / max (${n} keys in cell 500) | ${lat(u.notebook)} | p95 < ${r.targets.keystrokeP95Ms} ms | ${ok(v.keystroke)} |
| **renderer main-thread CPU time per keystroke** (script, style, layout, paint, commit, input dispatch), browser on vsync | ${r.keystrokeCpuMs} ms | < ${r.targets.keystrokeWorkMs} ms | ${ok(v.work)} |
| the same, frames when needed | ${u.notebook.cpuPerKey} ms | | |
| renderer main-thread task time per keystroke (wall: also counts waiting for a CPU), vsync / frames when needed | ${r.keystrokeWorkMs} / ${u.notebook.workPerKey} ms | | |
| memory: the tab's renderer process (RSS) | ${r.rendererRssMB} MB | < ${r.targets.memoryMB} MB | ${ok(v.memory)} |
| keystroke to paint, browser on a 60 Hz vsync, p50 / p95 / max | ${r.keystrokeP50Ms} / ${r.keystrokeP95Ms} / ${r.keystrokeMaxMs} ms | reported, not judged | |
| the same by Chrome's Event Timing (as INP), vsync / frames when needed, p95 | ${r.keystrokeEventTimingP95Ms === null ? '< 16' : r.keystrokeEventTimingP95Ms} ms (${r.keystrokesOver16Ms} of ${n} keys at 16 ms or more) / ${et(u.notebook, n)} | | |
| baseline: the same typing into a bare \`<textarea>\`, vsync, p50 / p95 | ${r.textareaKeystrokeP50Ms} / ${r.textareaKeystrokeP95Ms} ms; Event Timing: ${r.textareaKeysOver16Ms} of ${n} keys at 16 ms or more | | |
| baseline: bare \`<textarea>\`, frames when needed, p50 / p95 / max | ${lat(u.textarea)}; Event Timing p95 ${et(u.textarea, n)} | | |
| baseline: bare \`<textarea>\` main-thread CPU time per keystroke, vsync / frames when needed (task time) | ${r.textareaCpuMs} / ${u.textarea.cpuPerKey} ms (${r.textareaWorkMs} / ${u.textarea.workPerKey} ms) | | |
| JS heap after GC | ${r.jsHeapUsedMB} MB | | |
| DOM nodes | ${r.domNodes} | | |
| Monaco editors created (after scrolling all ${r.cells} cells) | ${r.editorsCreated} | | |
| scroll step to paint, p95 | ${r.scrollFrameP95Ms} ms | | |

How keystrokes are judged. Keystroke to paint is measured from the keydown event to a task queued right after the next frame's paint, while typing ${n} keys (one every 25 ms) into cell 500. In a browser that paints on a 60 Hz vsync that includes the wait for the next frame, uniform over 0-16.7 ms (its own p95 is 15.9 ms) whatever the page does: on this machine a bare \`<textarea>\` measures p95 ${r.textareaKeystrokeP95Ms} ms that way, so a p95 under 16 ms there says nothing about the IDE. The same notebook, cell and keys are therefore typed again in a browser launched with \`${u.flags.join(' ')}\`, which starts a frame as soon as one is needed: there the measure is the IDE's own latency (event handling plus the frame it causes), and the target p95 < ${r.targets.keystrokeP95Ms} ms is judged on it. With it, the renderer main thread's CPU time per keystroke must stay under ${r.targets.keystrokeWorkMs} ms (half a frame), so that a keystroke's work fits in the frame it lands in; it is judged in the vsync browser, whose frame pacing is a user's (the frames-when-needed browser draws extra frames that a paced one coalesces), and as CPU time because task wall time also counts the time the thread waited while other work held this machine's two CPUs (both are in the table). The vsync latency figures stay for comparison with earlier runs. Main-thread time includes the browser's own input dispatch and the probe: the bare textarea's figure is that floor.

For reference, classic Jupyter Notebook 6.4 measured on this machine kind took 21.9 s to open such a notebook, and 1,000 eagerly created Monaco editors take 40-60 s.
`;
  await writeFile(path.join(dir, 'ide.md'), md);
}
