/** The key-folder store: CONTRACTS item 3 and its compare-and-swap across writers that share no memory. */
import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createFolderStore } from '../../portal/stores/folder.js';
import { keyFolder } from './helpers.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe('folder store', () => {
  it('reads <id>.meta case-insensitively beside the key; no meta means enabled without tags', async () => {
    const dir = await keyFolder({ 'Press-A': null, 'press-b': null });
    dirs.push(dir);
    await writeFile(join(dir, 'PRESS-B.META'), JSON.stringify({ enabled: false, tags: { site: 'x' } }));
    const store = createFolderStore(dir);
    expect(await store.get('press-a')).toMatchObject({ id: 'Press-A', enabled: true, tags: {}, version: 'absent' });
    expect(await store.get('press-b')).toMatchObject({ id: 'press-b', enabled: false, tags: { site: 'x' } });
    expect((await store.listDisabled()).map((d) => d.id)).toEqual(['press-b']);
    expect(await store.get('press-c')).toBeUndefined();
  });

  it('replaces the meta file it found (same name), and writes <key stem>.meta when there was none', async () => {
    const dir = await keyFolder({ 'Press-A': null, 'press-b': null });
    dirs.push(dir);
    await writeFile(join(dir, 'PRESS-B.META'), JSON.stringify({ enabled: false }));
    const store = createFolderStore(dir);
    const b = await store.get('press-b');
    expect(await store.update('press-b', b!.version, { enabled: true, tags: { site: 'y' } })).toBe('updated');
    expect(await store.update('press-a', 'absent', { enabled: false, tags: {} })).toBe('updated');
    expect((await readdir(dir)).sort()).toEqual(['PRESS-B.META', 'Press-A.meta', 'Press-A.pem', 'press-b.pem']);
    expect(JSON.parse(await readFile(join(dir, 'PRESS-B.META'), 'utf8'))).toEqual({ enabled: true, tags: { site: 'y' } });
  });

  it('compare-and-swap: of two writers (two stores, as two processes) deciding on the same version, exactly one writes', async () => {
    const dir = await keyFolder({ dev: { enabled: false } });
    dirs.push(dir);
    const one = createFolderStore(dir);
    const two = createFolderStore(dir);
    const version = (await one.get('dev'))!.version;
    const results = await Promise.all([
      one.update('dev', version, { enabled: true, tags: { who: 'one' } }),
      two.update('dev', version, { enabled: true, tags: { who: 'two' } }),
    ]);
    expect(results.sort()).toEqual(['conflict', 'updated']);
    const meta = JSON.parse(await readFile(join(dir, 'dev.meta'), 'utf8')) as { tags: { who: string } };
    expect(meta.tags.who).toBe(results[0] === 'updated' ? 'one' : meta.tags.who);
    expect((await readdir(dir)).filter((f) => f.startsWith('.'))).toEqual([]);
  });

  it('refuses an update decided on an older meta (someone edited the file meanwhile)', async () => {
    const dir = await keyFolder({ dev: { enabled: false } });
    dirs.push(dir);
    const store = createFolderStore(dir);
    const version = (await store.get('dev'))!.version;
    await writeFile(join(dir, 'dev.meta'), JSON.stringify({ enabled: false, tags: { edited: 'by hand' } }));
    expect(await store.update('dev', version, { enabled: true, tags: {} })).toBe('conflict');
    expect(JSON.parse(await readFile(join(dir, 'dev.meta'), 'utf8'))).toEqual({ enabled: false, tags: { edited: 'by hand' } });
  });

  it('names a malformed meta file in its error instead of guessing', async () => {
    const dir = await keyFolder({ dev: null });
    dirs.push(dir);
    await writeFile(join(dir, 'dev.meta'), '{"enabled": "yes"}');
    await expect(createFolderStore(dir).get('dev')).rejects.toThrow('dev.meta: "enabled" must be true or false');
  });

  it('reads a meta file as the webhook does: a typo such as "enable" is refused, never read as enabled', async () => {
    const dir = await keyFolder({ dev: null });
    dirs.push(dir);
    await writeFile(join(dir, 'dev.meta'), '{"enable": false}');
    await expect(createFolderStore(dir).get('dev')).rejects.toThrow('dev.meta: unknown member "enable"');
  });
});
