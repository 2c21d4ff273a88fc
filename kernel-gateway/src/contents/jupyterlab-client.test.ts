// The contents API as a real Jupyter client sees it: @jupyterlab/services'
// ContentsManager validates every model it receives (validateContentsModel), so
// these calls fail if a field is missing or mistyped.
import { ContentsManager, ServerConnection } from '@jupyterlab/services';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startContentsServer } from './test-server.ts';
import type { TestServer } from './test-server.ts';

let srv: TestServer;
let contents: ContentsManager;
beforeAll(async () => {
  srv = await startContentsServer();
  contents = new ContentsManager({ serverSettings: ServerConnection.makeSettings({ baseUrl: `${srv.url}/`, wsUrl: srv.url.replace('http', 'ws') + '/', token: '' }) });
});
afterAll(async () => {
  contents.dispose();
  await srv.close();
});

describe('contents API through @jupyterlab/services ContentsManager', () => {
  it('creates, saves, reads, lists, copies, renames, checkpoints and deletes', async () => {
    const created = await contents.newUntitled({ path: '', type: 'notebook' });
    expect(created.path).toBe('Untitled.ipynb');
    const content = { nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [{ id: 'c1', cell_type: 'markdown', source: '# hi', metadata: {} }] };
    const saved = await contents.save('Untitled.ipynb', { type: 'notebook', format: 'json', content });
    expect(saved.type).toBe('notebook');
    const got = await contents.get('Untitled.ipynb');
    expect(got.content.cells[0].source).toBe('# hi');
    const dir = await contents.get('', { content: true });
    expect(dir.content.map((m: { name: string }) => m.name)).toEqual(['Untitled.ipynb']);
    const copy = await contents.copy('Untitled.ipynb', '');
    expect(copy.name).toBe('Untitled-Copy1.ipynb');
    const renamed = await contents.rename('Untitled-Copy1.ipynb', 'renamed.ipynb');
    expect(renamed.path).toBe('renamed.ipynb');
    const cp = await contents.createCheckpoint('renamed.ipynb');
    expect(cp.id).toBe('checkpoint');
    expect(await contents.listCheckpoints('renamed.ipynb')).toHaveLength(1);
    await contents.restoreCheckpoint('renamed.ipynb', 'checkpoint');
    await contents.deleteCheckpoint('renamed.ipynb', 'checkpoint');
    await contents.delete('renamed.ipynb');
    await expect(contents.get('renamed.ipynb')).rejects.toThrow(/no such file/);
    const file = await contents.save('notes.txt', { type: 'file', format: 'text', content: 'plain' });
    expect(file.mimetype).toBe('text/plain');
    expect((await contents.get('notes.txt')).content).toBe('plain');
  });
});
