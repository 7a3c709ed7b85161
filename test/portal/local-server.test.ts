/** `npm run portal`'s host: the development sign-in only when switched on, login CSRF, and the same rules over HTTP. */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalPortal, type LocalPortal } from '../../portal/local/server.js';
import { keyFolder } from './helpers.js';

let dir: string;
let portal: LocalPortal;
const log: string[] = [];
let env: Record<string, string>;

beforeAll(async () => {
  dir = await keyFolder({ 'press-0001': { enabled: false } });
  await writeFile(join(dir, 'users.json'), JSON.stringify({ users: [{ name: 'anna', roles: ['Device.Activate'] }, { name: 'ben', roles: [] }] }));
  env = {
    DEVICE_KEYS_DIR: dir,
    PORTAL_FIELDS: JSON.stringify({ fields: [{ name: 'site', label: 'Site', required: true }] }),
    PORTAL_DEV_SIGN_IN: 'on',
    PORTAL_DEV_USERS_FILE: join(dir, 'users.json'),
  };
  portal = await startLocalPortal({ env, port: 0, log: (l) => log.push(l) });
});
afterAll(async () => {
  await portal?.close();
  await rm(dir, { recursive: true, force: true });
});

async function signIn(user: string, headers: Record<string, string> = { 'sec-fetch-site': 'same-origin' }): Promise<{ status: number; cookie: string }> {
  const response = await fetch(`${portal.url}/signin`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({ user }).toString(),
  });
  const cookie = response.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  return { status: response.status, cookie };
}

describe('local portal host', () => {
  it('refuses to start without PORTAL_DEV_SIGN_IN=on, or when an Azure marker is set', async () => {
    await expect(startLocalPortal({ env: { ...env, PORTAL_DEV_SIGN_IN: 'off' }, port: 0 })).rejects.toThrow('PORTAL_DEV_SIGN_IN is not on');
    await expect(startLocalPortal({ env: { ...env, WEBSITE_SITE_NAME: 'portal' }, port: 0 })).rejects.toThrow('WEBSITE_SITE_NAME is set');
  });

  it('signs in a listed user, not an unknown one, and refuses a cross-site sign-in', async () => {
    expect((await signIn('anna')).status).toBe(303);
    expect((await signIn('mallory')).status).toBe(401);
    expect((await signIn('anna', { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' })).status).toBe(403);
    expect(log.map((l) => JSON.parse(l) as { who: string; outcome: string })).toContainEqual(expect.objectContaining({ who: '(unknown)', outcome: 'unknown_user' }));
  });

  it('answers 401 without a session and 403 to a user without the role, over HTTP', async () => {
    expect((await fetch(`${portal.url}/devices`)).status).toBe(401);
    // The Easy Auth header means nothing here: only Azure's front end may set it, and the local host never reads it.
    const forged = Buffer.from(JSON.stringify({ claims: [{ typ: 'name', val: 'x' }, { typ: 'roles', val: 'Device.Activate' }], role_typ: 'roles' })).toString('base64');
    expect((await fetch(`${portal.url}/devices`, { headers: { 'x-ms-client-principal': forged } })).status).toBe(401);
    const ben = await signIn('ben');
    expect((await fetch(`${portal.url}/devices`, { headers: { cookie: ben.cookie } })).status).toBe(403);
    const anna = await signIn('anna');
    const page = await fetch(`${portal.url}/devices`, { headers: { cookie: anna.cookie } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('press-0001');
    expect(await readFile(join(dir, 'press-0001.meta'), 'utf8')).toBe('{"enabled":false}');
  });
});
