import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Env } from '../functions/config.js';

/**
 * Settings for the local host, as Core Tools would assemble them: the `Values` of local.settings.json (or, on a
 * fresh clone, of the committed local.settings.example.json), with the process environment taking precedence.
 */
export async function loadLocalSettings(dir: string, processEnv: Env): Promise<{ env: Env; file?: string }> {
  for (const file of ['local.settings.json', 'local.settings.example.json']) {
    let text: string;
    try {
      text = await readFile(join(dir, file), 'utf8');
    } catch {
      continue;
    }
    let values: unknown;
    try {
      values = (JSON.parse(text) as { Values?: unknown }).Values;
    } catch {
      throw new TypeError(`${file}: not valid JSON`);
    }
    if (typeof values !== 'object' || values === null || Array.isArray(values)) throw new TypeError(`${file}: "Values" must be an object`);
    const fromFile: Record<string, string> = {};
    for (const [name, value] of Object.entries(values)) if (typeof value === 'string') fromFile[name] = value;
    return { env: { ...fromFile, ...processEnv }, file };
  }
  return { env: processEnv };
}
