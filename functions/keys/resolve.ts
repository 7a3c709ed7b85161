import type { KeyCache } from './cache.js';
import type { KeyLookup, ResolvedKeySet } from './types.js';

/**
 * Finds a registration's key set: the first name (device, then group, then fleet) under which anything is stored
 * wins. A disabled device entry is a find too: it must refuse the device, not fall through to a fleet key.
 */
export interface DeviceKeys {
  find(lookup: KeyLookup): Promise<ResolvedKeySet | undefined>;
  refresh(name: string): Promise<ResolvedKeySet | undefined>;
}

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
