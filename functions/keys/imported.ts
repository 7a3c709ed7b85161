import { importJWK, type CryptoKey } from 'jose';
import { WebhookError } from '../core/reasons.js';
import { LruMap } from './lru.js';
import { P256Key } from './p256.js';
import type { VerificationKey } from './types.js';

/**
 * Imported keys, for the devices seen most recently. An imported P-256 key holds about 5 KB of resident memory
 * (OpenSSL's key and Node's wrappers; measured over 5,000 raw imports), so a fleet-sized key cache keeps public keys
 * (a P-256 key as its 64-byte point, p256.ts) and only the last `maxEntries` stay imported: a storm's retries and a
 * device's repeated registrations verify without importing again, and 100,000 cached devices fit in a consumption
 * plan's memory. A miss costs one import (about 50 µs of CPU for a P-256 key through jose's importJWK), never a key
 * store read. A P-256 key is found by its point (the key cache hands out a new P256Key object for each decision,
 * table.ts); any other by the cached object itself.
 */
export interface ImportedKeys {
  /** The imported key: synchronously once imported, so the hot path awaits no promise. */
  get(key: VerificationKey): CryptoKey | Promise<CryptoKey>;
  size(): number;
}

export function createImportedKeys(maxEntries: number): ImportedKeys {
  const imported = new LruMap<string | VerificationKey, CryptoKey | Promise<CryptoKey>>(maxEntries);
  return {
    size: () => imported.size,
    get(key) {
      const id = key instanceof P256Key ? key.point : key;
      const hit = imported.get(id);
      if (hit !== undefined) return hit;
      const unusable = () => new WebhookError('device_key_unusable', 'a stored key could not be imported');
      // Every caller, the first and any that find it still importing, gets the same coded refusal on failure.
      const importing: Promise<CryptoKey> = importVerifyKey(key).then(
        (k) => {
          if (k instanceof Uint8Array) throw unusable();
          if (imported.peek(id) === importing) imported.set(id, k);
          return k;
        },
        () => {
          throw unusable();
        },
      );
      importing.catch(() => {
        if (imported.peek(id) === importing) imported.delete(id);
      });
      imported.set(id, importing);
      return importing;
    },
  };
}

/**
 * Through jose's importJWK, as every key: WebCrypto checks the point (on the curve, below p) here again, so a key is
 * never trusted on p256.ts's reading alone.
 */
function importVerifyKey(key: VerificationKey): Promise<CryptoKey | Uint8Array> {
  return importJWK(key.jwk, key.alg);
}
