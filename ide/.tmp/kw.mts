import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringifyNotebook } from '/work/main/protocol/src/notebook/index.ts';
import { bigNotebook } from '/work/main/ide/bench/notebook-bench.ts';
import { ensureBuilt, startJupyter, startIdeServer, launchChromium } from '/work/main/ide/test/harness.ts';
const n = Number(process.argv[2] ?? 3);
const j = await startJupyter('T0K');
const ide = await startIdeServer(j.url);
const b = await launchChromium();
try {
  await writeFile(path.join(j.root, 'nb.ipynb'), stringifyNotebook(bigNotebook(n)));
  const page = await b.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${ide.url}/notebooks/nb.ipynb?token=T0K`);
  await page.waitForSelector('.cell .view-lines');
  await page.waitForTimeout(2000);
  await page.keyboard.press('Enter');
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Performance.enable');
  const m = async () => Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((x: any) => [x.name, x.value]));
  const a = await m();
  for (let i = 0; i < 100; i++) { await page.keyboard.type('a'); await page.waitForTimeout(25); }
  const z = await m();
  for (const k of ['TaskDuration', 'ScriptDuration', 'RecalcStyleDuration', 'LayoutDuration', 'LayoutCount', 'RecalcStyleCount', 'Nodes']) console.log(k, ((z[k] - a[k]) * (k.endsWith('Duration') ? 1000 / 100 : 1 / 100)).toFixed(2), k === 'Nodes' ? z[k] : '');
} finally { await b.close(); await ide.close(); await j.close(); }
