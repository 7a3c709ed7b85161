/**
 * The device API on the wire, without the SDK: headers, error bodies and the MQTT broker's fences.
 */
import { request } from 'node:https';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalDps, type LocalDps } from '../../../dps-emulator/index.js';
import { createSas } from '../../../dps-emulator/protocol/sas.js';
import { startWebhook, type FakeWebhook } from '../helpers.js';

const KEY = Buffer.alloc(32, 5).toString('base64');
let dps: LocalDps;
let hook: FakeWebhook;

beforeAll(async () => {
  hook = await startWebhook();
  const enrollment = (id: string) => ({
    registrationId: id,
    attestation: { type: 'symmetricKey' as const, symmetricKey: { primaryKey: KEY } },
    allocationPolicy: 'custom' as const,
    customAllocationDefinition: { webhookUrl: hook.url, apiVersion: '2021-10-01' },
    iotHubs: ['hub.azure-devices.net'],
  });
  dps = await startLocalDps({ enrollments: { individualEnrollments: [enrollment('dev-a'), enrollment('dev-b')] }, retryAfterSeconds: 1 });
  hook.answer('dev-a', { status: 200, body: { iotHubHostName: 'hub.azure-devices.net' } });
  hook.answer('dev-b', { status: 200, body: { iotHubHostName: 'hub.azure-devices.net' } });
});
afterAll(async () => {
  await dps?.close();
  await hook?.close();
});

const sas = (id: string, opts: { encodeSr?: boolean; key?: string } = {}) =>
  createSas(dps.idScope, id, opts.key ?? KEY, Math.floor(Date.now() / 1000) + 300, { encodeSr: opts.encodeSr ?? false });

function call(method: string, path: string, headers: Record<string, string>, body?: string) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: any }>((resolve, reject) => {
    const req = request({ host: 'localhost', port: dps.httpsPort, method, path, headers, ca: dps.caPem }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
const JSON_CT = 'application/json; charset=utf-8';

describe('HTTPS device API', () => {
  it('accepts a Python-style SAS (sr URL-encoded): 202 with Retry-After, then 200 assigned', async () => {
    const auth = { authorization: sas('dev-a', { encodeSr: true }), 'content-type': 'application/json' };
    const put = await call('PUT', `/${dps.idScope}/registrations/dev-a/register?api-version=2021-06-01`, auth, JSON.stringify({ registrationId: 'dev-a' }));
    expect(put.status).toBe(202);
    expect(put.headers['content-type']).toBe(JSON_CT);
    expect(put.headers['retry-after']).toBe('1');
    expect(put.body).toEqual({ operationId: expect.any(String), status: 'assigning' });
    let got;
    for (let i = 0; i < 100; i++) {
      got = await call('GET', `/${dps.idScope}/registrations/dev-a/operations/${put.body.operationId}?api-version=2021-06-01`, auth);
      if (got.status !== 202) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(got!.status).toBe(200);
    expect(got!.headers['content-type']).toBe(JSON_CT);
    expect(got!.body).toMatchObject({ operationId: put.body.operationId, status: 'assigned', registrationState: { assignedHub: 'hub.azure-devices.net', etag: expect.any(String), createdDateTimeUtc: expect.any(String) } });
  });

  it.each([
    ['a wrong key', 'PUT', '/0ne00000000/registrations/dev-a/register?api-version=2019-03-31', () => sas('dev-a', { key: Buffer.alloc(32, 6).toString('base64') }), 401, 401002],
    ['no Authorization', 'PUT', '/0ne00000000/registrations/dev-a/register?api-version=2019-03-31', () => '', 401, 401002],
    ['another id scope', 'PUT', '/0ne11111111/registrations/dev-a/register?api-version=2019-03-31', () => sas('dev-a'), 401, 401002],
    ['no api-version', 'PUT', '/0ne00000000/registrations/dev-a/register', () => sas('dev-a'), 400, 400004],
    ['an unknown path', 'GET', '/0ne00000000/devices/dev-a', () => sas('dev-a'), 404, 404000],
    ['the wrong method', 'GET', '/0ne00000000/registrations/dev-a/register?api-version=2019-03-31', () => sas('dev-a'), 405, 405000],
    ['an unknown operation', 'GET', '/0ne00000000/registrations/dev-a/operations/nope?api-version=2019-03-31', () => sas('dev-a'), 404, 404201],
  ])('answers %s with a DPS error body and JSON content-type', async (_n, method, path, token, status, errorCode) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    const t = token();
    if (t) headers.authorization = t;
    const res = await call(method, path, headers, method === 'PUT' ? '{"registrationId":"dev-a"}' : undefined);
    expect(res.status).toBe(status);
    expect(res.headers['content-type']).toBe(JSON_CT);
    expect(res.body).toEqual({ errorCode, trackingId: expect.any(String), message: expect.any(String), timestampUtc: expect.any(String) });
  });

  it('a body that is not JSON is 401 for a stranger and 400 for an authenticated device', async () => {
    const path = `/${dps.idScope}/registrations/dev-a/register?api-version=2019-03-31`;
    expect((await call('PUT', path, { 'content-type': 'application/json' }, '{oops')).status).toBe(401);
    expect((await call('PUT', path, { 'content-type': 'application/json', authorization: sas('dev-a') }, '{oops')).body.errorCode).toBe(400004);
  });
});

describe('MQTT broker fences', () => {
  const connect = (id: string, username: string, password: string) =>
    mqtt.connect(`mqtts://${dps.mqttHost}`, { clientId: id, username, password, ca: dps.caPem, reconnectPeriod: 0, protocolVersion: 4 });
  const username = (id: string) => `${dps.idScope}/registrations/${id}/api-version=2019-03-31`;

  it('refuses CONNECT when the clientId is not the registration id in the username', async () => {
    const c = connect('dev-b', username('dev-a'), sas('dev-a'));
    const err = await new Promise<Error>((resolve) => c.once('error', resolve));
    expect(err.message).toMatch(/Bad username or password/);
    c.end(true);
  });

  it('answers only the requesting device, refuses other subscriptions, and drops a device publishing elsewhere', async () => {
    const a = connect('dev-a', username('dev-a'), sas('dev-a'));
    const b = connect('dev-b', username('dev-b'), sas('dev-b'));
    await Promise.all([a, b].map((c) => new Promise((r) => c.once('connect', r))));
    const granted = await new Promise<any[]>((resolve) => b.subscribe(['$dps/registrations/res/#', '$dps/registrations/PUT/#', '#'], { qos: 1 }, (_e, g) => resolve(g!)));
    expect(granted.map((g) => g.qos)).toEqual([1, 128, 128]);
    await new Promise((r) => a.subscribe('$dps/registrations/res/#', { qos: 1 }, r));

    const seenByB: string[] = [];
    b.on('message', (topic) => seenByB.push(topic));
    const answer = new Promise<{ topic: string; body: any }>((resolve) => a.once('message', (topic, p) => resolve({ topic, body: JSON.parse(p.toString()) })));
    a.publish('$dps/registrations/PUT/iotdps-register/?$rid=r1', JSON.stringify({ registrationId: 'dev-a' }), { qos: 1 });
    const got = await answer;
    expect(got.topic).toBe('$dps/registrations/res/202/?$rid=r1&retry-after=1');
    expect(got.body.status).toBe('assigning');
    await new Promise((r) => setTimeout(r, 100));
    expect(seenByB).toEqual([]);

    // A device trying to forge an answer for others is disconnected.
    const closed = new Promise((r) => b.once('close', r));
    b.publish('$dps/registrations/res/200/?$rid=r1', '{}', { qos: 1 });
    await closed;
    a.end(true);
    b.end(true);
  });

  it('refuses a register body over 64 KiB with 413, as the HTTPS API does, and keeps nothing of it', async () => {
    const a = connect('dev-a', username('dev-a'), sas('dev-a'));
    await new Promise((r) => a.once('connect', r));
    await new Promise((r) => a.subscribe('$dps/registrations/res/#', { qos: 1 }, r));
    const before = dps.registrations().length;
    const answer = new Promise<{ topic: string; body: any }>((resolve) => a.once('message', (topic, p) => resolve({ topic, body: JSON.parse(p.toString()) })));
    a.publish('$dps/registrations/PUT/iotdps-register/?$rid=big', JSON.stringify({ registrationId: 'dev-a', payload: { jwt: 'x'.repeat(70 * 1024) } }), { qos: 1 });
    const got = await answer;
    expect(got.topic).toBe('$dps/registrations/res/413/?$rid=big');
    expect(got.body).toMatchObject({ errorCode: 413000 });
    expect(dps.registrations().length).toBe(before);
    a.end(true);
  });
});
