import { constants } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { WebhookError } from '../core/reasons.js';
import { asciiLower } from '../core/request.js';
import { isWritableByOthers, KEY_FILE_EXTENSIONS, META_EXTENSION } from './folder.js';
import { parseKeyMaterial } from './parse.js';
import { NO_TAGS, type KeySource, type StoredKeySet } from './types.js';

const FLEET = 'fleet';
// One directory listing serves every cold read for this long, so warming N devices lists the folder about once a
// second rather than N times; a key file added meanwhile is seen within it (or the negative cache's TTL).
const LISTING_TTL_MS = 1000;
// A key, a JWKS or a .meta file is a few KB; anything far bigger is not one, and is not read into memory.
const MAX_FILE_BYTES = 256 * 1024;
// O_NOFOLLOW: opening a symbolic link fails (ELOOP) instead of reading whatever it points at. O_NONBLOCK: opening a
// FIFO named like a key returns at once (then fstat refuses it) instead of holding a thread until a writer comes.
// Windows has neither flag (0 there); links there need privilege to create.
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);
const CHECK_MODES = process.platform !== 'win32';

/**
 * Keys without a cloud: a folder with one file per device, `<registration id>.pem|.jwk|.json` (matched
 * case-insensitively, as DPS ids are), beside it an optional `<registration id>.meta` (CONTRACTS.md 3), then an
 * optional fleet-wide PEM (the Python sample's DEVICE_PUBLIC_KEY). File names come from the directory listing, never
 * from the id, so no id can reach outside the folder; a file is opened without following links and must be a regular
 * file only its owner can write (config.ts checks the same of the whole folder at start; this catches later changes).
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
    const metaFile = files.get(id + META_EXTENSION);
    const meta = metaFile === undefined ? { enabled: true, tags: NO_TAGS } : parseMeta(await readInFolder(dir, metaFile), metaFile);
    // A disabled device is refused whatever its key file holds.
    if (!meta.enabled) return { keys: [], enabled: false, tags: meta.tags, origin: file };
    const keys = await parseKeyMaterial(await readInFolder(dir, file), algorithms, file);
    return { keys, enabled: true, tags: meta.tags, origin: file };
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

/**
 * Reads one file of the folder. What the folder's owner got wrong (a link, not a regular file, writable by others,
 * oversized) is `device_key_unusable`, refused and logged, never followed; an I/O fault is `key_store_unavailable`.
 */
async function readInFolder(dir: string, file: string): Promise<string> {
  const unavailable = (error: NodeJS.ErrnoException) =>
    new WebhookError('key_store_unavailable', `${file} cannot be read (${error.code ?? 'error'})`);
  let handle;
  try {
    handle = await open(join(dir, file), OPEN_FLAGS);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // ELOOP: a symbolic link (O_NOFOLLOW). Some systems answer EMLINK or EFTYPE instead.
    if (code === 'ELOOP' || code === 'EMLINK' || code === 'EFTYPE') {
      throw new WebhookError('device_key_unusable', `${file} is a symbolic link; links in DEVICE_KEYS_DIR are never followed`);
    }
    throw unavailable(error as NodeJS.ErrnoException);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new WebhookError('device_key_unusable', `${file} is not a regular file`);
    if (CHECK_MODES && isWritableByOthers(stat.mode)) {
      throw new WebhookError('device_key_unusable', `${file} is writable by group or others; it is not trusted`);
    }
    if (stat.size > MAX_FILE_BYTES) throw new WebhookError('device_key_unusable', `${file} is over ${MAX_FILE_BYTES} bytes`);
    return await handle.readFile('utf8');
  } catch (error) {
    if (error instanceof WebhookError) throw error;
    throw unavailable(error as NodeJS.ErrnoException);
  } finally {
    await handle.close();
  }
}

interface FolderMeta {
  readonly enabled: boolean;
  readonly tags: Readonly<Record<string, string>>;
}

/**
 * `<id>.meta`: `{"enabled": boolean, "tags": {"name": "value"}}`, both optional (CONTRACTS.md 3). Anything else is
 * `device_key_unusable`: an unknown member (a typo such as "enable": false) or a wrong type must not quietly leave
 * a device enabled.
 */
export function parseMeta(text: string, file: string): FolderMeta {
  const unusable = (why: string) => new WebhookError('device_key_unusable', `${file}: ${why}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw unusable('is not valid JSON');
  }
  if (!isRecord(parsed)) throw unusable('must be a JSON object');
  for (const member of Object.keys(parsed)) {
    if (member !== 'enabled' && member !== 'tags') throw unusable(`unknown member "${member}"; only "enabled" and "tags" are allowed`);
  }
  const { enabled = true, tags } = parsed;
  if (typeof enabled !== 'boolean') throw unusable('"enabled" must be true or false');
  if (tags === undefined) return { enabled, tags: NO_TAGS };
  if (!isRecord(tags)) throw unusable('"tags" must be an object');
  const entries = Object.entries(tags);
  for (const [name, value] of entries) if (typeof value !== 'string') throw unusable(`tag "${name}" must be a string`);
  // fromEntries defines own properties, so a tag named "__proto__" stays a tag (the twin code judges its name).
  return { enabled, tags: entries.length === 0 ? NO_TAGS : (Object.fromEntries(entries) as Record<string, string>) };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
