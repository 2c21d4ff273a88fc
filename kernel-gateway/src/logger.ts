// The gateway logs through the services' shared logger (protocol/src/node/logger.ts), its
// lines tagged [gateway].
import { consoleLogger as shared, type Logger, type LogLevel } from '@kinesis/protocol/node/logger';

export { errorText, silentLogger, type Logger, type LogLevel } from '@kinesis/protocol/node/logger';

export function consoleLogger(level: LogLevel = 'info'): Logger {
  return shared(level, 'gateway');
}
