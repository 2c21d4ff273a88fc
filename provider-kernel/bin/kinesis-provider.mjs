#!/usr/bin/env node
// kinesis-provider: runs Jupyter kernels on this machine for a Kinesis gateway.
// TypeScript runs directly through tsx (no build step).
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
