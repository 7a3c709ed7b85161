import { createHash, randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WebhookError } from '../../functions/core/reasons.js';
import { asciiLower } from '../../functions/core/request.js';
import { KEY_FILE_EXTENSIONS, META_EXTENSION } from '../../functions/keys/folder.js';
import { parseMeta as parseFolderMeta } from '../../functions/keys/local.js';
import type { DeviceKeyState, DeviceKeyStore, UpdateResult } from '../core/ports.js';

/**
 * The webhook's key folder (DEVICE_KEYS_DIR) as the portal sees it (CONTRACTS item 3): `<id>.pem|.jwk|.json` is the key,
 * an optional `<id>.meta` beside it holds `{"enabled": boolean, "tags": {...}}`; absent = enabled, no tags. Both are
 * matched case-insensitively (ASCII) from the directory listing, as the webhook does, so an id never builds a path.
 *
 * Compare-and-swap: the version of a device is the SHA-256 of its `.meta` bytes ("absent" without one). An update
 * takes a lock file (`.<name>.meta.lock`, created exclusively, so it also excludes another portal process), re-reads
 * the meta, writes only if its digest is still the expected one, and replaces the file atomically (temp file in the
 * folder, then rename), so the webhook never reads half a file.
 */
const LOCK_WAIT_MS = 5_000;
/** A lock older than this was left by a crashed writer (a write takes milliseconds). */
const STALE_LOCK_MS = 30_000;

interface Meta {
  readonly enabled: boolean;
  readonly tags: Record<string, string>;
}

export class KeyFolderError extends Error {
  override name = 'KeyFolderError';
}

/** The webhook's own reading of a `.meta` (functions/keys/local.ts), so the portal never writes over what it would refuse. */
function parseMeta(text: string, file: string): Meta {
  try {
    const meta = parseFolderMeta(text, file);
    return { enabled: meta.enabled, tags: { ...meta.tags } };
  } catch (error) {
    throw error instanceof WebhookError ? new KeyFolderError(error.message) : error;
  }
}

const digest = (bytes: string | undefined) => (bytes === undefined ? 'absent' : createHash('sha256').update(bytes).digest('hex'));

export function createFolderStore(dir: string): DeviceKeyStore {
  /** Key files by lower-case id, and meta files by lower-case id. */
  async function listing(): Promise<{ keys: Map<string, string>; metas: Map<string, string> }> {
    const keys = new Map<string, string>();
    const metas = new Map<string, string>();
    for (const name of await readdir(dir)) {
      const lower = asciiLower(name);
      const ext = KEY_FILE_EXTENSIONS.find((e) => lower.endsWith(e));
      if (ext !== undefined && !name.startsWith('.')) keys.set(lower.slice(0, -ext.length), name);
      else if (lower.endsWith(META_EXTENSION) && !name.startsWith('.')) metas.set(lower.slice(0, -META_EXTENSION.length), name);
    }
    return { keys, metas };
  }

  async function readState(lowerId: string, files: Awaited<ReturnType<typeof listing>>): Promise<DeviceKeyState | undefined> {
    const keyFile = files.keys.get(lowerId);
    if (keyFile === undefined) return undefined;
    const id = keyFile.slice(0, keyFile.lastIndexOf('.'));
    const metaFile = files.metas.get(lowerId);
    const text = metaFile === undefined ? undefined : await readFile(join(dir, metaFile), 'utf8').catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(e)));
    const meta = text === undefined ? { enabled: true, tags: {} } : parseMeta(text, metaFile as string);
    return { id, enabled: meta.enabled, tags: meta.tags, version: digest(text) };
  }

  async function withLock<T>(lowerId: string, fn: () => Promise<T>): Promise<T> {
    const lock = join(dir, `.${lowerId}.meta.lock`);
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      try {
        const handle = await open(lock, 'wx');
        await handle.close();
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const age = await stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0);
        if (age > STALE_LOCK_MS) await rm(lock, { force: true });
        else if (Date.now() > deadline) throw new KeyFolderError(`${lowerId}: another writer holds ${lock}`);
        else await new Promise((r) => setTimeout(r, 20));
      }
    }
    try {
      return await fn();
    } finally {
      await rm(lock, { force: true });
    }
  }

  return {
    description: 'key folder',
    async listDisabled() {
      const files = await listing();
      const out: DeviceKeyState[] = [];
      for (const lowerId of files.metas.keys()) {
        const state = await readState(lowerId, files).catch(() => undefined);
        if (state !== undefined && !state.enabled) out.push(state);
      }
      return out;
    },
    async get(id) {
      return readState(asciiLower(id), await listing());
    },
    async update(id, expectedVersion, next): Promise<UpdateResult> {
      const lowerId = asciiLower(id);
      return withLock(lowerId, async () => {
        const files = await listing();
        const current = await readState(lowerId, files);
        if (current === undefined) return 'not_found';
        if (current.version !== expectedVersion) return 'conflict';
        const metaName = files.metas.get(lowerId) ?? `${current.id}${META_EXTENSION}`;
        const temp = join(dir, `.${lowerId}.meta.${randomBytes(6).toString('hex')}.tmp`);
        const body = `${JSON.stringify({ enabled: next.enabled, tags: next.tags }, null, 2)}\n`;
        await writeFile(temp, body, { mode: 0o644, flag: 'wx' });
        try {
          await rename(temp, join(dir, metaName));
        } catch (error) {
          await rm(temp, { force: true });
          throw error;
        }
        return 'updated';
      });
    },
  };
}
