/**
 * docs/fleet.md's example manifests (CSV and JSON Lines, the same fleet) pass every row check and describe the same
 * secrets, so the documented format cannot drift from what the tool accepts.
 */
import { join, resolve } from 'node:path';
import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { readManifest } from '../../fleet/manifest.js';
import { validateManifest } from '../../fleet/validate.js';
import { EXIT_CODES } from '../../fleet/errors.js';

const examples = resolve(import.meta.dirname, '../../docs/fleet-example');

test('the example manifests are valid and say the same in both formats', async () => {
  const plans = [];
  for (const [file, format] of [['manifest.csv', 'csv'], ['manifest.jsonl', 'jsonl']] as const) {
    const { planned, refused } = await validateManifest(await readManifest(join(examples, file), format), { baseDir: examples, algorithms: ['ES256'] });
    expect(refused, file).toEqual([]);
    plans.push(planned.map(({ secretName, digest, tags, enabled }) => ({ secretName, digest, tags, enabled })));
  }
  expect(plans[0]).toHaveLength(5);
  expect(plans[0]).toEqual(plans[1]);
  expect(plans[0]!.map((p) => p.secretName)).toEqual(['device-pump-0001', 'device-pump-0002', 'device-pump-0003', 'group-line-7', 'device-valve-0009']);
});

test('docs/fleet.md lists every exit code the tool has', () => {
  const doc = readFileSync(resolve(import.meta.dirname, '../../docs/fleet.md'), 'utf8');
  for (const [name, code] of Object.entries(EXIT_CODES)) expect(doc).toMatch(new RegExp(`\\| ${code} \\| \`${name}\``));
});
