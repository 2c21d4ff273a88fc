import { describe, expect, it } from 'vitest';
import { CliError, parseCli } from './args.ts';

describe('kinesis-gateway flags', () => {
  it('parses the documented flags', () => {
    const r = parseCli(['--port', '0', '--token', 'tok', '--data-dir', '/tmp/d', '--cull-idle-timeout', '600', '--cull-interval', '60', '--cull-connected', '--buffer-bytes', '1024', '--grace', '2000']);
    expect(r).toEqual({
      help: false,
      config: { port: 0, host: '127.0.0.1', token: 'tok', dataDir: '/tmp/d', logLevel: 'info', cull: { cull_idle_timeout: 600, cull_interval: 60, cull_connected: true }, bufferBytes: 1024, graceMs: 2000 },
    });
  });

  it('takes the token from KINESIS_TOKEN', () => {
    const r = parseCli(['--data-dir', 'd'], { KINESIS_TOKEN: 'fromenv' });
    expect(r.help === false && r.config.token).toBe('fromenv');
  });

  it('answers --help', () => {
    expect(parseCli(['--help'])).toEqual({ help: true });
    expect(parseCli(['-h'])).toEqual({ help: true });
  });

  it.each([
    [['--data-dir', 'd'], /--token is required/],
    [['--token', 't'], /--data-dir is required/],
    [['--token', 't', '--data-dir', 'd', '--port', '99999'], /--port must be between/],
    [['--token', 't', '--data-dir', 'd', '--port', 'eighty'], /--port must be a whole number/],
    [['--token', 't', '--data-dir', 'd', '--cull-idle-timeout', '-5'], /--cull-idle-timeout/],
    [['--token', 't', '--data-dir', 'd', '--log-level', 'loud'], /--log-level/],
    [['--token', 't', '--data-dir', 'd', '--bogus'], /Unknown option/],
    [['--token', 't', '--data-dir', 'd', 'extra'], /positional/],
  ])('rejects %j clearly', (argv, re) => {
    expect(() => parseCli(argv)).toThrow(CliError);
    expect(() => parseCli(argv)).toThrow(re);
  });
});
