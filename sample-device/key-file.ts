import { readFile } from 'node:fs/promises';
import type { CryptoKey } from 'jose';
import { SampleDeviceError, usageError } from './errors.js';
import { importDevicePrivateKey } from './jwt.js';

/** Reads and imports the device's private key; errors name the flag and the path, never the key material. */
export async function loadPrivateKeyFile(path: string, flag = '--private-key'): Promise<CryptoKey> {
  if (path.trim() === '') throw usageError(flag, 'must name a file');
  let pem: string;
  try {
    pem = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable' : `cannot be read (${code ?? 'unknown error'})`;
    throw new SampleDeviceError('file', `${flag} ${path} ${why}`);
  }
  return importDevicePrivateKey(pem, `${flag} ${path}`);
}

/** The CA certificate (PEM) a local DPS or hub is trusted with (`--ca FILE`). */
export async function loadCaFile(path: string): Promise<string> {
  let ca: string;
  try {
    ca = await readFile(path, 'utf8');
  } catch (error) {
    throw new SampleDeviceError('file', `--ca ${path} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'unknown error'})`);
  }
  if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new SampleDeviceError('file', `--ca ${path} is not a PEM certificate`);
  return ca;
}
