/**
 * scripts/node-options is the NODE_OPTIONS line deploy.sh writes on every function app: a line Node refuses in
 * NODE_OPTIONS would stop the worker before the webhook loads, so it is started here with it, on the Node running the
 * suite (CI runs it on 22 and 24). Its purpose, a young generation of at most 2 x 8 MB, is checked the way the bench
 * reads it (v8.getHeapSpaceStatistics: new_space).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const FILE = resolve(import.meta.dirname, '..', '..', 'scripts', 'node-options');
const lines = readFileSync(FILE, 'utf8').split('\n').filter((line) => line.trim() !== '' && !line.startsWith('#'));

// Objects kept alive across scavenges: V8 grows the young generation to its maximum under this.
const GROW = `
const { getHeapSpaceStatistics } = require('node:v8');
const newSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size / 1048576;
let max = newSpace();
const kept = [];
for (let i = 0; i < 400000; i++) {
  kept.push({ i, s: 'x' + i, a: [i] });
  if (i % 1000 === 0) max = Math.max(max, newSpace());
}
process.stdout.write(JSON.stringify({ maxNewSpaceMB: max, kept: kept.length }));
`;

function grow(nodeOptions: string): { status: number | null; stderr: string; maxNewSpaceMB?: number } {
  const env = { PATH: process.env.PATH ?? '', NODE_OPTIONS: nodeOptions };
  const r = spawnSync(process.execPath, ['-e', GROW], { env, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stderr: r.stderr, ...(r.status === 0 && (JSON.parse(r.stdout) as { maxNewSpaceMB: number })) };
}

describe('scripts/node-options', () => {
  it('holds one line of options', () => {
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^--\S+(?: --\S+)*$/);
  });

  it('Node starts with it in NODE_OPTIONS, and it bounds the young generation at 16 MB', () => {
    const bounded = grow(lines[0]!);
    expect(bounded.stderr).toBe('');
    expect(bounded.status).toBe(0);
    expect(bounded.maxNewSpaceMB).toBeLessThanOrEqual(16);
    // Allowed more (Node 24's default on 2048 MB: 2 x 32 MB), the same work grows past 16 MB: the workload reaches
    // the bound, so the bound is what held it.
    expect(grow('--max-semi-space-size=32').maxNewSpaceMB).toBeGreaterThan(16);
  });

  it('a flag Node does not allow in NODE_OPTIONS stops it at start (why this file is tested at all)', () => {
    const refused = grow('--max-semi-space-size=8 --print-bytecode');
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toContain('is not allowed in NODE_OPTIONS');
  });
});
