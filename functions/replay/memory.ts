import { createHash } from 'node:crypto';
import { WebhookError } from '../core/reasons.js';
import type { ReplayStore, TokenUse } from '../core/ports.js';

export interface MemoryReplayOptions {
  /** Most uses remembered at once. */
  readonly maxEntries: number;
  /** Most bytes the store's records may take, as accounted by `ENTRY_BYTES` and `deviceBytes`. */
  readonly maxBytes: number;
  /** Most live `jti`s one registration may hold; the next is refused (`token_replay_budget_exceeded`). */
  readonly maxLiveTokensPerDevice: number;
}

/**
 * Heap bytes one remembered use costs at most: its key (a SHA-256, so the same for any jti), the Map slot, the
 * boxed expiry and its two slots in an expiry bucket. Measured with `node --expose-gc` over 100,000 uses on Node 22
 * and 24 (see docs/security.md); the constant leaves a margin above the measurement.
 */
export const ENTRY_BYTES = 256;
/** The same for a registration's live-use counter, beyond its id's characters (counted at two bytes each). */
export const DEVICE_OVERHEAD_BYTES = 160;

export function deviceBytes(registrationId: string): number {
  return DEVICE_OVERHEAD_BYTES + 2 * registrationId.length;
}

interface Device {
  readonly id: string;
  live: number;
}

/** Expiry buckets are this wide; a use is forgotten in the first sweep after its bucket ends (never before). */
const BUCKET_MS = 1_000;

/**
 * One process's memory: right for a single instance (the local host, a pinned single-instance plan). A scaled-out
 * function app needs the table store, or a token could be replayed on another instance.
 *
 * Each use is filed once in the expiry bucket of the second in which its token stops being acceptable, and removed
 * once when the sweep passes that bucket: the sweep only visits buckets that have come due since the last claim, so
 * the bookkeeping costs O(1) amortised per claim and never walks the whole map. Uses are never forgotten early, so
 * a store full of live uses refuses to decide (503) rather than let one be replayed; the per-registration budget
 * keeps any one device from filling it.
 */
export function createMemoryReplayStore(options: MemoryReplayOptions): ReplayStore {
  /** sha256(registration id + '\n' + jti) -> until when a verifier could still accept it (ms). */
  const used = new Map<string, number>();
  /** registration id -> its number of uses in `used`. Buckets point at the record, so each id is held once. */
  const devices = new Map<string, Device>();
  /**
   * bucket number -> [key, device, key, device, ...] filed in it. A key re-filed into a later bucket (a taken-over
   * use) is skipped when its old bucket comes due.
   */
  const buckets = new Map<number, Array<string | Device>>();
  let bytes = 0;
  let swept = -Infinity;

  const bucketOf = (untilMs: number) => Math.ceil(untilMs / BUCKET_MS);

  function forget(key: string, device: Device, bucket: number): void {
    const until = used.get(key);
    if (until === undefined || bucketOf(until) !== bucket) return;
    used.delete(key);
    bytes -= ENTRY_BYTES;
    device.live -= 1;
    if (device.live === 0) {
      devices.delete(device.id);
      bytes -= deviceBytes(device.id);
    }
  }

  function sweepBucket(bucket: number): void {
    const keys = buckets.get(bucket);
    if (keys === undefined) return;
    buckets.delete(bucket);
    for (let i = 0; i < keys.length; i += 2) forget(keys[i] as string, keys[i + 1] as Device, bucket);
  }

  /** Forgets every use whose bucket has ended by `nowMs`: each bucket is visited once, when it comes due. */
  function sweep(nowMs: number): void {
    const due = Math.floor(nowMs / BUCKET_MS);
    if (due <= swept) return;
    if (due - swept > buckets.size) {
      // After a quiet spell walking the seconds would cost more than visiting the buckets that exist.
      for (const bucket of [...buckets.keys()]) if (bucket <= due) sweepBucket(bucket);
    } else {
      for (let bucket = swept + 1; bucket <= due; bucket++) sweepBucket(bucket);
    }
    swept = due;
  }

  function file(key: string, device: Device, untilMs: number): void {
    used.set(key, untilMs);
    const bucket = bucketOf(untilMs);
    const keys = buckets.get(bucket);
    if (keys === undefined) buckets.set(bucket, [key, device]);
    else keys.push(key, device);
  }

  return {
    async claim(use: TokenUse) {
      const { registrationId, jti, acceptableUntilMs, verifiedAtMs } = use;
      sweep(verifiedAtMs);
      // A fixed-size key: what a use costs does not depend on the jti, and the token's strings are not retained.
      const key = createHash('sha256').update(`${registrationId}\n${jti}`).digest('base64url');
      const seen = used.get(key);
      const device = devices.get(registrationId);
      if (seen !== undefined && device !== undefined) {
        if (seen > verifiedAtMs) return false;
        // The same jti again after its earlier token stopped being acceptable: a new token, and the record's slot
        // (already counted for this device) is reused.
        file(key, device, acceptableUntilMs);
        return true;
      }
      const live = device?.live ?? 0;
      if (live >= options.maxLiveTokensPerDevice) {
        throw new WebhookError('token_replay_budget_exceeded',
          `this registration already has ${live} unexpired tokens on record; a new one is accepted when one of them expires`);
      }
      const cost = ENTRY_BYTES + (live === 0 ? deviceBytes(registrationId) : 0);
      // Full of live entries: forgetting one would let its token be replayed, so refuse to decide instead.
      if (used.size >= options.maxEntries || bytes + cost > options.maxBytes) {
        throw new WebhookError('replay_store_unavailable', 'the in-memory replay store is full');
      }
      if (device === undefined) {
        const created = { id: registrationId, live: 1 };
        devices.set(registrationId, created);
        file(key, created, acceptableUntilMs);
      } else {
        device.live += 1;
        file(key, device, acceptableUntilMs);
      }
      bytes += cost;
      return true;
    },
  };
}
