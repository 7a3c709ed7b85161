/**
 * A row's public key: checked under the webhook's own rule (functions/keys/parse.ts: the same import, the same
 * algorithm allow-list), turned into what the vault stores (SPKI PEM; a JWK or JWKS is converted with jose) and its
 * `public-key-sha256` digest (CONTRACTS item 1: sha256 over the DER SPKI of each PUBLIC KEY block, in order).
 * Problems name the kind of key, never its content.
 */
import { createHash } from 'node:crypto';
import { exportSPKI, importJWK, type JWK } from 'jose';
import { SUPPORTED_ALGORITHMS } from '../functions/core/policy.js';
import { parseKeyMaterial } from '../functions/keys/parse.js';
import type { VerificationKey } from '../functions/keys/types.js';

export const CONTENT_TYPE = 'application/x-pem-file';
export const DIGEST_TAG = 'public-key-sha256';
/** Key Vault's secret value limit [azure-cli-facts.md §3 K9]. */
const MAX_VALUE_BYTES = 25 * 1024;

export interface PreparedKey {
  /** SPKI PEM, one block per key, as stored. */
  readonly pem: string;
  /** Lowercase hex SHA-256 over the DER SPKI of every block, in order. */
  readonly digest: string;
}

export type KeyReason = 'key_private' | 'key_unusable' | 'key_algorithm' | 'key_too_large';

export class KeyProblem {
  constructor(
    readonly reason: KeyReason,
    readonly message: string,
  ) {}
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];

/** Checks a key as given in the manifest (PEM text, or a JWK / JWKS as JSON text or object). */
export async function prepareKey(given: unknown, algorithms: readonly string[]): Promise<PreparedKey | KeyProblem> {
  if (typeof given === 'object' && given !== null) return fromJwkSet(given, algorithms);
  if (typeof given !== 'string') return new KeyProblem('key_unusable', 'not a PEM text or a JWK');
  const text = given.replace(/\r\n?/g, '\n').trim();
  if (/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(text)) {
    return new KeyProblem('key_private', 'a PRIVATE key (not shown); give the public key and keep the private key on the device');
  }
  if (text.startsWith('-----BEGIN')) return fromPem(text, algorithms);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return new KeyProblem('key_unusable', 'neither an SPKI PEM nor a JWK');
  }
  return fromJwkSet(parsed, algorithms);
}

async function fromPem(text: string, algorithms: readonly string[]): Promise<PreparedKey | KeyProblem> {
  const blocks: string[] = [];
  const der: Buffer[] = [];
  for (const match of text.matchAll(PEM_BLOCK)) {
    const [block, label, body] = match;
    if (label !== 'PUBLIC KEY') return new KeyProblem('key_unusable', `a "${label}" PEM block; only PUBLIC KEY (SPKI) blocks are accepted`);
    const problem = await usable(block, algorithms);
    if (problem !== undefined) return problem;
    blocks.push(block);
    der.push(Buffer.from(body!.replace(/\s+/g, ''), 'base64'));
  }
  if (blocks.length === 0 || text.replace(PEM_BLOCK, '').trim() !== '') {
    return new KeyProblem('key_unusable', 'not a well-formed PEM (only PUBLIC KEY blocks, nothing between them)');
  }
  return finish(blocks, der);
}

async function fromJwkSet(value: unknown, algorithms: readonly string[]): Promise<PreparedKey | KeyProblem> {
  const record = value as Record<string, unknown>;
  const list = typeof value === 'object' && value !== null && Array.isArray(record.keys) ? (record.keys as unknown[]) : [value];
  if (list.length === 0) return new KeyProblem('key_unusable', 'a JWKS without keys');
  const blocks: string[] = [];
  const der: Buffer[] = [];
  for (const jwk of list) {
    if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk) || typeof (jwk as JWK).kty !== 'string') {
      return new KeyProblem('key_unusable', 'a JWK without "kty"');
    }
    if ((jwk as JWK).kty === 'oct' || PRIVATE_MEMBERS.some((m) => m in jwk)) {
      return new KeyProblem('key_private', 'private or symmetric key material (not shown); give only the public JWK');
    }
    const text = JSON.stringify(jwk);
    const problem = await usable(text, algorithms);
    if (problem !== undefined) return problem;
    const [first] = await parseKeyMaterial(text, algorithms, 'publicKey');
    const spki = await spkiOf(first!);
    if (spki === undefined) return new KeyProblem('key_private', 'a symmetric key (not shown)');
    blocks.push(spki.pem);
    der.push(spki.der);
  }
  return finish(blocks, der);
}

function finish(blocks: string[], der: Buffer[]): PreparedKey | KeyProblem {
  const pem = `${blocks.join('\n')}\n`;
  if (Buffer.byteLength(pem) > MAX_VALUE_BYTES) return new KeyProblem('key_too_large', "over Key Vault's 25 KB secret limit");
  return { pem, digest: digestOf(der) };
}

/** A public key as the webhook holds it, as SPKI (PEM and DER) through jose; undefined for a symmetric key. */
export async function spkiOf(key: VerificationKey): Promise<{ pem: string; der: Buffer } | undefined> {
  const imported = await importJWK(key.jwk, key.alg, { extractable: true });
  if (imported instanceof Uint8Array) return undefined;
  const pem = (await exportSPKI(imported)).trim();
  return { pem, der: Buffer.from(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64') };
}

/** The `public-key-sha256` tag value for the DER SPKI of each block, in order (CONTRACTS item 1). */
export function digestOf(der: readonly Uint8Array[]): string {
  const hash = createHash('sha256');
  for (const d of der) hash.update(d);
  return hash.digest('hex');
}

/** The webhook's verdict on one key (one PEM block or one JWK): undefined when it would use it. */
async function usable(text: string, algorithms: readonly string[]): Promise<KeyProblem | undefined> {
  const keys = await parseKeyMaterial(text, algorithms, 'publicKey').catch(() => []);
  if (keys.length > 0) return undefined;
  const others = SUPPORTED_ALGORITHMS.filter((a) => !algorithms.includes(a));
  const fits = others.length === 0 ? [] : await parseKeyMaterial(text, others, 'publicKey').catch(() => []);
  if (fits.length === 0) return new KeyProblem('key_unusable', 'not a public key the webhook can import');
  const algs = [...new Set(fits.map((k) => k.alg))].join(', ');
  return new KeyProblem('key_algorithm', `a key for ${algs}; the webhook accepts ${algorithms.join(', ')} (P-256 for ES256); --algorithms widens it like JWT_ALGORITHMS`);
}
