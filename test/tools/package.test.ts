/**
 * The deploy package: the zip writer's archives open with another implementation (Python's zipfile), and
 * `npm run package` ships the bundle, its notices, host.json and a package.json naming the bundle, with no
 * node_modules; the bundle, loaded the way the Functions worker loads `main`, registers the trigger.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { packageApp } from '../../tools/package.js';
import { crc32 } from 'node:zlib';
import { crc32Portable, zip } from '../../tools/zip.js';
import { BUNDLE, bundleFiles, CHUNKS, NOTICES } from '../../tools/bundle.js';

const REPO = resolve(import.meta.dirname, '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'package-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const pythonZip = (...args: string[]) => execFileSync('python3', ['-m', 'zipfile', ...args], { encoding: 'utf8' });

describe('zip', () => {
  test('writes an archive another implementation lists, tests and extracts byte for byte', () => {
    const files = {
      'host.json': Buffer.from('{"version":"2.0"}\n'),
      'dist/bundle/a.js': Buffer.from('export const a = 1;\n'.repeat(500)), // deflated
      'random.bin': Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7919) % 251)), // stored: deflate does not help
      'empty.txt': Buffer.alloc(0),
      'naïve ünïcode.txt': Buffer.from('é'),
    };
    const file = join(dir, 'a.zip');
    writeFileSync(file, zip(Object.entries(files).map(([name, data]) => ({ name, data }))));
    expect(pythonZip('-t', file)).toContain('Done testing');
    const out = join(dir, 'out');
    pythonZip('-e', file, out);
    for (const [name, data] of Object.entries(files)) expect(readFileSync(join(out, name)).equals(data), name).toBe(true);
    // Deflate where it pays: the repeated text shrinks, so the archive is smaller than its contents.
    expect(readFileSync(file).length).toBeLessThan(Object.values(files).reduce((n, d) => n + d.length, 0));
  });

  test('the portable CRC-32 (Node before 22.2) agrees with zlib.crc32', () => {
    for (const data of [Buffer.alloc(0), Buffer.from('123456789'), Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 31) & 0xff))]) {
      expect(crc32Portable(data)).toBe(crc32(data));
    }
    expect(crc32Portable(Buffer.from('123456789'))).toBe(0xcbf43926); // the check value of CRC-32/ISO-HDLC
  });

  test('refuses a name that would land outside the archive root, and a name listed twice', () => {
    for (const name of ['../evil', '/abs', 'a/../../b', 'a\\b', '']) {
      expect(() => zip([{ name, data: Buffer.from('x') }]), name).toThrow(/not a relative path/);
    }
    expect(() => zip([{ name: 'a', data: Buffer.alloc(1) }, { name: 'a', data: Buffer.alloc(1) }])).toThrow(/listed twice/);
  });
});

describe('npm run package', () => {
  test('dist/app.zip holds the bundle and its chunks, its notices, host.json and a package.json naming the bundle, and no node_modules', () => {
    const { file, files } = packageApp(REPO);
    const listing = pythonZip('-l', file);
    const names = listing.split('\n').slice(1).map((l) => l.split(/\s+\d{4}-\d\d-\d\d/)[0]!.trim()).filter((n) => n !== '');
    const chunks = bundleFiles(REPO).slice(1);
    expect(chunks.length).toBeGreaterThan(0);
    expect(chunks.every((c) => c.startsWith(`${CHUNKS}/`))).toBe(true);
    expect(names.sort()).toEqual(['host.json', 'package.json', BUNDLE, ...chunks, NOTICES].sort());
    expect(files).toBe(4 + chunks.length);
    const out = join(dir, 'app');
    pythonZip('-e', file, out);
    const manifest = JSON.parse(readFileSync(join(out, 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest).toMatchObject({ main: BUNDLE, type: 'module' });
    // Nothing for a remote build to install: everything is in the bundle.
    expect(manifest.dependencies).toBeUndefined();
    expect(manifest.devDependencies).toBeUndefined();
    expect(readFileSync(join(out, 'host.json')).equals(readFileSync(join(REPO, 'host.json')))).toBe(true);
    expect(readFileSync(join(out, NOTICES), 'utf8')).toMatch(/^@azure\/functions \d/m);
    // The telemetry exporter is in a chunk of its own, loaded only when a connection string is set: the bundle that
    // every start reads does not hold it.
    expect(readFileSync(join(out, BUNDLE), 'utf8')).not.toContain('AzureMonitorTraceExporter');
    expect(chunks.some((c) => readFileSync(join(out, c), 'utf8').includes('AzureMonitorTraceExporter'))).toBe(true);
    // The repository's package.json names the same bundle, so `func start` runs what the zip ships.
    expect((JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { main: string }).main).toBe(BUNDLE);
  });

  test('the bundle, alone in the unpacked zip, registers the POST trigger with the worker that loads it', () => {
    const out = join(dir, 'app-load');
    pythonZip('-e', packageApp(REPO).file, out);
    // As the Node.js worker does: @azure/functions-core is answered by intercepting require, and `main` is imported.
    const worker = `
      import Module from 'node:module';
      const registered = [];
      const core = { version: 'test', hostVersion: 'test', setProgrammingModel() {}, registerFunction(metadata) { registered.push(metadata); return { dispose() {} }; }, registerHook() { return { dispose() {} }; }, log() {} };
      const original = Module.prototype.require;
      Module.prototype.require = function (id) { return id === '@azure/functions-core' ? core : original.apply(this, arguments); };
      const main = JSON.parse((await import('node:fs')).readFileSync('package.json', 'utf8')).main;
      const trigger = await import(new URL(main, 'file://' + process.cwd() + '/').href);
      console.log(JSON.stringify({ exports: Object.keys(trigger), registered }));
    `;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', worker], {
      cwd: out,
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '', DEVICE_KEYS_DIR: out },
    });
    expect(child.status, child.stderr).toBe(0);
    const { exports, registered } = JSON.parse(child.stdout.trim().split('\n').at(-1)!) as { exports: string[]; registered: Array<{ name: string; bindings: Record<string, Record<string, unknown>> }> };
    expect(exports).toContain('validateJwt');
    expect(registered).toHaveLength(1);
    expect(registered[0]!.name).toBe('validatejwt');
    const trigger = Object.values(registered[0]!.bindings).find((b) => b.type === 'httpTrigger');
    expect(trigger).toMatchObject({ direction: 'in', authLevel: 'function', methods: ['POST'] });
  });
});
