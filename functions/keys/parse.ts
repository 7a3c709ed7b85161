import { exportJWK, importJWK, importSPKI, type CryptoKey, type JWK } from 'jose';
import { WebhookError } from '../core/reasons.js';
import { p256FromPem } from './p256.js';
import type { VerificationKey } from './types.js';

/**
 * Turns a stored value (PEM SPKI, one or more blocks; a JWK; or a JWKS) into checked public keys, one per algorithm
 * of the allow-list that the key can verify: each is imported once here, which proves it usable for that algorithm,
 * and kept as a public JWK. Throws `device_key_unusable` when nothing usable is in it.
 * `origin` names the value in messages (a file or secret name); the value itself never appears in an error.
 */
export async function parseKeyMaterial(
  value: string,
  algorithms: readonly string[],
  origin: string,
): Promise<VerificationKey[]> {
  const trimmed = value.trim();
  const keys = trimmed.startsWith('-----BEGIN')
    ? await fromPem(trimmed, algorithms, origin)
    : await fromJson(trimmed, algorithms, origin);
  if (keys.length === 0) {
    throw new WebhookError('device_key_unusable', `${origin} holds no public key for ${algorithms.join(', ')}`);
  }
  // A copy of exact length: an array grown by push() keeps room for 17 elements (about 150 bytes), cached per device.
  return keys.slice();
}

const PEM_BLOCK = /-----BEGIN ([A-Z ]+)-----[\s\S]*?-----END \1-----/g;

async function fromPem(text: string, algorithms: readonly string[], origin: string): Promise<VerificationKey[]> {
  const keys: VerificationKey[] = [];
  for (const [block, label] of text.matchAll(PEM_BLOCK)) {
    if (label !== 'PUBLIC KEY') {
      throw new WebhookError('device_key_unusable', `${origin} holds a "${label}" PEM block; only PUBLIC KEY (SPKI) is accepted`);
    }
    // The common case without OpenSSL (p256.ts); only ES256 can use a P-256 key, so jose would import nothing else.
    const p256 = p256FromPem(block);
    if (p256 !== undefined) {
      if (algorithms.includes(p256.alg)) keys.push(p256);
      continue;
    }
    let jwk: JWK | undefined;
    for (const alg of algorithms) {
      const key = await importSPKI(block, alg, { extractable: true }).catch(() => undefined);
      if (key === undefined) continue;
      refuseShortRsa(key, origin);
      jwk ??= publicMembers(await exportJWK(key));
      keys.push({ alg, jwk });
    }
  }
  return keys;
}

// jose imports an RSA key of any size but refuses to verify with one under 2048 bits (RFC 7518 §3.3, §3.5): such a
// key must be refused here, as unusable, not discovered at the first token.
const MIN_RSA_BITS = 2048;

function refuseShortRsa(key: CryptoKey, origin: string): void {
  const { modulusLength } = key.algorithm as { modulusLength?: unknown };
  if (modulusLength !== undefined && (typeof modulusLength !== 'number' || modulusLength < MIN_RSA_BITS)) {
    throw new WebhookError('device_key_unusable', `${origin} holds an RSA key of ${String(modulusLength)} bits; at least ${MIN_RSA_BITS} are required`);
  }
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'] as const;

async function fromJson(text: string, algorithms: readonly string[], origin: string): Promise<VerificationKey[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new WebhookError('device_key_unusable', `${origin} is neither PEM nor JSON`);
  }
  const jwks = isRecord(parsed) && Array.isArray(parsed.keys) ? (parsed.keys as unknown[]) : [parsed];
  const keys: VerificationKey[] = [];
  for (const jwk of jwks) {
    if (!isRecord(jwk) || typeof jwk.kty !== 'string') {
      throw new WebhookError('device_key_unusable', `${origin} holds a JWK without "kty"`);
    }
    if (PRIVATE_MEMBERS.some((member) => member in jwk)) {
      // A private or symmetric key in the store is a provisioning mistake: refuse rather than use it.
      throw new WebhookError('device_key_unusable', `${origin} holds private or symmetric key material; store only the public key`);
    }
    if (jwk.use !== undefined && jwk.use !== 'sig') continue;
    const kid = typeof jwk.kid === 'string' ? jwk.kid : undefined;
    const candidates = typeof jwk.alg === 'string' ? [jwk.alg].filter((a) => algorithms.includes(a)) : algorithms;
    const publicJwk = publicMembers(jwk as JWK);
    for (const alg of candidates) {
      const key = await importJWK({ ...publicJwk, alg }, alg).catch(() => undefined);
      if (key === undefined || key instanceof Uint8Array) continue;
      refuseShortRsa(key, origin);
      keys.push({ alg, jwk: publicJwk, ...(kid !== undefined && { kid }) });
    }
  }
  return keys;
}

/** Only what verification needs, in one compact object shape per key type: a fleet's worth of them stay cached. */
function publicMembers(jwk: JWK): JWK {
  const { kty, crv, x, y, n, e } = jwk;
  if (kty === 'EC') return { kty, crv, x, y } as JWK;
  if (kty === 'OKP') return { kty, crv, x } as JWK;
  return { kty, n, e } as JWK;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
