/**
 * The Azure entry's adapter with the v4 library's own HttpRequest: the user comes only from App Service
 * Authentication's x-ms-client-principal (base64 JSON {auth_typ, claims[{typ,val}], name_typ, role_typ}).
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { HttpRequest, InvocationContext } from '@azure/functions';
import { afterEach, describe, expect, it } from 'vitest';
import { principalFromEasyAuthHeader } from '../../portal/core/auth.js';
import { createFunctionsAdapter, toCookie } from '../../portal/functions-adapter.js';
import { createFolderStore } from '../../portal/stores/folder.js';
import { keyFolder, portalOver } from './helpers.js';

const ROLE_TYP = 'http://schemas.microsoft.com/ws/2008/06/identity/claims/role';
function principalHeader(roles: string[], name = 'anna@maker.example'): string {
  return Buffer.from(
    JSON.stringify({
      auth_typ: 'aad',
      name_typ: 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress',
      role_typ: ROLE_TYP,
      claims: [
        { typ: 'http://schemas.microsoft.com/identity/claims/objectidentifier', val: '5f1c0000-0000-0000-0000-000000000001' },
        { typ: 'http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress', val: name },
        ...roles.map((val) => ({ typ: ROLE_TYP, val })),
      ],
    }),
  ).toString('base64');
}

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function setup() {
  const dir = await keyFolder({ 'press-0001': { enabled: false } });
  dirs.push(dir);
  const adapter = createFunctionsAdapter(portalOver(createFolderStore(dir)), '');
  const call = async (url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}) => {
    const response = await adapter(
      new HttpRequest({ url: `https://portal.azurewebsites.net${url}`, method: init.method ?? 'GET', headers: init.headers ?? {}, ...(init.body !== undefined && { body: { string: init.body } }) }),
      new InvocationContext({ logHandler: () => {} }),
    );
    return { status: response.status ?? 200, body: String(response.body ?? ''), cookies: response.cookies ?? [] };
  };
  return { dir, call };
}

describe('x-ms-client-principal', () => {
  it('reads the name, the object id and the roles by role_typ', () => {
    expect(principalFromEasyAuthHeader(principalHeader(['Device.Activate', 'Other']))).toEqual({
      id: '5f1c0000-0000-0000-0000-000000000001',
      name: 'anna@maker.example',
      roles: ['Device.Activate', 'Other'],
    });
  });

  it.each([undefined, '', 'not base64 json', Buffer.from('{"claims": 3}').toString('base64'), Buffer.from('{"claims": []}').toString('base64')])(
    'takes %j as not signed in',
    (header) => expect(principalFromEasyAuthHeader(header)).toBeUndefined(),
  );
});

describe('Azure Functions adapter', () => {
  it('401 without the platform header, 403 without the app role, 200 with it', async () => {
    const { call } = await setup();
    expect((await call('/devices')).status).toBe(401);
    expect((await call('/devices', { headers: { 'x-ms-client-principal': principalHeader([]) } })).status).toBe(403);
    const ok = await call('/devices', { headers: { 'x-ms-client-principal': principalHeader(['Device.Activate']) } });
    expect(ok.status).toBe(200);
    expect(ok.body).toContain('press-0001');
    expect(ok.cookies[0]).toMatchObject({ name: '__Host-portal-session', path: '/', httpOnly: true, secure: true, sameSite: 'Strict' });
  });

  it('activates through a same-origin form post, and refuses the same post forged cross-site', async () => {
    const { call, dir } = await setup();
    const user = { 'x-ms-client-principal': principalHeader(['Device.Activate']) };
    const page = await call('/devices/press-0001', { headers: user });
    const cookie = `${page.cookies[0]?.name}=${page.cookies[0]?.value}`;
    const csrf = /name="_csrf" value="([^"]*)"/.exec(page.body)?.[1] ?? '';
    const version = /name="_version" value="([^"]*)"/.exec(page.body)?.[1] ?? '';
    const body = new URLSearchParams({ _csrf: csrf, _version: version, location: 'Hall 3', chassis: 'CH-000001', telemetryMode: 'eco' }).toString();
    const form = { 'content-type': 'application/x-www-form-urlencoded', cookie, ...user };
    const forged = await call('/devices/press-0001/activate', { method: 'POST', headers: { ...form, origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' }, body });
    expect(forged.status).toBe(403);
    expect(JSON.parse(await readFile(join(dir, 'press-0001.meta'), 'utf8'))).toEqual({ enabled: false });
    const json = await call('/devices/press-0001/activate', { method: 'POST', headers: { ...form, 'content-type': 'application/json' }, body: '{}' });
    expect(json.status).toBe(415);
    const done = await call('/devices/press-0001/activate', { method: 'POST', headers: { ...form, origin: 'https://portal.azurewebsites.net', 'sec-fetch-site': 'same-origin' }, body });
    expect(done.status).toBe(303);
    expect(JSON.parse(await readFile(join(dir, 'press-0001.meta'), 'utf8'))).toMatchObject({ enabled: true, tags: { location: 'Hall 3' } });
  });

  it('turns the Set-Cookie strings into v4 Cookie objects', () => {
    expect(toCookie('a=b; Path=/; HttpOnly; SameSite=Strict; Secure')).toEqual({ name: 'a', value: 'b', path: '/', httpOnly: true, sameSite: 'Strict', secure: true });
  });
});
