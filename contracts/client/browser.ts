// Everything a browser needs (no Node APIs, no contract bytecode):
// `import ... from '@kinesis/contracts/browser'`. Deploying lives in deploy.ts (pure too, but it
// carries the bytecode) and the Node-only parts in node/; '@kinesis/contracts' has all of it.
export * from './errors.ts';
export * from './types.ts';
export * from './voucher.ts';
export * from './session-key.ts';
export * from './escrow.ts';
export * from './events.ts';
export * from './provider.ts';
export * from './token.ts';
export { decodeRevert } from './revert.ts';
export { KinesisEscrowAbi, KUSDAbi } from './artifacts/abi.ts';
