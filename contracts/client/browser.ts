// Everything that runs in a browser (no Node APIs): `import ... from '@kinesis/contracts/browser'`.
export * from './errors.ts';
export * from './types.ts';
export * from './voucher.ts';
export * from './session-key.ts';
export * from './escrow.ts';
export * from './events.ts';
export * from './provider.ts';
export * from './deploy.ts';
export { decodeRevert } from './revert.ts';
export { KinesisEscrowAbi, KUSDAbi } from './artifacts/abi.ts';
