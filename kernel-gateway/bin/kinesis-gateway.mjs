#!/usr/bin/env node
// kinesis-gateway: the Kinesis kernel gateway (Jupyter Server API + provider tunnel).
// TypeScript runs directly through tsx (no build step).
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
