import type { JWK } from 'jose';
import type { VerificationKey } from './types.js';

/**
 * The one key shape nearly every device has, a P-256 public key in a PEM, read without OpenSSL and kept small.
 *
 * An SPKI for an uncompressed P-256 point is always the same 27-byte DER prefix (SEQUENCE { SEQUENCE { id-ecPublicKey,
 * prime256v1 }, BIT STRING 0x00 0x04 }) then x and y, 32 bytes each (RFC 5480 §2, SEC 1 §2.3.3): 91 bytes. Reading
 * that here rather than through importSPKI + exportJWK saves each cold read a KeyObject and a CryptoKey (OpenSSL
 * memory, freed but left fragmented in the allocator: about 0.4 KB of resident set a cached key) and keeps the key
 * as its 64-byte point in one Latin-1 string (80 bytes of heap) instead of a JWK object with two base64url strings
 * (about 180 bytes). Anything else (compressed points, other curves, RSA, Ed25519, stray DER) takes jose's path.
 */
const SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200' + '04', 'hex');
const SPKI_BYTES = SPKI_PREFIX.length + 64;
const PEM = /^-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]+)-----END PUBLIC KEY-----$/;

// The curve (SEC 2 §2.4.2, FIPS 186-4 D.1.2.3): y^2 = x^3 - 3x + b over the prime field p.
const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;

/** A checked P-256 public key: its point x||y as 64 Latin-1 characters; the JWK is made when asked for. */
export class P256Key implements VerificationKey {
  constructor(readonly point: string) {}
  // On the prototype, not in each key: 100,000 cached keys hold only their point.
  get alg(): string {
    return 'ES256';
  }
  get jwk(): JWK {
    const raw = Buffer.from(this.point, 'latin1');
    return { kty: 'EC', crv: 'P-256', x: raw.toString('base64url', 0, 32), y: raw.toString('base64url', 32, 64) };
  }
}

/**
 * The P-256 key in one PEM block, or undefined when the block is anything but a well-formed SPKI of an uncompressed
 * point on the curve (the caller then hands the block to jose, which refuses or reads it as it always has). The
 * point is checked as WebCrypto's import checks it, both coordinates below p and on the curve, so that a bad key is
 * refused when it is read (a clear device_key_unusable at fleet import and at the first read), not at its first
 * token. This reading is never what a key is trusted on: every key is imported through jose (imported.ts), and
 * WebCrypto checks the point again there.
 */
export function p256FromPem(block: string): P256Key | undefined {
  const body = PEM.exec(block)?.[1]?.replace(/\s+/g, '');
  if (body === undefined) return undefined;
  const der = Buffer.from(body, 'base64');
  // Buffer's base64 decoder skips what it cannot read; only the exact canonical text of the 91 bytes is taken here.
  if (der.length !== SPKI_BYTES || der.toString('base64') !== body || !der.subarray(0, SPKI_PREFIX.length).equals(SPKI_PREFIX)) return undefined;
  const x = BigInt(`0x${der.toString('hex', SPKI_PREFIX.length, SPKI_PREFIX.length + 32)}`);
  const y = BigInt(`0x${der.toString('hex', SPKI_PREFIX.length + 32)}`);
  if (x >= P || y >= P) return undefined;
  if ((y * y - (x * x * x - 3n * x + B)) % P !== 0n) return undefined;
  return new P256Key(der.toString('latin1', SPKI_PREFIX.length));
}
