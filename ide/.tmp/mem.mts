import { readFileSync, readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { stringifyNotebook } from '/work/main/protocol/src/notebook/index.ts';
import { bigNotebook } from '/work/main/ide/bench/notebook-bench.ts';
import { CHROMIUM, CHROMIUM_ARGS, startKinesis } from '/work/main/ide/test/harness.ts';
function rss(root: number): string {
  const kids = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) { if (!/^\d+$/.test(d)) continue; try { const st = readFileSync(`/proc/${d}/stat`, 'utf8'); const pp = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]); kids.set(pp, [...(kids.get(pp) ?? []), Number(d)]); } catch {} }
  const out: string[] = [];
  const walk = (p: number) => { for (const c of kids.get(p) ?? []) { try { const cmd = readFileSync(`/proc/${c}/cmdline`, 'utf8'); const t = /--type=([a-z-]+)/.exec(cmd)?.[1] ?? 'browser?'; const st = readFileSync(`/proc/${c}/status`, 'utf8'); out.push(`${t}:${Math.round(Number(/VmRSS:\s+(\d+)/.exec(st)?.[1]) / 1024)}M(anon ${Math.round(Number(/RssAnon:\s+(\d+)/.exec(st)?.[1]) / 1024)}M)`); } catch {} walk(c); } };
  walk(root); return out.join(' ');
}
const k = await startKinesis('T0K');
const server = await chromium.launchServer({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
const b = await chromium.connect(server.wsEndpoint());
try {
  await writeFile(path.join(k.root, 'big.ipynb'), stringifyNotebook(bigNotebook(Number(process.argv[2] ?? 1000))));
  const page = await b.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto('about:blank'); await page.waitForTimeout(500);
  console.log('blank', rss(server.process().pid!));
  await page.goto(`${k.url}/tree?token=T0K`); await page.waitForSelector('.file-row'); await page.waitForTimeout(500);
  console.log('tree', rss(server.process().pid!));
  await page.goto(`${k.url}/notebooks/big.ipynb`); await page.waitForSelector('.cell .view-lines'); await page.waitForTimeout(1500);
  console.log('open', rss(server.process().pid!));
  await page.evaluate(`(async () => { const sc = document.querySelector('.cell-scroller'); for (let i = 0; i < 300; i++) { sc.scrollTop += 700; await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0))); } })()`);
  await page.waitForTimeout(1000);
  console.log('scrolled', rss(server.process().pid!));
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('HeapProfiler.collectGarbage'); await page.waitForTimeout(1500);
  console.log('gc', rss(server.process().pid!));
  console.log(JSON.stringify((await cdp.send('Performance.getMetrics') as any).metrics.filter((m: any) => /Heap|Nodes|Documents/.test(m.name))));
  await cdp.send('Memory.simulatePressureNotification', { level: 'critical' }); await page.waitForTimeout(1500);
  console.log('pressure', rss(server.process().pid!));
} finally { await b.close(); await server.close(); await k.close(); }
