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
 * plan's memory. A miss costs one import (about 30 µs of CPU for a P-256 point, 50 µs through a JWK), never a key
 * store read.
 */
export interface ImportedKeys {
  /** The imported key: synchronously once imported, so the hot path awaits no promise. */
  get(key: VerificationKey): CryptoKey | Promise<CryptoKey>;
  size(): number;
}

export function createImportedKeys(maxEntries: number): ImportedKeys {
  const imported = new LruMap<VerificationKey, CryptoKey | Promise<CryptoKey>>(maxEntries);
  return {
    size: () => imported.size,
    get(key) {
      const hit = imported.get(key);
      if (hit !== undefined) return hit;
      const unusable = () => new WebhookError('device_key_unusable', 'a stored key could not be imported');
      // Every caller, the first and any that find it still importing, gets the same coded refusal on failure.
      const importing: Promise<CryptoKey> = importVerifyKey(key).then(
        (k) => {
          if (k instanceof Uint8Array) throw unusable();
          if (imported.peek(key) === importing) imported.set(key, k);
          return k;
        },
        () => {
          throw unusable();
        },
      );
      importing.catch(() => {
        if (imported.peek(key) === importing) imported.delete(key);
      });
      imported.set(key, importing);
      return importing;
    },
  };
}

const P256_IMPORT = { name: 'ECDSA', namedCurve: 'P-256' } as const;

/** A P-256 key goes in as its raw point (no JWK built for it); any other through jose's importJWK. */
function importVerifyKey(key: VerificationKey): Promise<CryptoKey | Uint8Array> {
  if (key instanceof P256Key) return crypto.subtle.importKey('raw', key.raw(), P256_IMPORT, false, ['verify']);
  return importJWK(key.jwk, key.alg);
}
