import { WebhookError } from '../core/reasons.js';
import type { ReplayStore } from '../core/ports.js';

/**
 * One process's memory: right for a single instance (the local host, a pinned single-instance plan). A scaled-out
 * function app needs the table store, or a token could be replayed on another instance.
 */
export function createMemoryReplayStore(options: { maxEntries: number; now: () => number }): ReplayStore {
  const used = new Map<string, number>();
  let nextSweep = 0;

  function sweep(now: number): void {
    for (const [key, expiresAt] of used) if (expiresAt <= now) used.delete(key);
  }

  return {
    async claim(key, expiresAtMs) {
      const now = options.now();
      const seen = used.get(key);
      if (seen !== undefined && seen > now) return false;
      if (used.size >= options.maxEntries || now >= nextSweep) {
        sweep(now);
        nextSweep = now + 60_000;
      }
      // Full of live entries: forgetting one would let its token be replayed, so refuse to decide instead.
      if (used.size >= options.maxEntries) throw new WebhookError('replay_store_unavailable', 'the in-memory replay store is full');
      used.set(key, expiresAtMs);
      return true;
    },
  };
}
