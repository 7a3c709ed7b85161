/**
 * guardDns, which the hub and WebSocket tests rely on to prove no *.azure-devices.net name is resolved: it refuses and
 * records every other name before any query (callback and promise forms), lets loopback names through, and restores
 * node:dns. Nothing here leaves loopback: a refused name never reaches the resolver.
 */
import dns from 'node:dns';
import { describe, expect, it } from 'vitest';
import { guardDns } from './loopback-guard.js';

const lookup = (name: string) =>
  new Promise<{ error?: NodeJS.ErrnoException; address?: string }>((ok) => dns.lookup(name, {}, (error, address) => ok(error ? { error } : { address })));

describe('guardDns', () => {
  it('refuses and records a name off loopback, in both forms, and lets loopback through', async () => {
    const original = dns.lookup;
    const guard = guardDns();
    try {
      const refused = await lookup('hub-eu.azure-devices.net');
      expect(refused.error?.code).toBe('ENOTFOUND');
      expect(refused.error?.message).toBe('test guard: lookup of hub-eu.azure-devices.net refused (loopback only)');
      await expect(dns.promises.lookup('global.azure-devices-provisioning.net')).rejects.toMatchObject({ code: 'ENOTFOUND' });
      expect(await lookup('127.0.0.5')).toEqual({ address: '127.0.0.5' });
      expect(guard.resolved).toEqual(['hub-eu.azure-devices.net', 'global.azure-devices-provisioning.net']);
    } finally {
      guard.restore();
    }
    expect(dns.lookup).toBe(original);
  });
});
