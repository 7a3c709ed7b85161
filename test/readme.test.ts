import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { REASONS } from '../functions/core/reasons.js';

const readme = readFileSync('README.md', 'utf8');

test('the README documents every reason code with its status', () => {
  for (const [code, { status }] of Object.entries(REASONS)) {
    expect(readme).toMatch(new RegExp(`\\| \`${code}\` \\| ${status} \\|`));
  }
});

test('the README documents every setting the config reads', () => {
  const source = readFileSync('functions/config.ts', 'utf8');
  const settings = [...source.matchAll(/(?:text|integer|flag)\(env, '([A-Za-z_]+)'/g)].map((m) => m[1]!);
  expect(settings.length).toBeGreaterThan(15);
  for (const setting of new Set(settings)) {
    if (setting === 'AzureWebJobsStorage') continue;
    expect(readme).toContain(`| \`${setting}\` |`);
  }
});
