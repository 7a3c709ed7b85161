/**
 * The operations workbook (scripts/monitoring/workbook.json, installed by deploy.sh) and the queries and alerts in
 * docs/operations.md ask only for what the webhook sends (functions/telemetry/record.ts): a renamed attribute or
 * metric breaks this test, not a chart an operator finds empty during an incident.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ATTR, METRIC } from '../../functions/telemetry/record.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const workbook = JSON.parse(readFileSync(resolve(ROOT, 'scripts', 'monitoring', 'workbook.json'), 'utf8')) as {
  version: string;
  items: Array<{ type: number; name: string; content: { version?: string; query?: string; resourceType?: string } }>;
};
const operations = readFileSync(resolve(ROOT, 'docs', 'operations.md'), 'utf8');

const SPAN = 'validatejwt decision';
const ATTRIBUTES = new Set<string>(Object.values(ATTR));
const METRICS = new Set<string>(Object.values(METRIC));
// The metric dimensions azure-monitor.ts records.
const DIMENSIONS = new Set(['code', 'status', 'outcome', 'http_status']);

/** What a query asks for: span names, metric names, dps.* attributes and metric dimensions it reads. */
function asked(query: string) {
  const names = [...query.matchAll(/\bname\s*==\s*"([^"]+)"/g)].map((m) => m[1]!);
  const lists = [...query.matchAll(/\bname\s+in\s*\(([^)]*)\)/g)].flatMap((m) => [...m[1]!.matchAll(/"([^"]+)"/g)].map((n) => n[1]!));
  const dims = [...query.matchAll(/customDimensions\["([^"]+)"\]/g)].map((m) => m[1]!);
  return { names: [...names, ...lists], dims };
}

function checkQuery(query: string, where: string) {
  const { names, dims } = asked(query);
  expect(names.length, `${where} filters by a name`).toBeGreaterThan(0);
  const table = /^\s*(dependencies|customMetrics)\b/m.exec(query)?.[1];
  expect(table, `${where} reads dependencies or customMetrics`).toBeDefined();
  for (const name of names) {
    if (table === 'dependencies') expect(name, where).toBe(SPAN);
    else expect(METRICS.has(name), `${where}: metric "${name}" is not one the webhook sends`).toBe(true);
  }
  for (const dim of dims) {
    const known = table === 'dependencies' ? ATTRIBUTES.has(dim) : DIMENSIONS.has(dim);
    expect(known, `${where}: "${dim}" is not a ${table === 'dependencies' ? 'span attribute' : 'metric dimension'} the webhook sends`).toBe(true);
  }
}

describe('the workbook', () => {
  it('is a Notebook/1.0 workbook of Application Insights queries', () => {
    expect(workbook.version).toBe('Notebook/1.0');
    const queries = workbook.items.filter((i) => i.type === 3);
    expect(queries.length).toBeGreaterThanOrEqual(6);
    for (const item of queries) {
      expect(item.content.version).toBe('KqlItem/1.0');
      expect(item.content.resourceType).toBe('microsoft.insights/components');
    }
    // Names are unique: the portal keys items by them.
    expect(new Set(workbook.items.map((i) => i.name)).size).toBe(workbook.items.length);
  });

  it('asks only for the span, attributes, metrics and dimensions the webhook sends', () => {
    for (const item of workbook.items.filter((i) => i.type === 3)) checkQuery(item.content.query!, `workbook item ${item.name}`);
  });

  it('charts what docs/operations.md promises: refusals by code, one device, vault throttling, replay, cold starts', () => {
    const all = workbook.items.map((i) => i.content.query ?? '').join('\n');
    expect(all).toContain('"dps.registration_id"');
    expect(all).toContain('http == "429"');
    expect(all).toContain(`"${METRIC.replayClaims}"`);
    expect(all).toContain(`"${ATTR.coldStart}"`);
    expect(all).toMatch(/status != 200/);
  });
});

describe('docs/operations.md', () => {
  const blocks = [...operations.matchAll(/```kusto\n([\s\S]*?)```/g)].map((m) => m[1]!);
  const alerts = [...operations.matchAll(/--condition-query \w+='([^']+)'/g)].map((m) => m[1]!);

  it('has its queries and both alert rules, each asking only for what the webhook sends', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(6);
    blocks.forEach((q, i) => checkQuery(q, `operations.md query ${i + 1}`));
    expect(alerts).toHaveLength(2);
    alerts.forEach((q, i) => checkQuery(q, `operations.md alert ${i + 1}`));
    expect(alerts.join('\n')).toContain('webhook_misconfigured');
    expect(alerts.join('\n')).toContain('"429"');
  });

  it('documents every attribute and metric the webhook sends', () => {
    for (const name of [...ATTRIBUTES, ...METRICS]) expect(operations, name).toContain(`\`${name}\``);
  });
});
