import { mkdtemp, readFile, stat, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, importPKCS8, importSPKI, jwtVerify, SignJWT } from 'jose';
import { beforeEach, describe, expect, test } from 'vitest';
import { keygen } from '../../sample-device/commands/keygen.js';
import { SampleDeviceError } from '../../sample-device/errors.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sd-keygen-'));
});

describe('keygen', () => {
  test('writes a PKCS#8 private key readable only by its owner and an SPKI public key', async () => {
    const result = await keygen({ outDir: dir, name: 'sensor-0042' });
    expect(result.privateKeyFile).toBe(join(dir, 'sensor-0042.key.pem'));
    expect(result.publicKeyFile).toBe(join(dir, 'sensor-0042.pub.pem'));
    // The private key is a secret: group and others must not even read it.
    expect((await stat(result.privateKeyFile)).mode & 0o777).toBe(0o600);
    expect((await stat(result.publicKeyFile)).mode & 0o077).not.toBe(0);

    const privatePem = await readFile(result.privateKeyFile, 'utf8');
    const publicPem = await readFile(result.publicKeyFile, 'utf8');
    expect(privatePem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(publicPem).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);

    // The two files are one P-256 pair: a token signed with one verifies with the other.
    const privateKey = await importPKCS8(privatePem, 'ES256');
    const publicKey = await importSPKI(publicPem, 'ES256', { extractable: true });
    const jwt = await new SignJWT({ sub: 'sensor-0042' }).setProtectedHeader({ alg: 'ES256' }).sign(privateKey);
    await expect(jwtVerify(jwt, publicKey, { algorithms: ['ES256'] })).resolves.toBeTruthy();

    // The printed thumbprint is the RFC 7638 thumbprint of the public key in the file.
    const jwk = await exportJWK(publicKey);
    expect(jwk.crv).toBe('P-256');
    expect(result.thumbprint).toBe(await calculateJwkThumbprint(jwk, 'sha256'));
  });

  test('defaults the name to "device" and creates the directory', async () => {
    const nested = join(dir, 'a', 'b');
    const result = await keygen({ outDir: nested });
    expect(await readdir(nested)).toEqual(['device.key.pem', 'device.pub.pem']);
    expect(result.privateKeyFile).toBe(join(nested, 'device.key.pem'));
  });

  test('refuses to overwrite an existing key pair and leaves it unchanged', async () => {
    const first = await keygen({ outDir: dir, name: 'sensor-0042' });
    const before = await readFile(first.privateKeyFile, 'utf8');
    const error = await keygen({ outDir: dir, name: 'sensor-0042' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SampleDeviceError);
    expect((error as SampleDeviceError).code).toBe('file');
    expect((error as SampleDeviceError).exitCode).toBe(3);
    expect((error as Error).message).toContain('refusing to overwrite');
    expect(await readFile(first.privateKeyFile, 'utf8')).toBe(before);
  });

  test('refuses when only the public key exists, and writes no private key beside it', async () => {
    await writeFile(join(dir, 'sensor-7.pub.pem'), 'kept');
    const error = await keygen({ outDir: dir, name: 'sensor-7' }).catch((e: unknown) => e);
    expect((error as SampleDeviceError).code).toBe('file');
    expect(await readdir(dir)).toEqual(['sensor-7.pub.pem']);
    expect(await readFile(join(dir, 'sensor-7.pub.pem'), 'utf8')).toBe('kept');
  });

  test.each(['../escape', 'a/b', '.hidden', ''])('rejects --name %j, naming the flag', async (name) => {
    const error = await keygen({ outDir: dir, name }).catch((e: unknown) => e);
    expect((error as SampleDeviceError).code).toBe('usage');
    expect((error as Error).message).toMatch(/^--name /);
    expect(await readdir(dir)).toEqual([]);
  });
});
