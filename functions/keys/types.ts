import type { JWK } from 'jose';

/**
 * One checked public key of a device, kept as a public JWK: about 0.3 KB, where an imported key costs about 8 KB
 * of OpenSSL memory. The imported form lives in a smaller cache of its own (imported.ts).
 */
export interface VerificationKey {
  /** The JWK `kid`, when the stored value named one; a token's `kid` selects among a device's keys. */
  readonly kid?: string;
  /** The JWS algorithm this key verifies (one of the allow-list). */
  readonly alg: string;
  readonly jwk: JWK;
}

/** What a key store holds under one name: a device's, a group's, or the fleet's key set. */
export interface StoredKeySet {
  readonly keys: readonly VerificationKey[];
  /** false: the entry exists but is switched off (a device enrolled disabled, or revoked). */
  readonly enabled: boolean;
  /** Tags stored beside the key (Key Vault secret tags); they become twin tags. */
  readonly tags: Readonly<Record<string, string>>;
  /** Where it came from, for logs: a file name, a secret name and version. Never key material. */
  readonly origin: string;
}

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

/** Who is asking: the registration and, for group enrollments, its group. */
export interface KeyLookup {
  readonly registrationId: string;
  readonly enrollmentGroupId?: string;
}

/** A configured key source: the store, and the names to try in it for a registration, first match wins. */
export interface KeySource {
  readonly store: KeyStore;
  readonly names: (lookup: KeyLookup) => string[];
}

/** The key set found for a registration, and the name it was found under. */
export interface ResolvedKeySet extends StoredKeySet {
  readonly name: string;
}
