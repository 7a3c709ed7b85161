import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

// Issue 13 item 10: the core is the bottom of the house. It decides with what it is handed and imports nothing of
// ours from outside functions/core, so config, key stores and replay stores can depend on it and never the reverse.
const root = join(import.meta.dirname, '../..');
const coreDir = join(root, 'functions/core');

function importsOf(file: string): string[] {
  const source = readFileSync(file, 'utf8');
  return [...source.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]/g)].map((m) => m[1]!);
}

describe('functions/core is the bottom layer', () => {
  const files = readdirSync(coreDir).filter((f) => f.endsWith('.ts'));

  it('finds the core files', () => {
    expect(files).toEqual(expect.arrayContaining(['webhook.ts', 'policy.ts', 'ports.ts', 'reasons.ts']));
  });

  it.each(files)('%s imports only core siblings, node: and packages', (file) => {
    const outside = importsOf(join(coreDir, file)).filter((spec) => spec.startsWith('..') || spec.startsWith('/'));
    expect(outside).toEqual([]);
    for (const spec of importsOf(join(coreDir, file))) {
      if (spec.startsWith('./')) continue;
      expect(spec === 'jose' || spec.startsWith('node:'), `${file} imports ${spec}`).toBe(true);
    }
  });

  it('the key and replay adapters take their port types from core', () => {
    for (const file of ['functions/replay/memory.ts', 'functions/replay/table.ts', 'functions/keys/resolve.ts']) {
      expect(importsOf(join(root, file)), file).toContain('../core/ports.js');
    }
  });
});
