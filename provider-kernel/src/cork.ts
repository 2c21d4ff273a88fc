// Write coalescing and flush holds: shared with the gateway (protocol/src/node/cork.ts).
export { corkForTick, holdFlush, releaseFlush } from '@kinesis/protocol/node/cork';
