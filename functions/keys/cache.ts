import type { KeyCacheConfig } from '../config.js';
import { WebhookError } from '../core/reasons.js';
import { withDeadline } from './deadline.js';
import { KeyTable } from './table.js';
import type { KeyStore, StoredKeySet } from './types.js';

/**
 * One cache in front of any key store, in the manner of jose's createRemoteJWKSet: parsed keys are kept for a TTL;
 * concurrent lookups of one name share one read (single-flight); a missing name is remembered briefly (negative
 * caching); at most `maxEntries` names are kept (least recently used go first); while the store is failing, a key
 * past its TTL is still served for `staleIfErrorMs`; and reads are bounded, so a registration storm makes at most
 * `maxConcurrentReads` concurrent store calls, at most `maxReadsPerSecond` a second, and exactly one read per name.
 */
export interface KeyCache {
  get(name: string): Promise<StoredKeySet | undefined>;
  /** Re-reads `name` unless it was read within the unknown-kid cooldown (a device rotated its key). */
  refresh(name: string): Promise<StoredKeySet | undefined>;
  readonly stats: { reads: number; hits: number; staleServed: number; size(): number };
}

// While the store fails, a stale entry is served and the store re-asked no more often than this.
const FAILURE_BACKOFF_MS = 5_000;
const MAX_QUEUED_READS = 10_000;

const isStoreFault = (error: unknown) =>
  error instanceof WebhookError && (error.code === 'key_store_unavailable' || error.code === 'key_store_access_denied');

export function createKeyCache(store: KeyStore, config: KeyCacheConfig, now: () => number = Date.now): KeyCache {
  const entries = new KeyTable(config.maxEntries);
  // Milliseconds since the cache was made: whole numbers, exact in the table's Float64Array for 285,000 years.
  const epoch = now();
  const clock = () => Math.floor(now() - epoch);
  const pending = new Map<string, Promise<StoredKeySet | undefined>>();
  const limiter = createLimiter(config.maxConcurrentReads, MAX_QUEUED_READS);
  const rate = createRateLimiter(config.maxReadsPerSecond);
  const stats = { reads: 0, hits: 0, staleServed: 0, size: () => entries.size };

  function remember(name: string, value: StoredKeySet | undefined, at: number): void {
    const freshUntil = at + (value === undefined ? config.negativeTtlMs : config.ttlMs);
    entries.set(name, value, at, freshUntil);
  }

  async function readWithDeadline(name: string): Promise<StoredKeySet | undefined> {
    const started = performance.now();
    // A read waits for a slot at most half its deadline, so one handed a slot still has time to finish. Waiting the
    // whole deadline let a storm against a hung store hand slots to waiters at their deadline: each then started a
    // store call (a connection, a token) only to abandon it, one after another, holding answers past the deadline
    // by a few milliseconds per waiter. The wait for the read rate and for a slot share that half.
    const maxWaitMs = Math.ceil(config.readTimeoutMs / 2);
    await rate.take(maxWaitMs);
    const release = await limiter.acquire(Math.max(0, maxWaitMs - (performance.now() - started)));
    try {
      stats.reads += 1;
      const remaining = config.readTimeoutMs - (performance.now() - started);
      return await withDeadline(remaining, undefined, storeTimedOut, (signal) => store.read(name, signal));
    } finally {
      release();
    }
  }

  /** `previous`: the entry's slot when the name is cached (past its TTL, or refreshed), else -1. */
  function load(name: string, previous: number): Promise<StoredKeySet | undefined> {
    const inFlight = pending.get(name);
    if (inFlight !== undefined) return inFlight;
    // Taken now: while the read is out, the slot may go to another name.
    const stale = previous < 0 ? undefined : entries.value(previous);
    const staleReadAt = previous < 0 ? 0 : entries.readAt(previous);
    const read = (async () => {
      try {
        const value = await readWithDeadline(name);
        remember(name, value, clock());
        return value;
      } catch (error) {
        const at = clock();
        // Stale-if-error counts from the read, not from freshUntil, which a failure pushes back.
        if (stale !== undefined && isStoreFault(error) && at <= staleReadAt + config.ttlMs + config.staleIfErrorMs) {
          stats.staleServed += 1;
          const slot = entries.find(name);
          if (slot >= 0) entries.setFreshUntil(slot, at + Math.min(FAILURE_BACKOFF_MS, config.ttlMs));
          return stale;
        }
        throw error;
      } finally {
        pending.delete(name);
      }
    })();
    pending.set(name, read);
    return read;
  }

  return {
    stats,
    get(name) {
      const slot = entries.use(name);
      if (slot >= 0 && clock() < entries.freshUntil(slot)) {
        stats.hits += 1;
        return Promise.resolve(entries.value(slot));
      }
      return load(name, slot);
    },
    refresh(name) {
      const slot = entries.find(name);
      if (slot >= 0 && clock() - entries.readAt(slot) < config.unknownKidCooldownMs) return Promise.resolve(entries.value(slot));
      return load(name, slot);
    },
  };
}

// A store that ignores the signal must still not hold a registration past the deadline.
const storeTimedOut = () => new WebhookError('key_store_unavailable', 'the key store did not answer in time');

/**
 * A token bucket of one second's worth of reads, refilled continuously; kept as one timestamp (the generic cell rate
 * algorithm), so it costs O(1) and needs no timer. A read over the rate waits for its turn if that comes within
 * `maxWaitMs`, else is refused at once as `key_store_unavailable` (503; DPS retries after retry-after): a storm of
 * distinct ids then reaches the store at the configured rate and never trips its throttling. 0 = no limit.
 */
export function createRateLimiter(perSecond: number, clock: () => number = () => performance.now()) {
  const intervalMs = perSecond > 0 ? 1000 / perSecond : 0;
  // `due`: when the next read would start had every read so far been spaced one interval apart. A read may start
  // while `due` is at most `toleranceMs` ahead of now: that lets a full bucket (perSecond reads) through at once.
  const toleranceMs = 1000 - intervalMs;
  let due = -Infinity;
  return {
    /** Resolves when a read may start; rejects at once when its turn is more than `maxWaitMs` away. */
    take(maxWaitMs: number): Promise<void> {
      if (intervalMs === 0) return Promise.resolve();
      const at = clock();
      const waitMs = Math.max(0, due - toleranceMs - at);
      if (waitMs > maxWaitMs) {
        return Promise.reject(new WebhookError('key_store_unavailable', `over the key store read rate (${perSecond} a second)`));
      }
      due = Math.max(due, at) + intervalMs;
      return waitMs === 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, waitMs));
    },
  };
}

/** A counting semaphore with a bounded queue; a waiter gives up after `maxWaitMs`. */
function createLimiter(max: number, maxQueued: number) {
  let active = 0;
  const queue: Array<() => void> = [];
  const release = () => {
    const next = queue.shift();
    if (next !== undefined) next();
    else active -= 1;
  };
  return {
    acquire(maxWaitMs: number): Promise<() => void> {
      if (active < max) {
        active += 1;
        return Promise.resolve(release);
      }
      if (queue.length >= maxQueued) return Promise.reject(new WebhookError('key_store_unavailable', 'too many key reads are waiting'));
      return new Promise((resolve, reject) => {
        const grant = () => {
          clearTimeout(timer);
          resolve(release);
        };
        const timer = setTimeout(() => {
          const at = queue.indexOf(grant);
          if (at >= 0) queue.splice(at, 1);
          reject(new WebhookError('key_store_unavailable', 'the key store is busy'));
        }, maxWaitMs);
        queue.push(grant);
      });
    },
  };
}
