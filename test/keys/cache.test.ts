import { describe, expect, test } from 'vitest';
import type { KeyCacheConfig } from '../../functions/config.js';
import { WebhookError } from '../../functions/core/reasons.js';
import { createKeyCache } from '../../functions/keys/cache.js';
import type { KeyStore, StoredKeySet } from '../../functions/keys/types.js';

const config: KeyCacheConfig = {
  ttlMs: 1000, negativeTtlMs: 100, staleIfErrorMs: 10_000, maxEntries: 3, maxImportedKeys: 3, unknownKidCooldownMs: 500, maxConcurrentReads: 2, maxReadsPerSecond: 0, readTimeoutMs: 200,
};

const keySet = (origin: string): StoredKeySet => ({ keys: [], enabled: true, tags: {}, origin });

/** A store that answers from a map after a delay, counting reads and the peak of reads in flight. */
function countingStore(values: Map<string, StoredKeySet | Error>, delayMs = 5) {
  const counts = { reads: 0, inFlight: 0, peak: 0 };
  const store: KeyStore = {
    async read(name) {
      counts.reads += 1;
      counts.inFlight += 1;
      counts.peak = Math.max(counts.peak, counts.inFlight);
      try {
        await new Promise((r) => setTimeout(r, delayMs));
        const value = values.get(name);
        if (value instanceof Error) throw value;
        return value;
      } finally {
        counts.inFlight -= 1;
      }
    },
  };
  return { store, counts };
}

describe('key cache', () => {
  test('a burst for one name makes one read (single-flight), then serves from cache until the TTL', async () => {
    let clock = 0;
    const { store, counts } = countingStore(new Map([['device-a', keySet('a/1')]]));
    const cache = createKeyCache(store, config, () => clock);
    const results = await Promise.all(Array.from({ length: 50 }, () => cache.get('device-a')));
    expect(results.every((r) => r?.origin === 'a/1')).toBe(true);
    expect(counts.reads).toBe(1);
    clock = 999;
    await cache.get('device-a');
    expect(counts.reads).toBe(1);
    clock = 1000;
    await cache.get('device-a');
    expect(counts.reads).toBe(2);
  });

  test('remembers a missing name for the negative TTL only', async () => {
    let clock = 0;
    const { store, counts } = countingStore(new Map());
    const cache = createKeyCache(store, config, () => clock);
    expect(await cache.get('nobody')).toBeUndefined();
    expect(await cache.get('nobody')).toBeUndefined();
    expect(counts.reads).toBe(1);
    clock = 100;
    await cache.get('nobody');
    expect(counts.reads).toBe(2);
  });

  test('serves a stale key while the store fails, for staleIfError only, and never a store fault as a key', async () => {
    let clock = 0;
    const values = new Map<string, StoredKeySet | Error>([['device-a', keySet('a/1')]]);
    const { store } = countingStore(values);
    const cache = createKeyCache(store, config, () => clock);
    await cache.get('device-a');
    values.set('device-a', new WebhookError('key_store_unavailable'));
    clock = 5000;
    expect((await cache.get('device-a'))?.origin).toBe('a/1');
    expect(cache.stats.staleServed).toBe(1);
    clock = 11_001;
    await expect(cache.get('device-a')).rejects.toMatchObject({ code: 'key_store_unavailable' });
    await expect(cache.get('never-seen')).resolves.toBeUndefined();
    values.set('never-seen', new WebhookError('key_store_unavailable'));
    clock = 20_000;
    await expect(cache.get('never-seen')).rejects.toMatchObject({ code: 'key_store_unavailable' });
  });

  test('does not serve stale keys when the stored value became unusable', async () => {
    let clock = 0;
    const values = new Map<string, StoredKeySet | Error>([['device-a', keySet('a/1')]]);
    const cache = createKeyCache(countingStore(values).store, config, () => clock);
    await cache.get('device-a');
    values.set('device-a', new WebhookError('device_key_unusable'));
    clock = 2000;
    await expect(cache.get('device-a')).rejects.toMatchObject({ code: 'device_key_unusable' });
  });

  test('keeps at most maxEntries names, dropping the least recently used', async () => {
    const values = new Map(['a', 'b', 'c', 'd'].map((n) => [n, keySet(n)] as const));
    const { store, counts } = countingStore(values);
    const cache = createKeyCache(store, config, () => 0);
    for (const name of ['a', 'b', 'c']) await cache.get(name);
    await cache.get('a');
    await cache.get('d');
    expect(cache.stats.size()).toBe(3);
    const before = counts.reads;
    await cache.get('a');
    expect(counts.reads).toBe(before);
    await cache.get('b');
    expect(counts.reads).toBe(before + 1);
  });

  test('never has more than maxConcurrentReads reads in flight, whatever the burst', async () => {
    const values = new Map(Array.from({ length: 40 }, (_, i) => [`d${i}`, keySet(`d${i}`)] as const));
    const { store, counts } = countingStore(values, 10);
    const cache = createKeyCache(store, { ...config, maxEntries: 100, readTimeoutMs: 5000 }, () => 0);
    await Promise.all(Array.from({ length: 40 }, (_, i) => cache.get(`d${i}`)));
    expect(counts.reads).toBe(40);
    expect(counts.peak).toBe(2);
  });

  test('gives up at the deadline when the store hangs', async () => {
    const store: KeyStore = { read: () => new Promise(() => undefined) };
    const cache = createKeyCache(store, config, () => 0);
    await expect(cache.get('device-a')).rejects.toMatchObject({ code: 'key_store_unavailable' });
  });

  test('re-reads a name for an unknown kid at most once per cooldown', async () => {
    let clock = 0;
    const { store, counts } = countingStore(new Map([['device-a', keySet('a/1')]]));
    const cache = createKeyCache(store, config, () => clock);
    await cache.get('device-a');
    await cache.refresh('device-a');
    expect(counts.reads).toBe(1);
    clock = 500;
    await cache.refresh('device-a');
    await cache.refresh('device-a');
    expect(counts.reads).toBe(2);
  });
});
