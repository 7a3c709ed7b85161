/**
 * The device's key and token operations, all through jose: generate the factory P-256 key pair, load the private key,
 * sign the short-lived ES256 registration token, and derive a device key from an enrollment-group key.
 */
import { createHmac, createPrivateKey, randomUUID } from 'node:crypto';
import {
  calculateJwkThumbprint,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  exportPKCS8,
  exportSPKI,
  generateKeyPair,
  importPKCS8,
  SignJWT,
  type CryptoKey,
  type JWK,
  type JWTPayload,
  type ProtectedHeaderParameters,
} from 'jose';
import { SampleDeviceError, usageError } from './errors.js';

export const TOKEN_ALGORITHM = 'ES256';
export const DEFAULT_LIFETIME_SECONDS = 300;
/** The Python sample signed tokens for 10 days; nothing longer makes sense for a registration token. */
export const MAX_LIFETIME_SECONDS = 10 * 24 * 3600;

/** DPS registration ids (dps-protocol §3): 1-128 of alphanumerics and - . _ :, ending in an alphanumeric or -. */
const REGISTRATION_ID = /^[A-Za-z0-9\-._:]{0,127}[A-Za-z0-9-]$/;

export function assertRegistrationId(value: string, flag = '--registration-id'): void {
  if (!REGISTRATION_ID.test(value)) {
    throw usageError(flag, 'must be 1-128 characters of letters, digits, - . _ : and end in a letter, digit or -');
  }
}

export function assertLifetime(value: number, flag = '--lifetime'): void {
  if (!Number.isInteger(value) || value < 1 || value > MAX_LIFETIME_SECONDS) {
    throw usageError(flag, `must be a whole number of seconds from 1 to ${MAX_LIFETIME_SECONDS}`);
  }
}

export interface DeviceKeyPair {
  /** PKCS#8 PEM. Secret: write it with mode 0600 and never print it. */
  readonly privateKeyPem: string;
  /** SPKI PEM: what the webhook's key store holds for this device. */
  readonly publicKeyPem: string;
  readonly publicJwk: JWK;
  /** RFC 7638 SHA-256 thumbprint of the public JWK: a stable, good `kid`. */
  readonly thumbprint: string;
}

export async function generateDeviceKeyPair(): Promise<DeviceKeyPair> {
  const { privateKey, publicKey } = await generateKeyPair(TOKEN_ALGORITHM, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  return {
    privateKeyPem: await exportPKCS8(privateKey),
    publicKeyPem: await exportSPKI(publicKey),
    publicJwk,
    thumbprint: await calculateJwkThumbprint(publicJwk, 'sha256'),
  };
}

/**
 * Loads a P-256 private key from PEM: PKCS#8 (`BEGIN PRIVATE KEY`, what `keygen` writes) or SEC1
 * (`BEGIN EC PRIVATE KEY`, what `openssl ecparam -genkey` writes for the Python sample). SEC1 is only re-encoded to
 * PKCS#8 by node:crypto; jose does the import and rejects any key that is not P-256.
 */
export async function importDevicePrivateKey(pem: string, source = '--private-key'): Promise<CryptoKey> {
  let pkcs8 = pem;
  if (pem.includes('-----BEGIN EC PRIVATE KEY-----')) {
    try {
      pkcs8 = createPrivateKey({ key: pem, format: 'pem' }).export({ type: 'pkcs8', format: 'pem' }).toString();
    } catch {
      throw new SampleDeviceError('file', `${source} is not a readable EC private key`);
    }
  } else if (!pem.includes('-----BEGIN PRIVATE KEY-----')) {
    throw new SampleDeviceError('file', `${source} is not a PEM private key (expected -----BEGIN PRIVATE KEY-----)`, {
      hint: 'Use the <name>.key.pem written by `keygen`, not the .pub.pem.',
    });
  }
  try {
    return await importPKCS8(pkcs8, TOKEN_ALGORITHM, { extractable: true });
  } catch {
    throw new SampleDeviceError('file', `${source} is not a P-256 (ES256) private key`);
  }
}

/** The thumbprint of the public half of a private key, so `token`/`register` can report which key signed. */
export async function privateKeyThumbprint(privateKey: CryptoKey): Promise<string> {
  const { d: _d, ...publicJwk } = await exportJWK(privateKey);
  return calculateJwkThumbprint(publicJwk, 'sha256');
}

export interface DeviceTokenClaims extends JWTPayload {
  registration_id: string;
  id_scope?: string;
  provisioning_host?: string;
  sub: string;
  aud?: string;
  iat: number;
  exp: number;
  jti: string;
}

export interface SignDeviceTokenOptions {
  readonly privateKey: CryptoKey;
  readonly registrationId: string;
  readonly idScope?: string;
  readonly provisioningHost?: string;
  readonly lifetimeSeconds?: number;
  readonly kid?: string;
  /** Seconds since the epoch; defaults to the clock. */
  readonly now?: number;
  /** A fixed `jti` (test vectors across the samples); defaults to a random UUID. */
  readonly jti?: string;
}

/** A fixed jti: printable, JSON-safe characters only, so every sample encodes it the same way. */
const JTI = /^[A-Za-z0-9._:-]{1,128}$/;

export function assertJti(value: string, flag = '--jti'): void {
  if (!JTI.test(value)) throw usageError(flag, 'must be 1-128 of letters, digits, . _ : -');
}

/**
 * Signs the registration token. Claims are those of the Python sample (`registration_id`, `id_scope`,
 * `provisioning_host`, `iat`, `exp`) plus the registered `sub` (= registration id), `aud` (= id scope) and a random
 * `jti`, so both old and new verifiers accept it and a replay store can spot reuse.
 */
export async function signDeviceToken(options: SignDeviceTokenOptions): Promise<string> {
  assertRegistrationId(options.registrationId);
  const lifetime = options.lifetimeSeconds ?? DEFAULT_LIFETIME_SECONDS;
  assertLifetime(lifetime);
  if (options.jti !== undefined) assertJti(options.jti);
  const iat = options.now ?? Math.floor(Date.now() / 1000);
  const claims: DeviceTokenClaims = {
    registration_id: options.registrationId,
    ...(options.idScope !== undefined && { id_scope: options.idScope }),
    ...(options.provisioningHost !== undefined && { provisioning_host: options.provisioningHost }),
    sub: options.registrationId,
    ...(options.idScope !== undefined && { aud: options.idScope }),
    iat,
    exp: iat + lifetime,
    jti: options.jti ?? randomUUID(),
  };
  return new SignJWT(claims)
    .setProtectedHeader({ alg: TOKEN_ALGORITHM, typ: 'JWT', ...(options.kid !== undefined && { kid: options.kid }) })
    .sign(options.privateKey);
}

/** Decodes a token this tool just signed, for display only; nothing here decides anything on unverified claims. */
export function describeToken(token: string): { header: ProtectedHeaderParameters; claims: JWTPayload } {
  return { header: decodeProtectedHeader(token), claims: decodeJwt(token) };
}

/**
 * Device key of an enrollment-group member: base64(HMAC-SHA256(base64decode(groupKey), utf8(registrationId)))
 * (dps-protocol §3). This is what DPS computes to check the device's SAS; it is not a JOSE operation.
 */
export function deriveDeviceKey(groupKey: string, registrationId: string): string {
  return createHmac('sha256', decodeSymmetricKey(groupKey, '--group-key')).update(registrationId, 'utf8').digest('base64');
}

/** Decodes a base64 symmetric key, refusing anything that is not canonical base64. The key never enters the message. */
export function decodeSymmetricKey(key: string, flag: string): Buffer {
  const trimmed = key.trim();
  const bytes = Buffer.from(trimmed, 'base64');
  const unpadded = (text: string) => text.replace(/=+$/, '');
  if (bytes.length === 0 || unpadded(bytes.toString('base64')) !== unpadded(trimmed)) {
    throw usageError(flag, 'must be a base64 key as shown by DPS (primary or secondary key)');
  }
  return bytes;
}
