import type { KeyCache } from './cache.js';
import type { DeviceKeys, KeyLookup } from '../core/ports.js';

/** The core's DeviceKeys port over the cache: the first name under which anything is stored wins. */
export function createDeviceKeys(cache: KeyCache, names: (lookup: KeyLookup) => readonly string[]): DeviceKeys {
  return {
    async find(lookup) {
      for (const name of names(lookup)) {
        const found = await cache.get(name);
        if (found !== undefined) return { ...found, name };
      }
      return undefined;
    },
    async refresh(name) {
      const found = await cache.refresh(name);
      return found === undefined ? undefined : { ...found, name };
    },
  };
}
