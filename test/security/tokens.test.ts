/**
 * Hostile tokens (issue 6, part 1), in process through createWebhook with a frozen clock. Each is refused with a 4xx
 * below 429 (so DPS does not retry) and its own reason code. RFC 8725 sections are named in each describe; the map is
 * in docs/security.md.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompactEncrypt, exportJWK, exportPKCS8, FlattenedSign, GeneralSign, generateKeyPair, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createWebhook, type Webhook } from '../../functions/app/compose.js';
import { ConfigError, loadConfig } from '../../functions/config.js';
import { MAX_TOKEN_BYTES } from '../../functions/core/policy.js';
import type { ReasonCode } from '../../functions/core/reasons.js';
import type { AssignedBody } from '../../functions/core/webhook.js';
import { allocationRequest, deviceClaims, deviceToken, ID_SCOPE, makeDevice, publicJwk, signToken, type TestDevice } from '../support/devices.js';
import { b64u, json64, keyObject, LeakWatch, segments, signRaw } from '../support/security.js';

const NOW = Date.parse('2026-11-21T12:00:00Z');
const now = Math.floor(NOW / 1000);
const FOREIGN_ALGS = ['RS256', 'PS256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;

const watch = new LeakWatch();
let alice: TestDevice; // PEM on file, no kid
let bob: TestDevice; // PEM on file
let mallory: TestDevice; // not enrolled: an attacker's key
let rotating: TestDevice; // JWKS on file with kids factory-1 (this key) and factory-2
let rotatingNext: TestDevice;
let other: TestDevice; // JWKS on file with kid bob-key
let kelvin: TestDevice; // kelvin-7
let foreign: Record<(typeof FOREIGN_ALGS)[number], TestDevice>;
let dir: string;
/** ES256 only, DPS_ID_SCOPE set: the recommended configuration. */
let strict: Webhook;
/** Every non-HMAC algorithm allowed, while the devices' keys are still P-256. */
let wide: Webhook;

beforeAll(async () => {
  [alice, bob, mallory, rotating, rotatingNext, other, kelvin] = (await Promise.all(
    ['sensor-0042', 'sensor-0043', 'mallory', 'sensor-jwks', 'sensor-jwks', 'sensor-other', 'kelvin-7'].map((id) => makeDevice(id)),
  )) as [TestDevice, TestDevice, TestDevice, TestDevice, TestDevice, TestDevice, TestDevice];
  const made = await Promise.all(FOREIGN_ALGS.map((alg) => makeDevice(`foreign-${alg}`, alg)));
  foreign = Object.fromEntries(FOREIGN_ALGS.map((alg, i) => [alg, made[i]!])) as typeof foreign;

  dir = await mkdtemp(join(tmpdir(), 'security-keys-'));
  await Promise.all([
    writeFile(join(dir, `${alice.id}.pem`), alice.publicPem),
    writeFile(join(dir, `${bob.id}.pem`), bob.publicPem),
    writeFile(join(dir, `${kelvin.id}.pem`), kelvin.publicPem),
    writeFile(join(dir, `${rotating.id}.json`), JSON.stringify({
      keys: [await publicJwk(rotating, { kid: 'factory-1' }), await publicJwk(rotatingNext, { kid: 'factory-2' })],
    })),
    writeFile(join(dir, `${other.id}.json`), JSON.stringify({ keys: [await publicJwk(other, { kid: 'bob-key' })] })),
    // A Unicode look-alike file name: U+212A KELVIN SIGN lower-cases to "k", but no DPS registration id can hold it.
    writeFile(join(dir, '\u212Aelvin-9.pem'), mallory.publicPem),
  ]);
  strict = await createWebhook(loadConfig({ DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: ID_SCOPE }), { now: () => NOW });
  wide = await createWebhook(
    loadConfig({ DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: ID_SCOPE, JWT_ALGORITHMS: 'ES256,ES384,ES512,RS256,PS256,EdDSA,Ed25519' }),
    { now: () => NOW },
  );

  for (const d of [alice, bob, mallory, rotating, rotatingNext, other, kelvin, ...Object.values(foreign)]) {
    watch.pem(`${d.id} public key`, d.publicPem);
    watch.pem(`${d.id} private key`, await exportPKCS8(d.privateKey));
  }
});
afterAll(async () => {
  await strict?.close();
  await wide?.close();
});

interface Attempt {
  readonly token: unknown;
  readonly id?: string;
  readonly hook?: () => Webhook;
}

async function ask(attempt: Attempt) {
  if (typeof attempt.token === 'string' && attempt.token.length >= 12) watch.token('a test token', attempt.token);
  const request = allocationRequest({ registrationId: attempt.id ?? alice.id, token: attempt.token });
  const answer = await (attempt.hook ?? (() => strict))().handle({ body: JSON.stringify(request), contentType: 'application/json' });
  watch.saw('answer', { status: answer.status, headers: answer.headers, body: answer.body });
  watch.saw('log', answer.log);
  return answer;
}

function expectRefused(answer: Awaited<ReturnType<typeof ask>>, code: ReasonCode): void {
  expect(answer.body).toMatchObject({ code });
  expect(answer.status).toBeGreaterThanOrEqual(400);
  expect(answer.status).toBeLessThan(429);
  expect(answer.log).toMatchObject({ code, status: answer.status });
}

const claims = (overrides: JWTPayload = {}) => deviceClaims(alice, now, overrides);
const raw = async (device: TestDevice, header: Record<string, unknown> | string, payload: unknown) => signRaw(await keyObject(device.privateKey), header, payload);
/** A valid token of alice's, re-assembled with one segment replaced. */
async function withSegment(index: 0 | 1 | 2, replace: (segment: string, token: string) => string | Promise<string>): Promise<string> {
  const token = await deviceToken(alice, now);
  const parts = segments(token);
  parts[index] = await replace(parts[index], token);
  return parts.join('.');
}
const toBase64 = (segment: string) => Buffer.from(segment, 'base64url').toString('base64').replace(/=+$/, '');

type Case = readonly [name: string, make: () => Promise<Attempt>, code: ReasonCode];

test('baseline: the device own fresh token is assigned (so every refusal below is about the one thing changed)', async () => {
  const answer = await ask({ token: await deviceToken(alice, now) });
  expect(answer.status).toBe(200);
  expect((await ask({ token: await deviceToken(rotating, now, {}, { kid: 'factory-1' }), id: rotating.id })).status).toBe(200);
  expect((await ask({ token: await deviceToken(rotatingNext, now, {}, { kid: 'factory-2' }), id: rotating.id })).status).toBe(200);
});

describe('algorithm confusion (RFC 8725 §2.1, §3.1, §3.2)', () => {
  const cases: Case[] = [
    ['alg none, no signature', async () => {
      const [, p] = segments(await deviceToken(alice, now));
      return { token: `${json64({ alg: 'none', typ: 'JWT' })}.${p}.` };
    }, 'token_malformed'],
    ['alg none, with a signature', async () => withSegment(0, () => json64({ alg: 'none', typ: 'JWT' })).then((token) => ({ token })), 'token_algorithm_not_allowed'],
    ['alg None (case variant)', async () => withSegment(0, () => json64({ alg: 'None' })).then((token) => ({ token })), 'token_algorithm_not_allowed'],
    ['alg missing', async () => withSegment(0, () => json64({ typ: 'JWT' })).then((token) => ({ token })), 'token_algorithm_not_allowed'],
    ['alg not a string', async () => withSegment(0, () => json64({ alg: ['ES256'] })).then((token) => ({ token })), 'token_algorithm_not_allowed'],
    ['HS256 with the device public key PEM as the HMAC secret', async () => ({
      token: await signToken(new TextEncoder().encode(alice.publicPem) as never, claims(), {}, 'HS256'),
    }), 'token_algorithm_not_allowed'],
    ['HS256 with the PEM as secret, even when every asymmetric algorithm is allowed', async () => ({
      token: await signToken(new TextEncoder().encode(alice.publicPem) as never, claims(), {}, 'HS256'),
      hook: () => wide,
    }), 'token_algorithm_not_allowed'],
    ['HS256 with the device public JWK (JSON) as the HMAC secret', async () => ({
      token: await signToken(new TextEncoder().encode(JSON.stringify(await publicJwk(alice))) as never, claims(), {}, 'HS256'),
      hook: () => wide,
    }), 'token_algorithm_not_allowed'],
    ...FOREIGN_ALGS.map((alg): Case => [`${alg}, signed with an ${alg} key, not in the allow-list`, async () => ({
      token: await signToken(foreign[alg].privateKey, claims(), {}, alg),
    }), 'token_algorithm_not_allowed']),
    ...FOREIGN_ALGS.map((alg): Case => [`${alg} allowed, but the device key is P-256`, async () => ({
      token: await signToken(foreign[alg].privateKey, claims(), {}, alg),
      hook: () => wide,
    }), 'token_key_unknown']),
    ['ES256 header over an ES384 signature', async () => {
      const token = await signToken(foreign.ES384.privateKey, claims(), {}, 'ES384');
      return { token: `${json64({ alg: 'ES256', typ: 'JWT' })}.${segments(token)[1]}.${segments(token)[2]}`, hook: () => wide };
    }, 'token_signature_invalid'],
  ];
  test.each(cases)('%s', async (_name, make, code) => expectRefused(await ask(await make()), code));

  test('an HMAC algorithm or none can not even be configured: the webhook refuses to start', () => {
    for (const alg of ['HS256', 'HS512', 'none', 'ES256,HS256']) {
      expect(() => loadConfig({ DEVICE_KEYS_DIR: '/nonexistent', JWT_ALGORITHMS: alg })).toThrow(ConfigError);
    }
  });
});

describe('keys the token chooses for itself (RFC 8725 §2.9 indirect attacks, §3.10 do not trust received claims)', () => {
  const malloryHeader = async (member: string) => {
    const jwk = await publicJwk(mallory);
    const values: Record<string, unknown> = {
      jwk,
      jku: 'https://attacker.example/jwks.json',
      x5u: 'https://attacker.example/cert.pem',
      x5c: [Buffer.from(mallory.publicPem).toString('base64')],
      x5t: 'dGhpcyBpcyBub3QgYSB0aHVtYnByaW50',
      'x5t#S256': 'dGhpcyBpcyBub3QgYSB0aHVtYnByaW50',
    };
    return { token: await signToken(mallory.privateKey, claims(), { [member]: values[member] }) };
  };
  const cases: Case[] = [
    ...['jwk', 'jku', 'x5u', 'x5c', 'x5t', 'x5t#S256'].map((m): Case => [`a key offered in the header: ${m}`, () => malloryHeader(m), 'token_header_forbidden']),
    ['the same, signed by the device itself (the member alone is refused)', async () => ({
      token: await deviceToken(alice, now, {}, { jwk: await publicJwk(alice) }),
    }), 'token_header_forbidden'],
    ['kid ../../etc/passwd on a device whose JWKS has kids', async () => ({
      token: await deviceToken(rotating, now, {}, { kid: '../../etc/passwd' }), id: rotating.id,
    }), 'token_key_unknown'],
    ["another device's kid (bob-key), signed with that device's key", async () => ({
      token: await signToken(other.privateKey, deviceClaims(rotating, now), { kid: 'bob-key' }), id: rotating.id,
    }), 'token_key_unknown'],
    ["the device's own kid, signed by another key", async () => ({
      token: await signToken(mallory.privateKey, deviceClaims(rotating, now), { kid: 'factory-1' }), id: rotating.id,
    }), 'token_signature_invalid'],
    ["key factory-1's kid over key factory-2's signature", async () => ({
      token: await signToken(rotatingNext.privateKey, deviceClaims(rotating, now), { kid: 'factory-1' }), id: rotating.id,
    }), 'token_signature_invalid'],
    ['kid ../../etc/passwd on a device with a plain PEM: the kid selects nothing, the device key is still required', async () => ({
      token: await signToken(mallory.privateKey, claims(), { kid: '../../etc/passwd' }),
    }), 'token_signature_invalid'],
    ['kid not a string', async () => ({ token: await deviceToken(alice, now, {}, { kid: 42 }) }), 'token_malformed'],
    ['kid empty', async () => ({ token: await deviceToken(alice, now, {}, { kid: '' }) }), 'token_malformed'],
    ['kid over 256 characters', async () => ({ token: await deviceToken(alice, now, {}, { kid: 'k'.repeat(257) }) }), 'token_malformed'],
    ['a valid ES256 signature from another key', async () => ({ token: await signToken(mallory.privateKey, claims()) }), 'token_signature_invalid'],
    ["another enrolled device's own valid token", async () => ({ token: await deviceToken(bob, now) }), 'token_signature_invalid'],
  ];
  test.each(cases)('%s', async (_name, make, code) => expectRefused(await ask(await make()), code));

  test('unknown kids make at most one extra key read per cooldown, however many arrive', async () => {
    await ask({ token: await deviceToken(rotating, now, {}, { kid: 'factory-1' }), id: rotating.id });
    const before = strict.keyCache.stats.reads;
    for (let i = 0; i < 25; i++) {
      expectRefused(await ask({ token: await deviceToken(rotating, now, {}, { kid: `unknown-${i}` }), id: rotating.id }), 'token_key_unknown');
    }
    expect(strict.keyCache.stats.reads - before).toBeLessThanOrEqual(1);
  });
});

describe('header processing the webhook does not do (RFC 8725 §3.11 explicit typing, §3.12; RFC 7515 §4.1.11 crit; RFC 7797 b64)', () => {
  const cases: Case[] = [
    ['crit naming exp', async () => ({ token: await raw(alice, { alg: 'ES256', crit: ['exp'], exp: now }, claims()) }), 'token_header_forbidden'],
    ['crit naming an unknown extension', async () => ({ token: await raw(alice, { alg: 'ES256', crit: ['x-danger'], 'x-danger': 1 }, claims()) }), 'token_header_forbidden'],
    ['b64: false with crit', async () => ({ token: await raw(alice, { alg: 'ES256', b64: false, crit: ['b64'] }, claims()) }), 'token_header_forbidden'],
    ['b64: false without crit', async () => ({ token: await raw(alice, { alg: 'ES256', b64: false }, claims()) }), 'token_header_forbidden'],
    ['zip: DEF', async () => ({ token: await raw(alice, { alg: 'ES256', zip: 'DEF' }, claims()) }), 'token_header_forbidden'],
    ['enc in a JWS header', async () => ({ token: await raw(alice, { alg: 'ES256', enc: 'A256GCM' }, claims()) }), 'token_header_forbidden'],
    ['typ of another kind of token (at+jwt)', async () => ({ token: await deviceToken(alice, now, {}, { typ: 'at+jwt' }) }), 'token_header_forbidden'],
    ['typ not a string', async () => ({ token: await deviceToken(alice, now, {}, { typ: 1 }) }), 'token_header_forbidden'],
    ['header not JSON', async () => ({ token: await raw(alice, b64u('{"alg":"ES256"'), claims()) }), 'token_malformed'],
    ['header a JSON array', async () => ({ token: await raw(alice, json64(['ES256']), claims()) }), 'token_malformed'],
  ];
  test.each(cases)('%s', async (_name, make, code) => expectRefused(await ask(await make()), code));

  test('typ JWT and application/jwt are accepted (explicit typing is allowed, not required)', async () => {
    expect((await ask({ token: await deviceToken(alice, now, {}, { typ: 'application/jwt' }) })).status).toBe(200);
  });
});

describe('serializations and encodings other than compact JWS (RFC 8725 §2.6 multiplicity of encodings, §3.7 UTF-8, §3.12; RFC 7515 §7)', () => {
  const cases: Case[] = [
    ['JWS JSON flattened serialization, as a string', async () => {
      const jws = await new FlattenedSign(new TextEncoder().encode(JSON.stringify(claims()))).setProtectedHeader({ alg: 'ES256' }).sign(alice.privateKey);
      return { token: JSON.stringify(jws) };
    }, 'token_malformed'],
    ['JWS JSON flattened serialization, as an object', async () => ({
      token: await new FlattenedSign(new TextEncoder().encode(JSON.stringify(claims()))).setProtectedHeader({ alg: 'ES256' }).sign(alice.privateKey),
    }), 'token_malformed'],
    ['JWS JSON general serialization, as a string', async () => {
      const sign = new GeneralSign(new TextEncoder().encode(JSON.stringify(claims())));
      sign.addSignature(alice.privateKey).setProtectedHeader({ alg: 'ES256' });
      return { token: JSON.stringify(await sign.sign()) };
    }, 'token_malformed'],
    ['a JWE (compact, five parts) encrypting valid claims', async () => {
      const { publicKey } = await generateKeyPair('ECDH-ES');
      return { token: await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(claims()))).setProtectedHeader({ alg: 'ECDH-ES', enc: 'A256GCM' }).encrypt(publicKey) };
    }, 'token_malformed'],
    ['a valid token with a fourth segment', async () => ({ token: `${await deviceToken(alice, now)}.AAAA` }), 'token_malformed'],
    ['a valid token with surrounding whitespace', async () => ({ token: ` ${await deviceToken(alice, now)}\n` }), 'token_malformed'],
    ['a "Bearer " prefix', async () => ({ token: `Bearer ${await deviceToken(alice, now)}` }), 'token_malformed'],
    ['standard base64 (+ /) in the signature', async () => {
      for (;;) {
        const token = await withSegment(2, toBase64);
        if (/[+/]/.test(token)) return { token };
      }
    }, 'token_malformed'],
    ['standard base64 (+ /) in the payload', async () => {
      for (let i = 0; ; i++) {
        const token = await deviceToken(alice, now, { note: '>>>???'.repeat(i % 7) + String(i) });
        const p = segments(token)[1];
        if (/[-_]/.test(p)) return { token: token.replace(p, toBase64(p)) };
      }
    }, 'token_malformed'],
    ['base64 padding (=) on the signature', async () => ({ token: await withSegment(2, (s) => `${s}==`) }), 'token_malformed'],
    ['an empty payload segment', async () => ({ token: await withSegment(1, () => '') }), 'token_malformed'],
    ['claims that are not JSON', async () => ({ token: await raw(alice, { alg: 'ES256' }, 'not json at all') }), 'token_malformed'],
    ['claims that are a JSON array, validly signed', async () => ({ token: await raw(alice, { alg: 'ES256' }, '[1,2,3]') }), 'token_malformed'],
    ['claims that are a JSON string, validly signed', async () => ({ token: await raw(alice, { alg: 'ES256' }, '"sensor-0042"') }), 'token_malformed'],
  ];
  test.each(cases)('%s', async (_name, make, code) => expectRefused(await ask(await make()), code));
});

describe('signature bytes (RFC 8725 §2.1, §3.3 validate all cryptographic operations, §3.4; RFC 7518 §3.4: raw R||S, 64 bytes for ES256)', () => {
  const cases: Case[] = [
    ['signature truncated by one byte', async () => ({ token: await withSegment(2, (s) => b64u(Buffer.from(s, 'base64url').subarray(0, 63))) }), 'token_signature_invalid'],
    ['signature truncated to half', async () => ({ token: await withSegment(2, (s) => b64u(Buffer.from(s, 'base64url').subarray(0, 32))) }), 'token_signature_invalid'],
    ['signature padded with a zero byte', async () => ({ token: await withSegment(2, (s) => b64u(Buffer.concat([Buffer.from(s, 'base64url'), Buffer.of(0)]))) }), 'token_signature_invalid'],
    ['signature zero-extended at the front', async () => ({ token: await withSegment(2, (s) => b64u(Buffer.concat([Buffer.of(0), Buffer.from(s, 'base64url')]))) }), 'token_signature_invalid'],
    ['signature re-encoded as ASN.1 DER (what OpenSSL makes by default)', async () => ({
      token: signRaw(await keyObject(alice.privateKey), { alg: 'ES256', typ: 'JWT' }, claims(), { dsaEncoding: 'der' }),
    }), 'token_signature_invalid'],
    ['an all-zero signature (r = s = 0, CVE-2022-21449 "psychic signatures")', async () => ({ token: await withSegment(2, () => b64u(Buffer.alloc(64))) }), 'token_signature_invalid'],
    ['r = s = n (the group order)', async () => {
      const n = Buffer.from('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551', 'hex');
      return { token: await withSegment(2, () => b64u(Buffer.concat([n, n]))) };
    }, 'token_signature_invalid'],
    ['one bit of the payload flipped after signing', async () => ({
      token: await withSegment(1, (p) => {
        const bytes = Buffer.from(p, 'base64url');
        bytes[bytes.length - 3]! ^= 0x01;
        return b64u(bytes);
      }),
    }), 'token_signature_invalid'],
    ['the signature of one token on the claims of another', async () => {
      const [h, , s] = segments(await deviceToken(alice, now));
      return { token: `${h}.${segments(await deviceToken(alice, now))[1]}.${s}` };
    }, 'token_signature_invalid'],
  ];
  test.each(cases)('%s', async (_name, make, code) => expectRefused(await ask(await make()), code));
});

describe('time claims (RFC 7519 §4.1.4-4.1.6; RFC 8725 §3.10: exp/nbf/iat checked, a lifetime cap)', () => {
  const cases: Case[] = [
    ['expired (beyond the 60 s skew)', async () => ({ token: await deviceToken(alice, now - 400, { exp: now - 61 }) }), 'token_expired'],
    ['not yet valid (nbf beyond the skew)', async () => ({ token: await deviceToken(alice, now, { nbf: now + 61 }) }), 'token_not_yet_valid'],
    ['issued in the future (iat beyond the skew)', async () => ({ token: await deviceToken(alice, now + 61) }), 'token_issued_in_future'],
    ['lifetime over the 3600 s cap', async () => ({ token: await deviceToken(alice, now, { exp: now + 3601 }) }), 'token_lifetime_too_long'],
    ['an old iat with a fresh exp (lifetime counted from iat)', async () => ({ token: await deviceToken(alice, now - 7200, { exp: now + 60 }) }), 'token_lifetime_too_long'],
    ['the Python sample lifetime (+10 days)', async () => ({ token: await deviceToken(alice, now, { exp: now + 10 * 86_400 }) }), 'token_lifetime_too_long'],
    ['no exp', async () => ({ token: await deviceToken(alice, now, { exp: undefined }) }), 'token_claim_missing'],
    ['no iat', async () => ({ token: await deviceToken(alice, now, { iat: undefined }) }), 'token_claim_missing'],
    ['exp as a string', async () => ({ token: await raw(alice, { alg: 'ES256' }, { ...claims(), exp: String(now + 300) }) }), 'token_claim_invalid'],
    ['iat as a string', async () => ({ token: await raw(alice, { alg: 'ES256' }, { ...claims(), iat: String(now) }) }), 'token_claim_invalid'],
    ['nbf as a string', async () => ({ token: await raw(alice, { alg: 'ES256' }, { ...claims(), nbf: String(now) }) }), 'token_claim_invalid'],
    ['exp as null', async () => ({ token: await raw(alice, { alg: 'ES256' }, { ...claims(), exp: null }) }), 'token_claim_invalid'],
  ];
  test.each(cases)('%s', async (_name, make, code) => expectRefused(await ask(await make()), code));

  test('inside the clock skew and exactly at the cap are accepted (the bounds are where the settings say)', async () => {
    expect((await ask({ token: await deviceToken(alice, now - 330, { exp: now - 30 }) })).status).toBe(200);
    expect((await ask({ token: await deviceToken(alice, now + 30) })).status).toBe(200);
    expect((await ask({ token: await deviceToken(alice, now, { exp: now + 3600 }) })).status).toBe(200);
  });
});

describe('binding to this registration and this DPS (RFC 8725 §2.7 substitution, §2.8 cross-JWT confusion, §3.8 subject, §3.9 audience)', () => {
  const cases: Case[] = [
    ['sub names another device', async () => ({ token: await deviceToken(alice, now, { sub: bob.id }) }), 'token_registration_mismatch'],
    ['registration_id names another device', async () => ({ token: await deviceToken(alice, now, { registration_id: bob.id }) }), 'token_registration_mismatch'],
    ['sub right, registration_id another device', async () => ({ token: await deviceToken(alice, now, { sub: alice.id, registration_id: 'sensor-0044' }) }), 'token_registration_mismatch'],
    ['a prefix of the id', async () => ({ token: await deviceToken(alice, now, { sub: 'sensor-004', registration_id: undefined }) }), 'token_registration_mismatch'],
    ['the id with a trailing NUL', async () => ({ token: await deviceToken(alice, now, { sub: `${alice.id}\u0000`, registration_id: undefined }) }), 'token_registration_mismatch'],
    ['KELVIN SIGN (U+212A) for k: "\u212Aelvin-7" is not kelvin-7', async () => ({
      token: await deviceToken(kelvin, now, { sub: '\u212Aelvin-7' }), id: kelvin.id,
    }), 'token_registration_mismatch'],
    ['KELVIN SIGN in registration_id', async () => ({
      token: await deviceToken(kelvin, now, { registration_id: '\u212AELVIN-7' }), id: kelvin.id,
    }), 'token_registration_mismatch'],
    ['LATIN SMALL LETTER LONG S (U+017F) for s', async () => ({ token: await deviceToken(alice, now, { sub: '\u017Fensor-0042' }) }), 'token_registration_mismatch'],
    ['fullwidth letters', async () => ({ token: await deviceToken(alice, now, { sub: '\uFF53ensor-0042' }) }), 'token_registration_mismatch'],
    ['neither sub nor registration_id', async () => ({ token: await deviceToken(alice, now, { sub: undefined, registration_id: undefined }) }), 'token_claim_missing'],
    ['sub as a number', async () => ({ token: await deviceToken(alice, now, { sub: 42 as never }) }), 'token_claim_invalid'],
    ['registration_id as an array', async () => ({ token: await deviceToken(alice, now, { registration_id: [alice.id] }) }), 'token_claim_invalid'],
    ['aud of another id scope', async () => ({ token: await deviceToken(alice, now, { aud: '0ne00OTHER0', id_scope: undefined }) }), 'token_audience_mismatch'],
    ['id_scope of another id scope, aud right', async () => ({ token: await deviceToken(alice, now, { id_scope: '0ne00OTHER0' }) }), 'token_audience_mismatch'],
    ['aud array without this id scope', async () => ({ token: await deviceToken(alice, now, { aud: ['0ne00OTHER0', 'x'], id_scope: undefined }) }), 'token_audience_mismatch'],
    ['the id scope in another letter case (scopes are compared exactly)', async () => ({ token: await deviceToken(alice, now, { aud: ID_SCOPE.toLowerCase(), id_scope: undefined }) }), 'token_audience_mismatch'],
    ['no aud and no id_scope', async () => ({ token: await deviceToken(alice, now, { aud: undefined, id_scope: undefined }) }), 'token_claim_missing'],
    ['aud as an object', async () => ({ token: await deviceToken(alice, now, { aud: { scope: ID_SCOPE } as never }) }), 'token_claim_invalid'],
    ['aud as an array of numbers', async () => ({ token: await deviceToken(alice, now, { aud: [1, 2] as never }) }), 'token_claim_invalid'],
    ['id_scope as a number', async () => ({ token: await deviceToken(alice, now, { id_scope: 7 }) }), 'token_claim_invalid'],
    ['jti as a number', async () => ({ token: await deviceToken(alice, now, { jti: 7 as never }) }), 'token_claim_invalid'],
    ['jti empty', async () => ({ token: await deviceToken(alice, now, { jti: '' }) }), 'token_claim_invalid'],
  ];
  test.each(cases)('%s', async (_name, make, code) => expectRefused(await ask(await make()), code));

  test('the same id in another ASCII letter case is the same registration', async () => {
    expect((await ask({ token: await deviceToken(alice, now, { sub: 'SENSOR-0042', registration_id: 'Sensor-0042' }) })).status).toBe(200);
    expect((await ask({ token: await deviceToken(kelvin, now, { sub: 'KELVIN-7' }), id: 'Kelvin-7' })).status).toBe(200);
    expect((await ask({ token: await deviceToken(alice, now, { aud: ['0ne00OTHER0', ID_SCOPE] }) })).status).toBe(200);
  });

  test('a key file named with a Unicode look-alike is not the key of the ASCII id', async () => {
    // The folder holds "\u212Aelvin-9.pem" (KELVIN SIGN), with mallory's key. Registration kelvin-9 must not find it.
    const token = await signToken(mallory.privateKey, deviceClaims({ ...mallory, id: 'kelvin-9' }, now));
    expectRefused(await ask({ token, id: 'kelvin-9' }), 'device_key_not_found');
  });
});

describe('size (RFC 8725 §2.9: bounded input before any key lookup or crypto)', () => {
  async function tokenOfLength(target: number): Promise<{ token: string; pad: number }> {
    // Pad a claim until the compact form is as long as base64url allows without passing `target`.
    let best = { token: '', pad: 0 };
    for (let pad = Math.floor((target * 3) / 4) - 450; pad < (target * 3) / 4; pad++) {
      const token = await deviceToken(alice, now, { jti: 'fixed-jti-for-size', pad: 'x'.repeat(pad) });
      if (token.length > target) break;
      best = { token, pad };
    }
    return best;
  }

  test(`a token over ${MAX_TOKEN_BYTES} bytes is refused before any key is read; one at the limit is verified`, async () => {
    const { token: atLimit, pad } = await tokenOfLength(MAX_TOKEN_BYTES);
    expect(atLimit.length).toBeGreaterThan(MAX_TOKEN_BYTES - 4);
    expect(atLimit.length).toBeLessThanOrEqual(MAX_TOKEN_BYTES);
    expect((await ask({ token: atLimit })).status).toBe(200);

    const reads = strict.keyCache.stats.reads + strict.keyCache.stats.hits;
    for (const extra of [1, 2, 3, 100, 40_000]) {
      const over = await deviceToken(alice, now, { jti: 'fixed-jti-for-size', pad: 'x'.repeat(pad + extra) });
      expect(over.length).toBeGreaterThan(MAX_TOKEN_BYTES);
      expectRefused(await ask({ token: over }), 'token_too_large');
    }
    expect(strict.keyCache.stats.reads + strict.keyCache.stats.hits).toBe(reads);
  });
});

test('no answer or log line of this file carries a token, a segment of one, or key material', () => {
  expect(watch.count).toBeGreaterThan(100);
  expect(watch.leaks()).toEqual([]);
});
