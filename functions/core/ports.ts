import type { JWK } from 'jose';

/**
 * The core's ports: what it asks of the key stores and the replay store. The adapters (functions/keys,
 * functions/replay) implement them and import this file; the core never imports them.
 */

/**
 * One checked public key of a device, kept as a public JWK: about 0.3 KB, where an imported key costs about 8 KB
 * of OpenSSL memory. The imported form lives in a smaller cache of its own (keys/imported.ts).
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

/** Who is asking: the registration and, for group enrollments, its group. */
export interface KeyLookup {
  readonly registrationId: string;
  readonly enrollmentGroupId?: string;
}

/** The key set found for a registration, and the name it was found under. */
export interface ResolvedKeySet extends StoredKeySet {
  readonly name: string;
}

/**
 * Finds a registration's key set: the first name (device, then group, then fleet) under which anything is stored
 * wins. A disabled device entry is a find too: it must refuse the device, not fall through to a fleet key.
 */
export interface DeviceKeys {
  find(lookup: KeyLookup): Promise<ResolvedKeySet | undefined>;
  refresh(name: string): Promise<ResolvedKeySet | undefined>;
}

/** One use of a verified token, as the replay store sees it. */
export interface TokenUse {
  /** The registration id, lower-cased (DPS ids are case-insensitive). At most 128 characters (request.ts). */
  readonly registrationId: string;
  /** The token's `jti`, 1-256 characters (token.ts). */
  readonly jti: string;
  /**
   * Until when a verifier could still accept this token: (exp + clock skew) in ms. The store must remember the use
   * at least this long, or the token could be admitted again inside the skew.
   */
  readonly acceptableUntilMs: number;
  /**
   * The instant the token was verified at. A stored use is judged live against this instant, never a later clock
   * reading: a verifier that has just accepted a token at t < acceptableUntil can then never find that same token's
   * record expired, whatever the clocks of other instances say.
   */
  readonly verifiedAtMs: number;
}

/**
 * Remembers which token ids were used, so a `jti` is accepted once within its lifetime. `claim` answers true for
 * the first use and false for every later one. It throws `WebhookError('token_replay_budget_exceeded')` when the
 * registration already holds its budget of live `jti`s, and `WebhookError('replay_store_unavailable')` when it
 * cannot tell; the webhook then refuses to decide (503) rather than risk admitting a replay.
 */
export interface ReplayStore {
  claim(use: TokenUse): Promise<boolean>;
  close?(): Promise<void>;
}
