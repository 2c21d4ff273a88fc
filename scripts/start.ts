// `npm start`: the whole system on one machine, on embedded defaults — a local chain
// (anvil) with the escrow deployed and dev accounts funded, the gateway with SQLite, one
// provider on this machine's own hardware, and the IDE — then prints the URL. Ctrl-C
// stops everything, in reverse order.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync, type Dirent } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: process.env['KINESIS_PORT'] ?? '8888' },
    host: { type: 'string', default: process.env['KINESIS_HOST'] ?? '127.0.0.1' },
    'data-dir': { type: 'string', default: process.env['KINESIS_HOME'] ?? join(root, '.data') },
    'chain-port': { type: 'string', default: process.env['KINESIS_CHAIN_PORT'] ?? '8545' },
    // KUSD has 6 decimals: 300000 base units = 0.30 KUSD per kWh, about what grid power costs.
    price: { type: 'string', default: process.env['KINESIS_PRICE_PER_KWH'] ?? '300000' },
    'no-chain': { type: 'boolean', default: false },
    'no-provider': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});

if (values.help) {
  console.log(`npm start [-- --port 8888] [--host 127.0.0.1] [--data-dir .data] [--chain-port 8545] [--price 300000] [--no-chain] [--no-provider]
Starts a local chain, the gateway, a provider on this machine and the IDE. Env: KINESIS_TOKEN fixes the token.`);
  process.exit(0);
}

function portArg(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    console.error(`--${name} must be a port number (0-65535), got ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return n;
}

const port = portArg('port', values.port);
const chainPort = portArg('chain-port', values['chain-port']);
if (!/^(0|[1-9][0-9]{0,30})$/.test(values.price)) {
  console.error(`--price must be a whole number of token base units per kWh, got ${JSON.stringify(values.price)}`);
  process.exit(2);
}
const pricePerKwh = BigInt(values.price);
const dataDir = resolve(values['data-dir']);
mkdirSync(dataDir, { recursive: true, mode: 0o700 });

// The token persists in the data dir so a restart keeps open tabs working.
const tokenFile = join(dataDir, 'gateway-token');
const token = process.env['KINESIS_TOKEN'] ?? (existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() : randomBytes(24).toString('hex'));
writeFileSync(tokenFile, token, { mode: 0o600 });

const stops: (() => Promise<void>)[] = [];
let stopping = false;
async function stopAll(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    for (const stop of stops.reverse()) await stop().catch((e: unknown) => console.error('[kinesis] stop failed:', e));
  }
  process.exit(code);
}
process.on('SIGINT', () => void stopAll(0));
process.on('SIGTERM', () => void stopAll(0));

try {
  await buildIde();

  let chain: { rpcUrl: string; chainId: number; escrow: string; token: string } | undefined;
  if (!values['no-chain']) {
    const { startLocalChain } = await import('@kinesis/contracts');
    const c = await startLocalChain({ port: chainPort, dataDir: join(dataDir, 'chain'), log: (s: string) => console.log(`[chain] ${s}`) });
    stops.push(() => c.stop());
    chain = c;
    console.log(`[kinesis] chain ${c.rpcUrl} (id ${c.chainId}), escrow ${c.escrow}, KUSD ${c.token}`);
  }

  const { startGateway } = await import('@kinesis/kernel-gateway');
  const gw = await startGateway({ port, host: values.host, token, dataDir: join(dataDir, 'gateway'), ideDistDir: join(root, 'ide', 'dist'), ...(chain ? { chain } : {}) });
  stops.push(() => gw.close());

  if (!values['no-provider']) {
    const { startProvider } = await import('@kinesis/provider-kernel');
    const p = await startProvider({ gatewayUrl: gw.url, dataDir: join(dataDir, 'provider'), name: 'this-machine', pricePerKwh });
    stops.push(() => p.close());
    console.log(`[kinesis] provider ${p.address} connected`);
  }

  const shown = values.host === '0.0.0.0' ? '127.0.0.1' : values.host;
  console.log(`\n  Kinesis is running:  http://${shown}:${gw.port}/?token=${token}\n  Ctrl-C stops everything.\n`);
} catch (err) {
  console.error('[kinesis] start failed:', err);
  await stopAll(1);
}

/** Builds the IDE when its sources are newer than the last build. */
async function buildIde(): Promise<void> {
  const dist = join(root, 'ide', 'dist', 'index.html');
  if (existsSync(dist) && newest(join(root, 'ide', 'src')) <= statSync(dist).mtimeMs) return;
  console.log('[kinesis] building the IDE…');
  const { build } = await import('vite');
  await build({ configFile: join(root, 'vite.config.ts'), logLevel: 'warn' });
}

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSyncSafe(dir)) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

function readdirSyncSafe(dir: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}
