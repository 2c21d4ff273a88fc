// The provider logs through the services' shared logger (protocol/src/node/logger.ts).
export { consoleLogger, errorText, silentLogger, type Logger, type LogLevel } from '@kinesis/protocol/node/logger';
