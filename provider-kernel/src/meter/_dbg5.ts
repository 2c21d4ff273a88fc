import { Worker } from 'node:worker_threads';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function cpuOver(ms: number) { const c0 = process.cpuUsage(); const t0 = performance.now(); await sleep(ms); const c = process.cpuUsage(c0); return ((c.user + c.system) / 1000 / (performance.now() - t0)) * 100; }
const w = new Worker(new URL('./sampler-worker.mjs', import.meta.url), { workerData: { nvmlLibrary: null, raplRoot: '/x', procRoot: '/proc', periodMs: 100 } });
let n = 0; let readUs = 0;
w.on('message', (m) => { n++; if (m.type === 'tick') readUs += m.readUs; });
await sleep(1000);
console.log('worker, no kernels', (await cpuOver(3000)).toFixed(2), 'readUs/tick', (readUs / n).toFixed(0));
w.postMessage({ type: 'track', kernelId: 'k', pid: process.pid, gpu: null });
await sleep(500); n = 0; readUs = 0;
console.log('worker, 1 kernel', (await cpuOver(3000)).toFixed(2), 'readUs/tick', (readUs / n).toFixed(0));
await w.terminate();
