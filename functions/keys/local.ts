import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WebhookError } from '../core/reasons.js';
import { parseKeyMaterial } from './parse.js';
import { NO_TAGS, type KeyLookup, type KeyStore, type StoredKeySet } from './types.js';

const KEY_FILE_EXTENSIONS = ['.pem', '.jwk', '.json'];
const FLEET = 'fleet';
// Registration ids are ASCII; fold ASCII only, so a file named with a look-alike (U+212A KELVIN SIGN lower-cases to
// "k") is never taken for an ASCII id.
const asciiLower = (s: string) => s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));

/**
 * Keys without a cloud: a folder with one file per device, `<registration id>.pem|.jwk|.json` (matched
 * case-insensitively, as DPS ids are), then an optional fleet-wide PEM (the Python sample's DEVICE_PUBLIC_KEY).
 * File names come from the directory listing, never from the id, so no id can reach outside the folder.
 */
export function createLocalKeyStore(options: { dir?: string; fleetPublicKeyPem?: string; algorithms: readonly string[] }): {
  store: KeyStore;
  names: (lookup: KeyLookup) => string[];
} {
  const { dir, fleetPublicKeyPem, algorithms } = options;

  async function readDevice(id: string): Promise<StoredKeySet | undefined> {
    if (dir === undefined) return undefined;
    let files: string[];
    try {
      files = await readdir(dir);
    } catch (error) {
      throw new WebhookError('key_store_unavailable', `DEVICE_KEYS_DIR cannot be listed (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    const file = files.find((f) => KEY_FILE_EXTENSIONS.some((ext) => asciiLower(f) === id + ext));
    if (file === undefined) return undefined;
    const text = await readFile(join(dir, file), 'utf8').catch((error: NodeJS.ErrnoException) => {
      throw new WebhookError('key_store_unavailable', `${file} cannot be read (${error.code ?? 'error'})`);
    });
    return { keys: await parseKeyMaterial(text, algorithms, file), enabled: true, tags: NO_TAGS, origin: file };
  }

  return {
    names: (lookup) => [`device:${lookup.registrationId.toLowerCase()}`, ...(fleetPublicKeyPem !== undefined ? [FLEET] : [])],
    store: {
      async read(name) {
        if (name === FLEET && fleetPublicKeyPem !== undefined) {
          return { keys: await parseKeyMaterial(fleetPublicKeyPem, algorithms, 'DEVICE_PUBLIC_KEY'), enabled: true, tags: NO_TAGS, origin: 'DEVICE_PUBLIC_KEY' };
        }
        if (name.startsWith('device:')) return readDevice(name.slice('device:'.length));
        return undefined;
      },
    },
  };
}
