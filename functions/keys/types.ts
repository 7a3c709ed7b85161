import type { KeyLookup, StoredKeySet } from '../core/ports.js';

export type { KeyLookup, ResolvedKeySet, StoredKeySet, VerificationKey } from '../core/ports.js';

/**
 * A raw key store: one `read` is one I/O (a file read, a Key Vault GET). Returns undefined when nothing is stored
 * under the name. Throws `WebhookError` with `key_store_unavailable` / `key_store_access_denied` for faults of the
 * store, and `device_key_unusable` when what is stored is not a usable key.
 */
export interface KeyStore {
  read(name: string, signal?: AbortSignal): Promise<StoredKeySet | undefined>;
}

/** Shared by every key set stored without tags, so a fleet-sized cache does not hold 100,000 empty objects. */
export const NO_TAGS: Readonly<Record<string, string>> = Object.freeze({});

/** A configured key source: the store, and the names to try in it for a registration, first match wins. */
export interface KeySource {
  readonly store: KeyStore;
  readonly names: (lookup: KeyLookup) => string[];
}
