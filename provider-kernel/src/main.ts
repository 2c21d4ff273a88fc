// Entry of the `kinesis-provider` command (bin/kinesis-provider.mjs imports this).
import { parseCli, USAGE } from './cli.ts';
import { KinesisError } from './errors.ts';
import { startProvider } from './index.ts';
import { consoleLogger } from './logger.ts';

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseCli(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`kinesis-provider: ${e instanceof KinesisError ? e.shortMessage : String(e)}\n\n${USAGE}\n`);
    return 2;
  }
  if (parsed.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const c = parsed.config;
  const logger = consoleLogger(c.logLevel);
  let running;
  try {
    running = await startProvider({
      gatewayUrl: c.gatewayUrl,
      dataDir: c.dataDir,
      pricePerKwh: c.pricePerKwh,
      maxKernels: c.maxKernels,
      outputBatchMs: c.outputBatchMs,
      partBytes: c.partBytes,
      iopubReader: c.iopubReader,
      iopubAuth: c.iopubAuth,
      logger,
      metering: c.chainId === undefined ? false : { chainId: c.chainId },
      ...(c.name ? { name: c.name } : {}),
      ...(c.kernelspecDirs ? { kernelspecDirs: c.kernelspecDirs } : {}),
      ...(c.kernelUser ? { kernelUser: c.kernelUser } : {}),
    });
  } catch (e) {
    const msg = e instanceof KinesisError ? `${e.shortMessage}${e.details ? `\n${e.details}` : ''}` : e instanceof Error ? e.message : String(e);
    process.stderr.write(`kinesis-provider: ${msg}\n`);
    return 1;
  }
  const r = running;
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (sig: NodeJS.Signals): void => {
      if (stopping) {
        logger.warn('second signal: exiting now', { signal: sig });
        resolve(130);
        return;
      }
      stopping = true;
      logger.info('stopping: shutting kernels down', { signal: sig });
      r.close().then(
        () => resolve(0),
        (e: unknown) => {
          logger.error('shutdown failed', { error: String(e) });
          resolve(1);
        },
      );
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    // SIGHUP: the owner installed or removed a kernel; offer the new set.
    process.on('SIGHUP', () => {
      r.rescanKernelspecs().catch((e: unknown) => logger.error('kernelspec rescan failed', { error: String(e) }));
    });
  });
}

process.exitCode = await main();
// Sockets and timers are closed by now; exit explicitly in case a native handle lingers.
process.exit(process.exitCode);
