/**
 * Issue 13 item 7: the key cache and the imported-key cache evicted from the front of a Map
 * (`map.keys().next()`), which walks past every entry deleted since V8 last rebuilt the table: with 200,000 ids an
 * insert cost 90-290 µs. They now keep recency in a linked list (LruMap) and never iterate a Map. These tests count
 * that work rather than time it: across tens of thousands of evictions, no Map the size of the cache is iterated.
 */
import { afterEach, describe, expect, test, vi } from 'vitest';
import type { KeyCacheConfig } from '../../functions/config.js';
import { createImportedKeys } from '../../functions/keys/imported.js';
import { createKeyCache } from '../../functions/keys/cache.js';
import { LruMap } from '../../functions/keys/lru.js';
import { parseKeyMaterial } from '../../functions/keys/parse.js';
import type { KeyStore } from '../../functions/keys/types.js';
import { makeDevice } from '../support/devices.js';

const ITERATORS = ['keys', 'values', 'entries', 'forEach', Symbol.iterator] as const;

/** Counts iterations started on any Map holding at least `minSize` entries (the cache's own, not jose's or vitest's). */
function countBigMapIterations(minSize: number): { count(): number } {
  let count = 0;
  for (const name of ITERATORS) {
    const original = Map.prototype[name] as (this: Map<unknown, unknown>, ...args: unknown[]) => unknown;
    vi.spyOn(Map.prototype, name as 'keys').mockImplementation(function (this: Map<unknown, unknown>, ...args: unknown[]) {
      if (this.size >= minSize) count += 1;
      return original.apply(this, args) as ReturnType<Map<unknown, unknown>['keys']>;
    });
  }
  return { count: () => count };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('LruMap', () => {
  test('keeps the most recently used, drops the least recently used, and get marks use while peek does not', () => {
    const lru = new LruMap<string, number>(3);
    lru.set('a', 1);
    lru.set('b', 2);
    lru.set('c', 3);
    expect(lru.get('a')).toBe(1); // a is now newest: b is oldest
    expect(lru.peek('b')).toBe(2); // peek leaves b oldest
    lru.set('d', 4);
    expect(lru.peek('b')).toBeUndefined();
    expect([lru.peek('a'), lru.peek('c'), lru.peek('d')]).toEqual([1, 3, 4]);
    lru.set('c', 30); // an update marks use: a is oldest
    lru.set('e', 5);
    expect(lru.peek('a')).toBeUndefined();
    expect(lru.size).toBe(3);
    expect(lru.delete('c')).toBe(true);
    expect(lru.delete('c')).toBe(false);
    lru.set('f', 6);
    lru.set('g', 7); // d, the oldest left, goes
    expect([lru.peek('d'), lru.peek('e'), lru.peek('f'), lru.peek('g')]).toEqual([undefined, 5, 6, 7]);
  });

  test('holds one entry at the smallest size, and refuses a size under one', () => {
    const lru = new LruMap<number, number>(1);
    for (let i = 0; i < 5; i += 1) lru.set(i, i);
    expect(lru.size).toBe(1);
    expect(lru.peek(4)).toBe(4);
    expect(() => new LruMap(0)).toThrow(RangeError);
  });

  test('100,000 inserts past capacity never iterate its Map', () => {
    const iterations = countBigMapIterations(1_000);
    const lru = new LruMap<number, number>(1_000);
    for (let i = 0; i < 100_000; i += 1) {
      lru.set(i, i);
      if (i % 3 === 0) lru.get(i - 500);
    }
    expect(lru.size).toBe(1_000);
    expect(iterations.count()).toBe(0);
  });
});

describe('the caches evict without walking a Map', () => {
  test('key cache: 20,000 distinct names through 1,000 entries, no Map of the cache iterated', async () => {
    const store: KeyStore = { read: async (name) => ({ keys: [], enabled: true, tags: {}, origin: name }) };
    const config: KeyCacheConfig = {
      ttlMs: 60_000, negativeTtlMs: 1_000, staleIfErrorMs: 0, maxEntries: 1_000, maxImportedKeys: 1,
      unknownKidCooldownMs: 0, maxConcurrentReads: 1_000, maxReadsPerSecond: 0, readTimeoutMs: 1_000,
    };
    const cache = createKeyCache(store, config);
    const iterations = countBigMapIterations(1_000);
    for (let i = 0; i < 20_000; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => cache.get(`device-${i + j}`)));
    expect(cache.stats.size()).toBe(1_000);
    expect(cache.stats.reads).toBe(20_000);
    expect(iterations.count()).toBe(0);
    // And it is still an LRU: the newest name is a hit, the oldest was evicted.
    await cache.get('device-19999');
    expect(cache.stats.hits).toBe(1);
    await cache.get('device-0');
    expect(cache.stats.reads).toBe(20_001);
  });

  test('imported keys: 300 keys through 100 slots, no Map of the cache iterated', async () => {
    const devices = await Promise.all(Array.from({ length: 300 }, (_, i) => makeDevice(`d-${i}`)));
    const keys = (await Promise.all(devices.map((d) => parseKeyMaterial(d.publicPem, ['ES256'], d.id)))).flat();
    const imported = createImportedKeys(100);
    const iterations = countBigMapIterations(100);
    for (const key of keys) await imported.get(key);
    expect(imported.size()).toBe(100);
    expect(iterations.count()).toBe(0);
    // The most recent key is served imported, synchronously.
    expect(imported.get(keys[299]!)).not.toBeInstanceOf(Promise);
  });
});
