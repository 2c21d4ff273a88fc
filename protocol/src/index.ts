export * from './errors.ts';
export * from './validate.ts';
export * from './jupyter/messages.ts';
export * from './jupyter/ws-framing.ts';
export * from './tunnel.ts';
