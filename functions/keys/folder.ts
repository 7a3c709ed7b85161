/**
 * The layout of a key folder (DEVICE_KEYS_DIR), shared by the start-up check in config.ts and the store in local.ts:
 * `<registration id>.pem|.jwk|.json` holds a device's key, `<registration id>.meta` its metadata (CONTRACTS.md 3).
 */
import { asciiLower } from '../core/request.js';

export const KEY_FILE_EXTENSIONS = ['.pem', '.jwk', '.json'] as const;
export const META_EXTENSION = '.meta';

/** A file the store may read: a key or a metadata file (by its name, case-insensitively). */
export function isKeyFolderFile(name: string): boolean {
  const lower = asciiLower(name);
  return [...KEY_FILE_EXTENSIONS, META_EXTENSION].some((ext) => lower.endsWith(ext));
}

/** Group- or other-writable: anyone with that access could put a key there and admit any device. */
export const isWritableByOthers = (mode: number) => (mode & 0o022) !== 0;
