/**
 * The portal core over a real key folder: who may do what, CSRF, every refusal changes nothing, what an activation
 * writes (CONTRACTS items 2 and 3), escaping, and concurrent activations of one device.
 */
import { readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { createPortal } from '../../portal/core/app.js';
import { createFolderStore } from '../../portal/stores/folder.js';
import { ANNA, BEN, FIELDS, get, keyFolder, openForm, portalOver, post } from './helpers.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function setup(devices: Parameters<typeof keyFolder>[0] = { 'press-0001': { enabled: false }, 'press-0002': { enabled: false }, 'press-0003': { enabled: true, tags: { location: 'Lyon' } } }) {
  const dir = await keyFolder(devices);
  dirs.push(dir);
  const audit: string[] = [];
  const handler = portalOver(createFolderStore(dir), audit);
  const snapshot = async () => {
    const out: Record<string, string> = {};
    for (const f of (await readdir(dir)).sort()) out[f] = await readFile(join(dir, f), 'utf8');
    return out;
  };
  return { dir, audit, handler, snapshot };
}

const VALID = { location: 'Hall 3, Lyon', chassis: 'CH-004211', telemetryMode: 'eco' };

describe('who may use the portal', () => {
  it('answers 401 to a request without a signed-in user, for pages and for actions, and changes nothing', async () => {
    const { handler, snapshot } = await setup();
    const before = await snapshot();
    expect((await handler(get('/devices', undefined))).status).toBe(401);
    const answer = await handler(post('/devices/press-0001/activate', undefined, { ...VALID }));
    expect(answer.status).toBe(401);
    expect(answer.body).toContain('/.auth/login/aad');
    expect(await snapshot()).toEqual(before);
  });

  it('answers 403 to a signed-in user without the Device.Activate role, logs the attempt, and changes nothing', async () => {
    const { handler, snapshot, audit } = await setup();
    const before = await snapshot();
    expect((await handler(get('/devices', BEN))).status).toBe(403);
    const answer = await handler(post('/devices/press-0001/activate', BEN, { ...VALID }));
    expect(answer.status).toBe(403);
    expect(answer.body).toContain('Device.Activate');
    expect(await snapshot()).toEqual(before);
    expect(JSON.parse(audit.at(-1) ?? '{}')).toMatchObject({ who: BEN.name, action: 'activate', device: 'press-0001', outcome: 'forbidden_no_role' });
  });
});

describe('cross-site request forgery', () => {
  it('refuses a POST that a browser marks cross-site, even with a valid token and cookie', async () => {
    const { handler, snapshot, audit } = await setup();
    const { cookie, csrf, version } = await openForm(handler, '/devices/press-0001', ANNA);
    const before = await snapshot();
    const forged = await handler(post('/devices/press-0001/activate', ANNA, { ...VALID, _csrf: csrf, _version: version }, { cookie, 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' }));
    expect(forged.status).toBe(403);
    expect(await snapshot()).toEqual(before);
    expect(JSON.parse(audit.at(-1) ?? '{}')).toMatchObject({ outcome: 'refused_cross_site', device: 'press-0001' });
  });

  it('refuses a POST from another Origin without Sec-Fetch-Site (an older browser)', async () => {
    const { handler, snapshot } = await setup();
    const { cookie, csrf, version } = await openForm(handler, '/devices/press-0001', ANNA);
    const before = await snapshot();
    const forged = await handler(post('/devices/press-0001/activate', ANNA, { ...VALID, _csrf: csrf, _version: version }, { cookie, origin: 'https://evil.example', 'sec-fetch-site': undefined as unknown as string }));
    expect(forged.status).toBe(403);
    expect(await snapshot()).toEqual(before);
  });

  it('refuses a same-origin POST without the token, with a token from another session, or without the session cookie', async () => {
    const { handler, snapshot } = await setup();
    const mine = await openForm(handler, '/devices/press-0001', ANNA);
    const other = await openForm(handler, '/devices/press-0001', ANNA);
    const before = await snapshot();
    const attempts = [
      { ...VALID, _version: mine.version },
      { ...VALID, _version: mine.version, _csrf: other.csrf },
    ];
    for (const form of attempts) expect((await handler(post('/devices/press-0001/activate', ANNA, form, { cookie: mine.cookie }))).status).toBe(403);
    expect((await handler(post('/devices/press-0001/activate', ANNA, { ...VALID, _csrf: mine.csrf, _version: mine.version }))).status).toBe(403);
    expect(await snapshot()).toEqual(before);
  });

  it('sets the session cookie HttpOnly, SameSite=Strict, Secure and __Host- in Azure', async () => {
    const { handler } = await setup();
    const { page } = await openForm(handler, '/devices', ANNA);
    expect(page.cookies[0]).toMatch(/^__Host-portal-session=[A-Za-z0-9_-]+; Path=\/; HttpOnly; SameSite=Strict; Secure$/);
    expect(page.headers['content-security-policy']).toContain("form-action 'self'");
    expect(page.headers['content-security-policy']).toContain("frame-ancestors 'none'");
  });
});

describe('pages', () => {
  it('lists the devices awaiting activation, searchable by id, and not the active ones', async () => {
    const { handler } = await setup();
    const all = await handler(get('/devices', ANNA));
    expect(all.status).toBe(200);
    expect(all.body).toContain('press-0001');
    expect(all.body).toContain('press-0002');
    expect(all.body).not.toContain('press-0003');
    const found = await handler(get('/devices?q=0002', ANNA));
    expect(found.body).toContain('press-0002');
    expect(found.body).not.toContain('press-0001<');
    const active = await handler(get('/devices?q=press-0003', ANNA));
    expect(active.body).toContain('press-0003 is already active');
  });

  it('shows a device with its state, and the form only while it awaits activation', async () => {
    const { handler } = await setup();
    const awaiting = await handler(get('/devices/press-0001', ANNA));
    expect(awaiting.body).toContain('awaiting activation');
    expect(awaiting.body).toContain('id="activate"');
    const active = await handler(get('/devices/PRESS-0003', ANNA));
    expect(active.status).toBe(200);
    expect(active.body).toContain('id="state" class="state active"');
    expect(active.body).toContain('Lyon');
    expect(active.body).not.toContain('id="activate"');
    expect(active.body).toContain('revoke');
  });

  it('escapes what it shows: a tag value or a search query cannot inject markup', async () => {
    const { handler } = await setup({ 'press-0009': { enabled: true, tags: { location: '<script>alert(1)</script>"' } } });
    const page = await handler(get('/devices/press-0009', ANNA));
    expect(page.body).not.toContain('<script>');
    expect(page.body).toContain('&lt;script&gt;alert(1)&lt;/script&gt;&quot;');
    const search = await handler(get('/devices?q=%22%3E%3Cimg%20src%3Dx%3E', ANNA));
    expect(search.body).not.toContain('"><img');
    expect(search.body).toContain('&quot;&gt;&lt;img src=x&gt;');
  });
});

describe('activation', () => {
  it('writes <id>.meta atomically with enabled true and the tags (desired.<prop> for a desired property), then redirects', async () => {
    const { handler, dir, audit } = await setup();
    const { cookie, csrf, version } = await openForm(handler, '/devices/press-0001', ANNA);
    const answer = await handler(post('/devices/press-0001/activate', ANNA, { ...VALID, _csrf: csrf, _version: version }, { cookie }));
    expect(answer.status).toBe(303);
    expect(answer.headers.location).toBe('/devices/press-0001?done=activated');
    expect(JSON.parse(await readFile(join(dir, 'press-0001.meta'), 'utf8'))).toEqual({
      enabled: true,
      tags: { location: 'Hall 3, Lyon', chassis: 'CH-004211', 'desired.telemetryMode': 'eco' },
    });
    expect((await readdir(dir)).filter((f) => f.startsWith('.'))).toEqual([]);
    expect(JSON.parse(audit.at(-1) ?? '{}')).toEqual(expect.objectContaining({ who: ANNA.name, action: 'activate', device: 'press-0001', outcome: 'activated' }));
    const after = await handler(get('/devices/press-0001?done=activated', ANNA, cookie));
    expect(after.body).toContain('press-0001 is activated.');
  });

  it('counts a key without <id>.meta as active (absent = enabled) and refuses to activate it again', async () => {
    const { handler, snapshot } = await setup({ 'press-0100': null });
    const { cookie, csrf } = await openForm(handler, '/devices/press-0100/revoke', ANNA);
    const before = await snapshot();
    const answer = await handler(post('/devices/press-0100/activate', ANNA, { ...VALID, _csrf: csrf, _version: 'absent' }, { cookie }));
    expect(answer.status).toBe(409);
    expect(answer.body).toContain('already active');
    expect(await snapshot()).toEqual(before);
  });

  it('refuses a field failing its rule with the field named, keeps what was typed, and changes nothing', async () => {
    const { handler, snapshot, audit } = await setup();
    const { cookie, csrf, version } = await openForm(handler, '/devices/press-0001', ANNA);
    const before = await snapshot();
    const answer = await handler(post('/devices/press-0001/activate', ANNA, { ...VALID, chassis: 'CH-12', _csrf: csrf, _version: version }, { cookie }));
    expect(answer.status).toBe(400);
    expect(answer.body).toContain('Chassis number does not have the expected form (CH- and six digits).');
    expect(answer.body).toContain('value="CH-12"');
    expect(answer.body).toContain('value="Hall 3, Lyon"');
    expect(await snapshot()).toEqual(before);
    expect(JSON.parse(audit.at(-1) ?? '{}').outcome).toBe('invalid_fields:chassis');
  });

  it('refuses an unknown id (404) and an already active device (409), changing nothing', async () => {
    const { handler, snapshot } = await setup();
    const { cookie, csrf } = await openForm(handler, '/devices/press-0001', ANNA);
    const before = await snapshot();
    const unknown = await handler(post('/devices/press-9999/activate', ANNA, { ...VALID, _csrf: csrf, _version: 'x' }, { cookie }));
    expect(unknown.status).toBe(404);
    expect(unknown.body).toContain('No device key is registered for press-9999');
    expect((await handler(get('/devices/press-9999', ANNA))).status).toBe(404);
    const active = await handler(post('/devices/press-0003/activate', ANNA, { ...VALID, _csrf: csrf, _version: 'x' }, { cookie }));
    expect(active.status).toBe(409);
    expect(active.body).toContain('press-0003 is already active; nothing was changed.');
    expect((await handler(get('/devices/..%2F..%2Fetc', ANNA))).status).toBe(400);
    expect(await snapshot()).toEqual(before);
  });

  it('two concurrent activations of one device: one wins whole, the other is told, no update is lost or mixed', async () => {
    const { handler, dir } = await setup();
    const a = await openForm(handler, '/devices/press-0001', ANNA);
    const b = await openForm(handler, '/devices/press-0001', ANNA);
    const [first, second] = await Promise.all([
      handler(post('/devices/press-0001/activate', ANNA, { ...VALID, _csrf: a.csrf, _version: a.version }, { cookie: a.cookie })),
      handler(post('/devices/press-0001/activate', ANNA, { location: 'Turin', chassis: 'CH-000002', telemetryMode: 'standard', _csrf: b.csrf, _version: b.version }, { cookie: b.cookie })),
    ]);
    expect([first.status, second.status].sort()).toEqual([303, 409]);
    const meta = JSON.parse(await readFile(join(dir, 'press-0001.meta'), 'utf8')) as { tags: Record<string, string> };
    const winner = first.status === 303 ? VALID : { location: 'Turin', chassis: 'CH-000002', telemetryMode: 'standard' };
    expect(meta.tags).toEqual({ location: winner.location, chassis: winner.chassis, 'desired.telemetryMode': winner.telemetryMode });
  });

  it('refuses a form opened before another activation and revoke (stale version), changing nothing', async () => {
    const { handler, dir } = await setup();
    const stale = await openForm(handler, '/devices/press-0001', ANNA);
    const fresh = await openForm(handler, '/devices/press-0001', ANNA);
    expect((await handler(post('/devices/press-0001/activate', ANNA, { ...VALID, _csrf: fresh.csrf, _version: fresh.version }, { cookie: fresh.cookie }))).status).toBe(303);
    const confirm = await openForm(handler, '/devices/press-0001/revoke', ANNA);
    expect((await handler(post('/devices/press-0001/revoke', ANNA, { confirm: 'yes', _csrf: confirm.csrf, _version: confirm.version }, { cookie: confirm.cookie }))).status).toBe(303);
    const written = await readFile(join(dir, 'press-0001.meta'), 'utf8');
    const answer = await handler(post('/devices/press-0001/activate', ANNA, { ...VALID, location: 'Elsewhere', _csrf: stale.csrf, _version: stale.version }, { cookie: stale.cookie }));
    expect(answer.status).toBe(409);
    expect(answer.body).toContain('changed since this page was opened');
    expect(await readFile(join(dir, 'press-0001.meta'), 'utf8')).toBe(written);
  });
});

describe('revocation', () => {
  it('asks for confirmation, then disables the key and keeps its tags', async () => {
    const { handler, dir, snapshot, audit } = await setup();
    const confirm = await openForm(handler, '/devices/press-0003/revoke', ANNA);
    expect(confirm.page.body).toContain('Yes, revoke press-0003');
    const before = await snapshot();
    const unconfirmed = await handler(post('/devices/press-0003/revoke', ANNA, { _csrf: confirm.csrf, _version: confirm.version }, { cookie: confirm.cookie }));
    expect(unconfirmed.status).toBe(400);
    expect(await snapshot()).toEqual(before);
    const done = await handler(post('/devices/press-0003/revoke', ANNA, { confirm: 'yes', _csrf: confirm.csrf, _version: confirm.version }, { cookie: confirm.cookie }));
    expect(done.status).toBe(303);
    expect(JSON.parse(await readFile(join(dir, 'press-0003.meta'), 'utf8'))).toEqual({ enabled: false, tags: { location: 'Lyon' } });
    expect(JSON.parse(audit.at(-1) ?? '{}')).toMatchObject({ action: 'revoke', device: 'press-0003', outcome: 'revoked' });
    const again = await handler(post('/devices/press-0003/revoke', ANNA, { confirm: 'yes', _csrf: confirm.csrf, _version: confirm.version }, { cookie: confirm.cookie }));
    expect(again.status).toBe(409);
  });
});

describe('a store that fails', () => {
  it('answers 503 saying only that the store is unavailable, and hands the error to the operator log', async () => {
    const errors: unknown[] = [];
    const failing = createPortal({
      store: {
        description: 'key folder',
        listDisabled: () => Promise.reject(new Error('EACCES /secret/path/devices')),
        get: () => Promise.reject(new Error('EACCES /secret/path/devices')),
        update: () => Promise.reject(new Error('unreachable')),
      },
      fields: FIELDS,
      requiredRole: 'Device.Activate',
      csrfSecret: randomBytes(32),
      base: '',
      secureCookies: true,
      signInUrl: '/signin',
      audit: () => {},
      randomNonce: () => randomBytes(18).toString('base64url'),
      onError: (e) => errors.push(e),
    });
    const answer = await failing(get('/devices/press-0001', ANNA));
    expect(answer.status).toBe(503);
    expect(answer.body).toContain('The key folder cannot be reached right now; nothing was changed.');
    expect(answer.body).not.toContain('/secret/path');
    expect(errors).toHaveLength(1);
  });
});

describe('audit log', () => {
  it('has one line per action with who, what, which device, outcome, and never the token or the cookie', async () => {
    const { handler, audit } = await setup();
    const { cookie, csrf, version } = await openForm(handler, '/devices/press-0001', ANNA);
    await handler(post('/devices/press-0001/activate', ANNA, { ...VALID, chassis: 'bad', _csrf: csrf, _version: version }, { cookie }));
    await handler(post('/devices/press-0001/activate', ANNA, { ...VALID, _csrf: csrf, _version: version }, { cookie }));
    expect(audit).toHaveLength(2);
    for (const line of audit) {
      expect(Object.keys(JSON.parse(line) as object).sort()).toEqual(['action', 'at', 'device', 'event', 'outcome', 'who']);
      expect(line).not.toContain(csrf);
      expect(line).not.toContain(cookie.split('=')[1]);
    }
  });
});
