import { mkdir, open, unlink, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { JWK } from 'jose';
import { SampleDeviceError, usageError } from '../errors.js';
import { generateDeviceKeyPair } from '../jwt.js';

export interface KeygenOptions {
  /** Directory for the two PEM files; created (mode 0700) when missing. */
  readonly outDir: string;
  /** File name stem; usually the registration id. Default `device`. */
  readonly name?: string;
}

export interface KeygenResult {
  /** `<name>.key.pem`: PKCS#8, mode 0600. */
  readonly privateKeyFile: string;
  /** `<name>.pub.pem`: SPKI, what the webhook's key store needs. */
  readonly publicKeyFile: string;
  /** RFC 7638 thumbprint of the public JWK, a good `kid`. */
  readonly thumbprint: string;
  readonly publicJwk: JWK;
}

/** A plain file name: no separators, no leading dot, so `--name` can never write outside `--out-dir`. */
const NAME = /^[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}$/;

async function createExclusive(path: string, mode: number): Promise<FileHandle> {
  try {
    // 'wx' = O_CREAT | O_EXCL: fails if the file exists, so a factory key is never silently replaced.
    return await open(path, 'wx', mode);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      throw new SampleDeviceError('file', `${path} already exists; refusing to overwrite a device key`, {
        hint: 'Choose another --name or --out-dir, or delete the old files yourself.',
      });
    }
    throw new SampleDeviceError('file', `cannot create ${path} (${code ?? 'unknown error'})`);
  }
}

/** Creates the device's P-256 key pair as PEM files. Refuses to overwrite either file. */
export async function keygen(options: KeygenOptions): Promise<KeygenResult> {
  const name = options.name ?? 'device';
  if (options.outDir.trim() === '') throw usageError('--out-dir', 'must not be empty');
  if (!NAME.test(name)) {
    throw usageError('--name', 'must be 1-128 characters of letters, digits, . _ : - and not start with a dot');
  }
  const dir = resolve(options.outDir);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new SampleDeviceError('file', `cannot create directory ${dir} (${(error as NodeJS.ErrnoException).code ?? 'unknown error'})`);
  }
  const privateKeyFile = join(dir, `${name}.key.pem`);
  const publicKeyFile = join(dir, `${name}.pub.pem`);

  const keys = await generateDeviceKeyPair();
  // Claim both names before writing anything, so a refusal leaves no half-written pair behind.
  const privateHandle = await createExclusive(privateKeyFile, 0o600);
  let publicHandle: FileHandle;
  try {
    publicHandle = await createExclusive(publicKeyFile, 0o644);
  } catch (error) {
    await privateHandle.close();
    await unlink(privateKeyFile).catch(() => undefined);
    throw error;
  }
  try {
    // The mode given to open() is filtered by the umask; make the private key's 0600 explicit.
    await privateHandle.chmod(0o600);
    await privateHandle.writeFile(keys.privateKeyPem, 'utf8');
    await publicHandle.writeFile(keys.publicKeyPem, 'utf8');
  } finally {
    await privateHandle.close();
    await publicHandle.close();
  }
  return { privateKeyFile, publicKeyFile, thumbprint: keys.thumbprint, publicJwk: keys.publicJwk };
}
