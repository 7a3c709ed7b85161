import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WebhookError } from '../core/reasons.js';
import { parseKeyMaterial } from './parse.js';
import { NO_TAGS, type KeySource, type StoredKeySet } from './types.js';

const KEY_FILE_EXTENSIONS = ['.pem', '.jwk', '.json'];
const FLEET = 'fleet';
// One directory listing serves every cold read for this long, so warming N devices lists the folder about once a
// second rather than N times; a key file added meanwhile is seen within it (or the negative cache's TTL).
const LISTING_TTL_MS = 1000;
// Registration ids are ASCII; fold ASCII only, so a file named with a look-alike (U+212A KELVIN SIGN lower-cases to
// "k") is never taken for an ASCII id.
const asciiLower = (s: string) => s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));

/**
 * Keys without a cloud: a folder with one file per device, `<registration id>.pem|.jwk|.json` (matched
 * case-insensitively, as DPS ids are), then an optional fleet-wide PEM (the Python sample's DEVICE_PUBLIC_KEY).
 * File names come from the directory listing, never from the id, so no id can reach outside the folder.
 */
export function createLocalKeyStore(options: { dir?: string; fleetPublicKeyPem?: string; algorithms: readonly string[] }): KeySource {
  const { dir, fleetPublicKeyPem, algorithms } = options;

  let listing: { at: number; files: Promise<Map<string, string>> } | undefined;

  /** The folder's file names by their ASCII-lower-cased form. */
  function filesByLowerName(): Promise<Map<string, string>> {
    const now = Date.now();
    if (listing === undefined || now - listing.at >= LISTING_TTL_MS) {
      const files = readdir(dir as string).then(
        (names) => new Map(names.map((name) => [asciiLower(name), name])),
        (error: NodeJS.ErrnoException) => {
          listing = undefined;
          throw new WebhookError('key_store_unavailable', `DEVICE_KEYS_DIR cannot be listed (${error.code ?? 'error'})`);
        },
      );
      listing = { at: now, files };
    }
    return listing.files;
  }

  async function readDevice(id: string): Promise<StoredKeySet | undefined> {
    if (dir === undefined) return undefined;
    const files = await filesByLowerName();
    const file = KEY_FILE_EXTENSIONS.map((ext) => files.get(id + ext)).find((f) => f !== undefined);
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
