/** The development sign-in can only be switched on deliberately, and never where Azure's markers are. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPortalConfig } from '../../portal/config.js';

let dir: string;
let base: Record<string, string>;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'portal-config-'));
  await writeFile(join(dir, 'users.json'), JSON.stringify({ users: [{ name: 'anna', roles: ['Device.Activate'] }] }));
  base = { DEVICE_KEYS_DIR: dir, PORTAL_FIELDS: JSON.stringify({ fields: [{ name: 'site', label: 'Site' }] }), PORTAL_DEV_USERS_FILE: join(dir, 'users.json') };
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('portal settings', () => {
  it('refuses the local host unless PORTAL_DEV_SIGN_IN=on', () => {
    expect(() => loadPortalConfig(base, 'local')).toThrow('PORTAL_DEV_SIGN_IN is not on');
    expect(() => loadPortalConfig({ ...base, PORTAL_DEV_SIGN_IN: 'yes' }, 'local')).toThrow('PORTAL_DEV_SIGN_IN must be on or off');
    expect(loadPortalConfig({ ...base, PORTAL_DEV_SIGN_IN: 'on' }, 'local').devUsers).toEqual([{ name: 'anna', roles: ['Device.Activate'] }]);
  });

  it.each(['WEBSITE_SITE_NAME', 'WEBSITE_INSTANCE_ID', 'WEBSITE_HOSTNAME'])('refuses the dev sign-in when %s says this is Azure', (marker) => {
    expect(() => loadPortalConfig({ ...base, PORTAL_DEV_SIGN_IN: 'on', [marker]: 'portal-app' }, 'local')).toThrow(`is on but ${marker} is set`);
  });

  it('refuses PORTAL_DEV_SIGN_IN=on in the Azure entry, and requires a shared CSRF secret there', () => {
    const secret = Buffer.alloc(32, 7).toString('base64');
    expect(() => loadPortalConfig({ ...base, PORTAL_DEV_SIGN_IN: 'on', PORTAL_CSRF_SECRET: secret }, 'azure')).toThrow('never runs in Azure');
    expect(() => loadPortalConfig(base, 'azure')).toThrow('PORTAL_CSRF_SECRET is required in Azure');
    expect(() => loadPortalConfig({ ...base, PORTAL_CSRF_SECRET: 'c2hvcnQ=' }, 'azure')).toThrow('at least 32 random bytes');
    const config = loadPortalConfig({ ...base, PORTAL_CSRF_SECRET: secret }, 'azure');
    expect(config.devUsers).toBeUndefined();
    expect(config.requiredRole).toBe('Device.Activate');
  });

  it('PORTAL_PORT: 7072 by default, a port number, or a start error naming it', () => {
    const on = { ...base, PORTAL_DEV_SIGN_IN: 'on' };
    expect(loadPortalConfig(on, 'local').localPort).toBe(7072);
    expect(loadPortalConfig({ ...on, PORTAL_PORT: '0' }, 'local').localPort).toBe(0);
    for (const bad of ['abc', '-1', '65536', '8080x']) expect(() => loadPortalConfig({ ...on, PORTAL_PORT: bad }, 'local')).toThrow('PORTAL_PORT must be a port number');
  });

  it('needs exactly one key store and a field declaration', () => {
    const on = { ...base, PORTAL_DEV_SIGN_IN: 'on' };
    expect(() => loadPortalConfig({ ...on, DEVICE_KEYS_DIR: undefined }, 'local')).toThrow('no key store is configured');
    expect(() => loadPortalConfig({ ...on, KEY_VAULT_URL: 'https://v.vault.azure.net' }, 'local')).toThrow('choose one key store');
    expect(() => loadPortalConfig({ ...on, PORTAL_FIELDS: undefined }, 'local')).toThrow('PORTAL_FIELDS is not set');
    expect(() => loadPortalConfig({ ...on, PORTAL_FIELDS: undefined, PORTAL_FIELDS_FILE: join(dir, 'nope.json') }, 'local')).toThrow('PORTAL_FIELDS_FILE cannot be read (ENOENT)');
  });
});
