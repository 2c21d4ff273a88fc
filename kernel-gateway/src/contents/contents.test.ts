import { mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { rejoinNotebookLines } from '@kinesis/protocol/notebook/index';
import type { Notebook } from '@kinesis/protocol/notebook/index';
import { startContentsServer } from './test-server.ts';
import type { TestServer } from './test-server.ts';

let srv: TestServer;
beforeEach(async () => {
  srv = await startContentsServer({ maxSaveBytes: 64 * 1024 });
});
afterEach(async () => {
  await srv.close();
});

async function api(method: string, p: string, body?: unknown): Promise<{ status: number; json: any; headers: Headers }> {
  const res = await fetch(`${srv.url}/api/contents${p}`, {
    method,
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'Content-Type': 'application/json' } }),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined, headers: res.headers };
}

const nb = { nbformat: 4, nbformat_minor: 5, metadata: { k: 1 }, cells: [{ id: 'a1', cell_type: 'code', source: ['x = 1\n', 'x'], metadata: {}, outputs: [{ output_type: 'execute_result', execution_count: 1, data: { 'text/plain': ['1'] }, metadata: {} }], execution_count: 1 }] };

describe('contents API', () => {
  it('lists the root and hides dot-files', async () => {
    await writeFile(path.join(srv.root, 'a.txt'), 'hello');
    await writeFile(path.join(srv.root, '.secret'), 'x');
    await mkdir(path.join(srv.root, 'sub'));
    const r = await api('GET', '');
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ name: '', path: '', type: 'directory', format: 'json', mimetype: null, size: null });
    const names = r.json.content.map((c: any) => [c.name, c.type, c.content]).sort();
    expect(names).toEqual([['a.txt', 'file', null], ['sub', 'directory', null]]);
    expect(r.json.last_modified).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(r.json.created).toMatch(/Z$/);
    expect((await api('GET', '/.secret')).status).toBe(404);
    expect((await api('PUT', '/.hidden.txt', { type: 'file', format: 'text', content: 'x' })).status).toBe(400);
  });

  it('gets files as text or base64, with content=0 and hash=1', async () => {
    await writeFile(path.join(srv.root, 'a.txt'), 'héllo');
    await writeFile(path.join(srv.root, 'b.bin'), Buffer.from([0xff, 0x00, 0xfe]));
    const t = await api('GET', '/a.txt');
    expect(t.json).toMatchObject({ type: 'file', format: 'text', content: 'héllo', mimetype: 'text/plain', size: 6, writable: true });
    const b = await api('GET', '/b.bin');
    expect(b.json).toMatchObject({ format: 'base64', content: '/wD+', mimetype: 'application/octet-stream' });
    expect((await api('GET', '/b.bin?format=text')).status).toBe(400);
    const b64 = await api('GET', '/a.txt?format=base64');
    expect(Buffer.from(b64.json.content, 'base64').toString()).toBe('héllo');
    const none = await api('GET', '/a.txt?content=0');
    expect(none.json).toMatchObject({ content: null, format: null });
    const h = await api('GET', '/a.txt?content=0&hash=1');
    expect(h.json.hash_algorithm).toBe('sha256');
    expect(h.json.hash).toMatch(/^[0-9a-f]{64}$/);
    expect((await api('GET', '/a.txt?type=directory')).status).toBe(400);
    expect((await api('GET', '/a.txt?type=bogus')).status).toBe(400);
    expect((await api('GET', '/a.txt?content=2')).status).toBe(400);
    expect((await api('GET', '/?type=file')).status).toBe(400);
  });

  it('creates untitled notebooks, files and folders with Jupyter names', async () => {
    const n1 = await api('POST', '', { type: 'notebook' });
    expect(n1.status).toBe(201);
    expect(n1.json).toMatchObject({ name: 'Untitled.ipynb', path: 'Untitled.ipynb', type: 'notebook', content: null });
    expect(n1.headers.get('location')).toBe('/api/contents/Untitled.ipynb');
    expect((await api('POST', '', { type: 'notebook' })).json.name).toBe('Untitled1.ipynb');
    expect((await api('POST', '', { type: 'file', ext: '.py' })).json.name).toBe('untitled.py');
    expect((await api('POST', '', { type: 'directory' })).json.name).toBe('Untitled Folder');
    expect((await api('POST', '', { type: 'directory' })).json.name).toBe('Untitled Folder 1');
    const saved = JSON.parse(await readFile(path.join(srv.root, 'Untitled.ipynb'), 'utf8'));
    expect(saved).toEqual({ cells: [], metadata: {}, nbformat: 4, nbformat_minor: 5 });
    expect((await api('POST', '/nope', { type: 'notebook' })).status).toBe(404);
    expect((await api('POST', '/Untitled.ipynb', { type: 'notebook' })).status).toBe(400);
    expect((await api('POST', '', { type: 'weird' })).status).toBe(400);
  });

  it('saves notebooks losslessly and validates them', async () => {
    const r = await api('PUT', '/n.ipynb', { type: 'notebook', format: 'json', content: nb });
    expect(r.status).toBe(201);
    expect(r.json).toMatchObject({ name: 'n.ipynb', type: 'notebook', content: null });
    expect((await api('PUT', '/n.ipynb', { type: 'notebook', format: 'json', content: nb })).status).toBe(200);
    const g = await api('GET', '/n.ipynb');
    expect(g.json).toMatchObject({ type: 'notebook', format: 'json', mimetype: null });
    // served joined (as Jupyter Server does), stored split into lines
    expect(g.json.content).toEqual(rejoinNotebookLines(nb as Notebook));
    expect(g.json.content.cells[0].source).toBe('x = 1\nx');
    const file = await readFile(path.join(srv.root, 'n.ipynb'), 'utf8');
    expect(file.startsWith('{\n "cells": [')).toBe(true); // Jupyter's layout: sorted keys, indent 1
    expect(JSON.parse(file).cells[0].source).toEqual(['x = 1\n', 'x']);
    const bad = await api('PUT', '/bad.ipynb', { type: 'notebook', content: { nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [{ cell_type: 'code' }] } });
    expect(bad.status).toBe(400);
    expect(bad.json.message).toMatch(/Notebook validation failed/);
    expect(bad.json.reason).toBe('Bad Request');
    await expect(stat(path.join(srv.root, 'bad.ipynb'))).rejects.toThrow();
  });

  it('opens an invalid-but-JSON notebook with a message, and refuses broken JSON', async () => {
    await writeFile(path.join(srv.root, 'odd.ipynb'), JSON.stringify({ nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [{ cell_type: 'nope' }] }));
    const r = await api('GET', '/odd.ipynb');
    expect(r.status).toBe(200);
    expect(r.json.message).toMatch(/validation failed/);
    await writeFile(path.join(srv.root, 'broken.ipynb'), '{');
    expect((await api('GET', '/broken.ipynb')).status).toBe(400);
  });

  it('saves text, base64 and chunked files, and enforces the size limit', async () => {
    expect((await api('PUT', '/t.txt', { type: 'file', format: 'text', content: 'abc' })).status).toBe(201);
    expect(await readFile(path.join(srv.root, 't.txt'), 'utf8')).toBe('abc');
    await api('PUT', '/b.bin', { type: 'file', format: 'base64', content: Buffer.from([1, 2, 3]).toString('base64') });
    expect([...(await readFile(path.join(srv.root, 'b.bin')))]).toEqual([1, 2, 3]);
    await api('PUT', '/c.bin', { type: 'file', format: 'base64', content: Buffer.from('ab').toString('base64'), chunk: 1 });
    await api('PUT', '/c.bin', { type: 'file', format: 'base64', content: Buffer.from('cd').toString('base64'), chunk: 2 });
    await api('PUT', '/c.bin', { type: 'file', format: 'base64', content: Buffer.from('ef').toString('base64'), chunk: -1 });
    expect(await readFile(path.join(srv.root, 'c.bin'), 'utf8')).toBe('abcdef');
    const big = await api('PUT', '/big.txt', { type: 'file', format: 'text', content: 'x'.repeat(65 * 1024) });
    expect(big.status).toBe(413);
    expect((await api('PUT', '/t.txt', { type: 'file', content: 'abc' })).status).toBe(400);
    expect((await api('PUT', '/t.txt', { type: 'file', format: 'base64', content: '!!!' })).status).toBe(400);
    expect((await api('PUT', '/t.txt', { type: 'thing', content: 'abc' })).status).toBe(400);
    expect((await api('PUT', '/t.txt', '[1,2]')).status).toBe(400);
    expect((await api('PUT', '/t.txt', '{not json')).status).toBe(400);
    expect((await api('PUT', '/nodir/t.txt', { type: 'file', format: 'text', content: 'x' })).status).toBe(404);
    expect((await api('PUT', '/d', { type: 'directory' })).status).toBe(201);
    expect((await stat(path.join(srv.root, 'd'))).isDirectory()).toBe(true);
  });

  it('copies with -Copy names, renames with 409 on clash, deletes', async () => {
    await api('PUT', '/n.ipynb', { type: 'notebook', content: nb });
    await api('PUT', '/sub', { type: 'directory' });
    const c1 = await api('POST', '', { copy_from: 'n.ipynb' });
    expect(c1.status).toBe(201);
    expect(c1.json.name).toBe('n-Copy1.ipynb');
    expect((await api('POST', '', { copy_from: 'n-Copy1.ipynb' })).json.name).toBe('n-Copy2.ipynb');
    expect((await api('POST', '/sub', { copy_from: 'n.ipynb' })).json.path).toBe('sub/n.ipynb');
    expect((await api('POST', '', { copy_from: 'missing.ipynb' })).status).toBe(404);
    expect((await api('PUT', '/x.ipynb', { copy_from: 'n.ipynb' })).status).toBe(400);
    const mv = await api('PATCH', '/n-Copy1.ipynb', { path: 'sub/moved.ipynb' });
    expect(mv.status).toBe(200);
    expect(mv.json).toMatchObject({ path: 'sub/moved.ipynb', name: 'moved.ipynb' });
    expect((await api('PATCH', '/n-Copy2.ipynb', { path: 'n.ipynb' })).status).toBe(409);
    expect((await api('PATCH', '/n-Copy2.ipynb', {})).status).toBe(400);
    expect((await api('PATCH', '/sub', { path: 'sub/inner' })).status).toBe(400);
    expect((await api('DELETE', '/sub')).status).toBe(400); // not empty
    expect((await api('DELETE', '/n-Copy2.ipynb')).status).toBe(204);
    expect((await api('GET', '/n-Copy2.ipynb')).status).toBe(404);
    expect((await api('DELETE', '/n-Copy2.ipynb')).status).toBe(404);
  });

  it('keeps, restores and deletes checkpoints where Jupyter does', async () => {
    await api('PUT', '/n.ipynb', { type: 'notebook', content: nb });
    expect((await api('GET', '/n.ipynb/checkpoints')).json).toEqual([]);
    const c = await api('POST', '/n.ipynb/checkpoints');
    expect(c.status).toBe(201);
    expect(c.json.id).toBe('checkpoint');
    expect(c.headers.get('location')).toBe('/api/contents/n.ipynb/checkpoints/checkpoint');
    await stat(path.join(srv.root, '.ipynb_checkpoints', 'n-checkpoint.ipynb'));
    const changed = { ...nb, metadata: { k: 2 } };
    await api('PUT', '/n.ipynb', { type: 'notebook', content: changed });
    expect((await api('GET', '/n.ipynb')).json.content.metadata).toEqual({ k: 2 });
    expect((await api('POST', '/n.ipynb/checkpoints/checkpoint')).status).toBe(204);
    expect((await api('GET', '/n.ipynb')).json.content.metadata).toEqual({ k: 1 });
    const list = await api('GET', '/n.ipynb/checkpoints');
    expect(list.json).toHaveLength(1);
    expect(list.json[0].last_modified).toMatch(/Z$/);
    // checkpoints follow a rename
    await api('PATCH', '/n.ipynb', { path: 'm.ipynb' });
    expect((await api('GET', '/m.ipynb/checkpoints')).json).toHaveLength(1);
    expect((await api('DELETE', '/m.ipynb/checkpoints/checkpoint')).status).toBe(204);
    expect((await api('DELETE', '/m.ipynb/checkpoints/checkpoint')).status).toBe(404);
    expect((await api('POST', '/m.ipynb/checkpoints/nope')).status).toBe(404);
    expect((await api('GET', '/missing.ipynb/checkpoints')).status).toBe(404);
  });

  it('rejects paths that leave the root', async () => {
    const outside = path.join(tmpdir(), `kinesis-outside-${process.pid}.txt`);
    await writeFile(outside, 'secret');
    await symlink(outside, path.join(srv.root, 'link.txt'));
    await mkdir(path.join(srv.root, 'sub'));
    for (const p of ['/../etc/passwd', '/sub/../../etc/passwd', '/%2e%2e/etc/passwd', '/sub/%2E%2E/%2E%2E/x']) {
      const r = await api('GET', p);
      expect(r.status, p).toBe(404);
    }
    expect((await api('GET', '/link.txt')).status).toBe(404);
    expect((await api('GET', '')).json.content.map((c: any) => c.name)).toEqual(['sub']);
    expect((await api('PUT', '/..%2Fescape.txt', { type: 'file', format: 'text', content: 'x' })).status).toBe(404);
    expect((await api('GET', '/a%00b')).status).toBe(400);
    expect((await api('GET', '/%E0%A4%A')).status).toBe(400);
    expect((await api('DELETE', '')).status).toBe(400);
  });
});
