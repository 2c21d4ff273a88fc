// Write coalescing: shared with the provider (protocol/src/node/cork.ts).
export { corkForTick } from '@kinesis/protocol/node/cork';
