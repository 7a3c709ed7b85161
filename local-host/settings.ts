import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Env } from '../functions/config.js';

/**
 * The string `Values` of a local.settings.json, as Core Tools reads them. Errors name the file, never a value (the
 * file may hold a connection string).
 */
export async function readSettingsFile(path: string): Promise<Record<string, string>> {
  const file = basename(path);
  const text = await readFile(path, 'utf8');
  let values: unknown;
  try {
    values = (JSON.parse(text) as { Values?: unknown }).Values;
  } catch {
    throw new TypeError(`${file}: not valid JSON`);
  }
  if (typeof values !== 'object' || values === null || Array.isArray(values)) throw new TypeError(`${file}: "Values" must be an object`);
  const fromFile: Record<string, string> = {};
  for (const [name, value] of Object.entries(values)) if (typeof value === 'string') fromFile[name] = value;
  return fromFile;
}

/**
 * Settings for the local host, as Core Tools would assemble them: the `Values` of local.settings.json (or, on a
 * fresh clone, of the committed local.settings.example.json), with the process environment taking precedence.
 */
export async function loadLocalSettings(dir: string, processEnv: Env): Promise<{ env: Env; file?: string }> {
  for (const file of ['local.settings.json', 'local.settings.example.json']) {
    let fromFile: Record<string, string>;
    try {
      fromFile = await readSettingsFile(join(dir, file));
    } catch (error) {
      if (error instanceof TypeError) throw error;
      continue;
    }
    return { env: { ...fromFile, ...processEnv }, file };
  }
  return { env: processEnv };
}
