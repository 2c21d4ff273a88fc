// The notebook document: nbformat 4.5 types and validation, the Yjs schema of an
// open notebook, and lossless conversion between the two.
export * from './nbformat.ts';
export * from './ydoc.ts';
export * from './convert.ts';
export * from './lines.ts';
