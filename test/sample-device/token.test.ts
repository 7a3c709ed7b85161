import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeProtectedHeader, errors, importSPKI, jwtVerify } from 'jose';
import { beforeAll, describe, expect, test } from 'vitest';
import { keygen, type KeygenResult } from '../../sample-device/commands/keygen.js';
import { token } from '../../sample-device/commands/token.js';
import { SampleDeviceError } from '../../sample-device/errors.js';

const NOW = Math.floor(Date.parse('2026-11-21T12:00:00Z') / 1000);
const SCOPE = '0ne00ABC123';
let dir: string;
let device: KeygenResult;
let other: KeygenResult;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sd-token-'));
  device = await keygen({ outDir: dir, name: 'sensor-0042' });
  other = await keygen({ outDir: dir, name: 'sensor-0043' });
});

async function publicKeyOf(keys: KeygenResult) {
  return importSPKI(await readFile(keys.publicKeyFile, 'utf8'), 'ES256');
}

describe('token', () => {
  test('signs ES256 with the Python sample claims plus sub, aud and jti, verifiable with the public key', async () => {
    const result = await token({
      privateKeyFile: device.privateKeyFile,
      registrationId: 'sensor-0042',
      idScope: SCOPE,
      host: 'global.azure-devices-provisioning.net',
      kid: device.thumbprint,
      now: NOW,
    });
    // What the webhook does: pin the algorithm and check the claims against the registering device.
    const { payload, protectedHeader } = await jwtVerify(result.token, await publicKeyOf(device), {
      algorithms: ['ES256'],
      audience: SCOPE,
      subject: 'sensor-0042',
      currentDate: new Date((NOW + 10) * 1000),
    });
    expect(protectedHeader).toEqual({ alg: 'ES256', typ: 'JWT', kid: device.thumbprint });
    expect(payload).toEqual({
      registration_id: 'sensor-0042',
      id_scope: SCOPE,
      provisioning_host: 'global.azure-devices-provisioning.net',
      sub: 'sensor-0042',
      aud: SCOPE,
      iat: NOW,
      exp: NOW + 300,
      jti: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
    // The decoded view printed next to the token is the token's own content.
    expect(result.header).toEqual(protectedHeader);
    expect(result.claims).toEqual(payload);
    expect(result.thumbprint).toBe(device.thumbprint);
  });

  test('honours --lifetime and gives every token its own jti', async () => {
    const a = await token({ privateKeyFile: device.privateKeyFile, registrationId: 'sensor-0042', lifetimeSeconds: 60, now: NOW });
    const b = await token({ privateKeyFile: device.privateKeyFile, registrationId: 'sensor-0042', lifetimeSeconds: 60, now: NOW });
    expect(Number(a.claims.exp) - Number(a.claims.iat)).toBe(60);
    expect(a.claims.jti).not.toBe(b.claims.jti);
    // Without --id-scope there is no audience to claim; without --kid no kid.
    expect(a.claims.aud).toBeUndefined();
    expect(a.claims.id_scope).toBeUndefined();
    expect(decodeProtectedHeader(a.token).kid).toBeUndefined();
  });

  test("does not verify with another device's public key, nor once expired", async () => {
    const result = await token({ privateKeyFile: device.privateKeyFile, registrationId: 'sensor-0042', now: NOW });
    await expect(jwtVerify(result.token, await publicKeyOf(other), { currentDate: new Date(NOW * 1000) })).rejects.toBeInstanceOf(
      errors.JWSSignatureVerificationFailed,
    );
    await expect(jwtVerify(result.token, await publicKeyOf(device), { currentDate: new Date((NOW + 301) * 1000) })).rejects.toBeInstanceOf(
      errors.JWTExpired,
    );
  });

  test('accepts a SEC1 "EC PRIVATE KEY" as openssl writes it for the Python sample', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', {
      namedCurve: 'prime256v1',
      privateKeyEncoding: { type: 'sec1', format: 'pem' },
      publicKeyEncoding: { type: 'spki', format: 'pem' },
    });
    const file = join(dir, 'sec1.key.pem');
    await writeFile(file, privateKey, { mode: 0o600 });
    const result = await token({ privateKeyFile: file, registrationId: 'legacy-1', now: NOW });
    await expect(jwtVerify(result.token, await importSPKI(publicKey, 'ES256'), { currentDate: new Date(NOW * 1000) })).resolves.toBeTruthy();
  });

  test.each([
    ['a P-384 key', () => generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 'not a P-256'],
    ['a public key', () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ type: 'spki', format: 'pem' }).toString(), 'not a PEM private key'],
    ['garbage', () => 'hello', 'not a PEM private key'],
  ])('refuses %s as --private-key (exit 3)', async (_label, pem, why) => {
    const file = join(dir, `bad-${Math.random().toString(36).slice(2)}.pem`);
    await writeFile(file, pem());
    const error = await token({ privateKeyFile: file, registrationId: 'sensor-0042' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SampleDeviceError);
    expect((error as SampleDeviceError).exitCode).toBe(3);
    expect((error as Error).message).toContain('--private-key');
    expect((error as Error).message).toContain(why);
  });

  test('reports a missing key file by flag and path', async () => {
    const error = await token({ privateKeyFile: join(dir, 'nope.pem'), registrationId: 'sensor-0042' }).catch((e: unknown) => e);
    expect((error as SampleDeviceError).code).toBe('file');
    expect((error as Error).message).toBe(`--private-key ${join(dir, 'nope.pem')} does not exist`);
  });

  test.each([
    [{ registrationId: 'bad id with spaces' }, '--registration-id'],
    [{ registrationId: 'ends-with-dot.' }, '--registration-id'],
    [{ registrationId: 'x'.repeat(129) }, '--registration-id'],
    [{ registrationId: 'ok', lifetimeSeconds: 0 }, '--lifetime'],
    [{ registrationId: 'ok', lifetimeSeconds: 10 * 24 * 3600 + 1 }, '--lifetime'],
    [{ registrationId: 'ok', kid: ' ' }, '--kid'],
  ])('rejects %j naming %s', async (options, flag) => {
    const error = await token({ privateKeyFile: device.privateKeyFile, ...options }).catch((e: unknown) => e);
    expect((error as SampleDeviceError).code).toBe('usage');
    expect((error as Error).message.startsWith(`${flag} `)).toBe(true);
  });
});

describe('token --jti and --iat (test vectors)', () => {
  test('fix the jti and the time, so two runs sign the same header and claims', async () => {
    const options = { privateKeyFile: device.privateKeyFile, registrationId: 'sensor-0042', idScope: SCOPE, now: NOW, jti: 'vector-1' };
    const [a, b] = [await token(options), await token(options)];
    expect(a.claims).toMatchObject({ jti: 'vector-1', iat: NOW, exp: NOW + 300 });
    expect(a.token.split('.').slice(0, 2)).toEqual(b.token.split('.').slice(0, 2));
  });

  test('a jti with characters JSON would escape is a usage error naming --jti', async () => {
    await expect(token({ privateKeyFile: device.privateKeyFile, registrationId: 'sensor-0042', jti: 'a"b' })).rejects.toMatchObject({ code: 'usage', message: expect.stringMatching(/^--jti must be/) });
  });
});
