// Worker entry: registers tsx's loader inside the worker thread (loaders are per thread)
// so the sampler can be TypeScript like the rest of the provider, then runs it.
import { register } from 'tsx/esm/api';

register();
await import('./sampler-worker.ts');
