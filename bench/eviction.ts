/**
 * Issue 13 item 7, measured: the cost of one insert into a full 200,000-entry cache that evicts its least recently
 * used entry, the old way (a Map, evicting `map.keys().next()`, re-inserting on use) against LruMap. Mixed with
 * hits, as the key cache sees them. Run after `npm run build`: `node dist/bench/eviction.js [entries] [inserts]`.
 * Figures for people (docs/performance.md); no test gates on them.
 */
import { LruMap } from '../functions/keys/lru.js';

const entries = Number(process.argv[2] ?? 200_000);
const inserts = Number(process.argv[3] ?? 400_000);
const BATCH = 1_000;

interface Cache {
  get(key: string): unknown;
  set(key: string, value: number): void;
}

function frontOfMap(max: number): Cache {
  const map = new Map<string, number>();
  return {
    get(key) {
      const hit = map.get(key);
      if (hit !== undefined) {
        map.delete(key);
        map.set(key, hit);
      }
      return hit;
    },
    set(key, value) {
      map.delete(key);
      map.set(key, value);
      while (map.size > max) map.delete(map.keys().next().value as string);
    },
  };
}

function measure(name: string, cache: Cache): void {
  for (let i = 0; i < entries; i += 1) cache.set(`device-${i}`, i); // fill
  const perBatchUs: number[] = [];
  let next = entries;
  for (let done = 0; done < inserts; done += BATCH) {
    const started = performance.now();
    for (let j = 0; j < BATCH; j += 1) {
      cache.set(`device-${next}`, next);
      cache.get(`device-${next - (j % 5_000) - 1}`); // a recent device registers again
      next += 1;
    }
    perBatchUs.push(((performance.now() - started) * 1000) / BATCH);
  }
  perBatchUs.sort((a, b) => a - b);
  const mean = perBatchUs.reduce((a, b) => a + b, 0) / perBatchUs.length;
  const p99 = perBatchUs[Math.floor(perBatchUs.length * 0.99)]!;
  process.stdout.write(`${name}: ${entries} entries, ${inserts} inserts + hits: mean ${mean.toFixed(2)} µs, p99 of ${BATCH}-insert batches ${p99.toFixed(2)} µs, max ${perBatchUs.at(-1)!.toFixed(2)} µs\n`);
}

measure('Map, evict keys().next()', frontOfMap(entries));
measure('LruMap', new LruMap<string, number>(entries));
