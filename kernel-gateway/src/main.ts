// The `kinesis-gateway` process: parse flags, listen, close cleanly on SIGINT/SIGTERM.
import { CliError, parseCli, USAGE } from './cli/args.ts';
import { startGateway } from './index.ts';
import { consoleLogger } from './logger.ts';

let parsed;
try {
  parsed = parseCli(process.argv.slice(2), process.env);
} catch (err) {
  if (err instanceof CliError) {
    process.stderr.write(`kinesis-gateway: ${err.shortMessage}\n\n${USAGE}\n`);
    process.exit(2);
  }
  throw err;
}
if (parsed.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const c = parsed.config;
const logger = consoleLogger(c.logLevel);
let gw;
try {
  gw = await startGateway({
    port: c.port,
    host: c.host,
    token: c.token,
    dataDir: c.dataDir,
    logger,
    cull: c.cull,
    ...(c.notebookDir ? { notebookDir: c.notebookDir } : {}),
    ...(c.ideDistDir ? { ideDistDir: c.ideDistDir } : {}),
    ...(c.bufferBytes !== undefined ? { bufferBytes: c.bufferBytes } : {}),
    ...(c.graceMs !== undefined ? { tuning: { graceMs: c.graceMs } } : {}),
  });
} catch (err) {
  const e = err as NodeJS.ErrnoException;
  const why = e.code === 'EADDRINUSE' ? `port ${c.port} on ${c.host} is already in use` : e.code === 'EACCES' ? `no permission to listen on ${c.host}:${c.port}` : e.message;
  process.stderr.write(`kinesis-gateway: cannot start: ${why}\n`);
  process.exit(1);
}
process.stdout.write(`kinesis-gateway listening on ${gw.url} (token from --token)\n`);
const running = gw;
let stopping = false;
const stop = (signal: string): void => {
  if (stopping) return;
  stopping = true;
  logger.info(`${signal}: shutting down`);
  const force = setTimeout(() => process.exit(1), 10_000);
  force.unref();
  running.close().then(
    () => process.exit(0),
    (err: unknown) => {
      logger.error('error while shutting down', { error: err instanceof Error ? err.message : String(err) });
      process.exit(1);
    },
  );
};
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGTERM', () => stop('SIGTERM'));
