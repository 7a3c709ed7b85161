import { generateKeyPairSync } from 'node:crypto';
import { exportJWK, importSPKI, jwtVerify, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { WebhookError } from '../../functions/core/reasons.js';
import { createImportedKeys } from '../../functions/keys/imported.js';
import { P256Key, p256FromPem } from '../../functions/keys/p256.js';
import { parseKeyMaterial } from '../../functions/keys/parse.js';

const pemOf = (der: Buffer) => `-----BEGIN PUBLIC KEY-----\n${der.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END PUBLIC KEY-----\n`;

function p256Pair() {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, der: publicKey.export({ type: 'spki', format: 'der' }), pem: publicKey.export({ type: 'spki', format: 'pem' }) as string };
}

describe('P-256 keys read without OpenSSL (p256.ts)', () => {
  it('reads the same x and y as jose importSPKI + exportJWK, for 50 fresh keys', async () => {
    for (let i = 0; i < 50; i++) {
      const { pem } = p256Pair();
      const ours = p256FromPem(pem.trim());
      const theirs = await exportJWK(await importSPKI(pem, 'ES256', { extractable: true }));
      expect(ours).toBeInstanceOf(P256Key);
      expect(ours!.jwk).toEqual({ kty: 'EC', crv: 'P-256', x: theirs.x, y: theirs.y });
    }
  });

  it('parseKeyMaterial keeps one compact ES256 key, in an array of exact length, that verifies its device token', async () => {
    const { pem, privateKey } = p256Pair();
    const keys = await parseKeyMaterial(pem, ['ES256', 'RS256', 'EdDSA'], 'dev.pem');
    expect(keys).toHaveLength(1);
    expect(keys[0]).toBeInstanceOf(P256Key);
    expect(keys[0]!.alg).toBe('ES256');
    expect(keys[0]!.kid).toBeUndefined();
    const token = await new SignJWT({ sub: 'dev' }).setProtectedHeader({ alg: 'ES256' }).sign(privateKey);
    const imported = await createImportedKeys(4).get(keys[0]!);
    await expect(jwtVerify(token, imported, { algorithms: ['ES256'] })).resolves.toBeDefined();
    // The JWK it hands out is a plain public JWK that jose takes as it is.
    await expect(jwtVerify(token, keys[0]!.jwk, { algorithms: ['ES256'] })).resolves.toBeDefined();
    const other = p256Pair();
    const forged = await new SignJWT({ sub: 'dev' }).setProtectedHeader({ alg: 'ES256' }).sign(other.privateKey);
    await expect(jwtVerify(forged, imported, { algorithms: ['ES256'] })).rejects.toThrow();
  });

  it('refuses a point off the curve, and one with a coordinate not below p, as device_key_unusable', async () => {
    const { der } = p256Pair();
    const offCurve = Buffer.from(der);
    offCurve[offCurve.length - 1]! ^= 1;
    expect(p256FromPem(pemOf(offCurve).trim())).toBeUndefined();
    await expect(parseKeyMaterial(pemOf(offCurve), ['ES256'], 'bad.pem')).rejects.toMatchObject({ code: 'device_key_unusable' });
    const big = Buffer.from(der);
    big.fill(0xff, 27, 59); // x = 2^256 - 1 > p
    expect(p256FromPem(pemOf(big).trim())).toBeUndefined();
    await expect(parseKeyMaterial(pemOf(big), ['ES256'], 'big.pem')).rejects.toBeInstanceOf(WebhookError);
  });

  it('is never trusted on its own reading: an off-curve point that got past it is refused at import (jose, WebCrypto)', async () => {
    const { der } = p256Pair();
    const point = Buffer.from(der.subarray(27));
    point[63]! ^= 1;
    await expect(createImportedKeys(4).get(new P256Key(point.toString('latin1')))).rejects.toMatchObject({ code: 'device_key_unusable' });
  });

  it('leaves every other shape to jose: a compressed point, P-384, a stray byte, non-canonical base64', async () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const p384 = publicKey.export({ type: 'spki', format: 'pem' }) as string;
    expect(p256FromPem(p384.trim())).toBeUndefined();
    const keys = await parseKeyMaterial(p384, ['ES256', 'ES384'], 'p384.pem');
    expect(keys.map((k) => k.alg)).toEqual(['ES384']);
    expect(keys[0]).not.toBeInstanceOf(P256Key);

    const { der } = p256Pair();
    expect(p256FromPem(pemOf(Buffer.concat([der, Buffer.from([0])])).trim())).toBeUndefined();
    const body = der.toString('base64');
    expect(p256FromPem(`-----BEGIN PUBLIC KEY-----\n${body.slice(0, 10)}*${body.slice(10)}\n-----END PUBLIC KEY-----`)).toBeUndefined();

    const compressed = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });
    const x = compressed.subarray(27, 59);
    const prefix = Buffer.from('3039301306072a8648ce3d020106082a8648ce3d030107032200', 'hex');
    const short = Buffer.concat([prefix, Buffer.from([0x02 | (compressed[90]! & 1)]), x]);
    expect(p256FromPem(pemOf(short).trim())).toBeUndefined();
  });

  it('an allow-list without ES256 gets nothing from a P-256 key: device_key_unusable, as before', async () => {
    const { pem } = p256Pair();
    await expect(parseKeyMaterial(pem, ['RS256', 'EdDSA'], 'dev.pem')).rejects.toMatchObject({ code: 'device_key_unusable' });
  });
});
