import { describe, expect, test } from 'vitest';
import { parseTags, TagProblem } from '../../fleet/tags.js';
import { buildInitialTwin } from '../../functions/core/twin.js';

const facts = { enrollment: { kind: 'individual' as const, id: 'd' }, keyOrigin: 'test', algorithm: 'ES256', provisionedAt: '2026-12-03T00:00:00Z' };

describe("fleet tags follow the webhook's own twin-key rule", () => {
  test.each([
    ['a lone surrogate', 'site\uD800'],
    ['a name over 1 KB', 'x'.repeat(200) + '\u20AC'.repeat(300)],
    ['DEL', 'a\u007fb'],
    ['a dot', 'a.b'],
    ['a dot after desired.', 'desired.a.b'],
  ])('%s is refused as tags_invalid', (_, name) => {
    const parsed = parseTags({ [name]: 'v' });
    expect(parsed).toBeInstanceOf(TagProblem);
    expect((parsed as TagProblem).reason).toBe('tags_invalid');
  });

  test('every name the import accepts reaches the twin (nothing it stores is dropped by the webhook)', () => {
    const tags = parseTags('site:hall=3;owner@acme=x;c++=y;desired.mode=eco') as Record<string, string>;
    const { twin, dropped } = buildInitialTwin({}, undefined, tags, facts);
    expect(dropped).toEqual([]);
    expect(twin.tags).toMatchObject({ 'site:hall': '3', 'owner@acme': 'x', 'c++': 'y' });
    expect(twin.properties.desired).toEqual({ mode: 'eco' });
  });
});
