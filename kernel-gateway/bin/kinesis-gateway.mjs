#!/usr/bin/env -S node --initial-old-space-size=128
// kinesis-gateway: the Kinesis kernel gateway (Jupyter Server API + provider tunnel).
// TypeScript runs directly through tsx (no build step).
// --initial-old-space-size: V8 counts the external memory of Buffers allocated since its last
// full GC against the old generation's limit, and a small heap's limit is low, so moving large
// kernel output made V8 run a full mark-compact for every ~10 MB relayed (docs/gateway.md,
// "Memory"). Starting the limit at 128 MB leaves that garbage to the cheap young-generation
// collections. Launchers that run this file with `node <file>` pass the same flags
// (bench/lib/stack.ts reads them from this line).
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
