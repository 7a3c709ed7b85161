/**
 * Hostile AllocationRequests (issue 6, part 2), over real HTTP through the local host on port 0: each is answered
 * 400 or 403 (never 500, never 200), whatever the body, its size, its encoding or its framing. Every answer and log
 * line is kept and checked for secrets at the end.
 */
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportPKCS8 } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { MAX_REQUEST_BYTES } from '../../functions/core/policy.js';
import type { ReasonCode } from '../../functions/core/reasons.js';
import { startLocalHost, type LocalHost } from '../../local-host/server.js';
import { allocationRequest, deviceClaims, deviceToken, HUBS, ID_SCOPE, makeDevice, signToken, type TestDevice } from '../support/devices.js';
import { keyObject, LeakWatch, post, rawHttp, signRaw, type HttpAnswer } from '../support/security.js';

const NOW = Date.parse('2026-11-21T12:00:00Z');
const now = Math.floor(NOW / 1000);
const FUNCTION_KEY = 'fk-security-suite-3b9f0c1d7e5a4f2e8c6b';
const SAS = 'SharedAccessSignature sr=0ne00ABC123%2Fregistrations%2Fsensor-0042&sig=q3Vx0r0bZ9S2oTQ5Y0vC4n8j5Yq0wJp8u7ZxYk2mU1E%3D&se=1900000000&skn=registration';
const SYMMETRIC_KEY = 'Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=';

const watch = new LeakWatch();
const logs: string[] = [];
let alice: TestDevice;
let mallory: TestDevice;
let host: LocalHost;
let prototypeKeys: string[];

beforeAll(async () => {
  prototypeKeys = Object.getOwnPropertyNames(Object.prototype).sort();
  [alice, mallory] = await Promise.all([makeDevice('sensor-0042'), makeDevice('victim')]);
  // parent/victim.pem holds mallory's key beside DEVICE_KEYS_DIR=parent/keys: a traversal out of the folder would find it.
  const parent = await mkdtemp(join(tmpdir(), 'security-traversal-'));
  const dir = join(parent, 'keys');
  await mkdir(dir);
  await writeFile(join(dir, `${alice.id}.pem`), alice.publicPem);
  for (const name of ['victim.pem', 'keys.pem', 'passwd.pem', '.pem']) await writeFile(join(parent, name), mallory.publicPem);

  host = await startLocalHost({
    env: { DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: ID_SCOPE, WEBHOOK_FUNCTION_KEY: FUNCTION_KEY },
    port: 0,
    log: (line) => {
      logs.push(line);
      watch.saw('local host log', line);
    },
    overrides: { now: () => NOW },
  });
  watch.secret('function key', FUNCTION_KEY);
  watch.secret('SAS token', SAS);
  watch.secret('SAS signature', 'q3Vx0r0bZ9S2oTQ5Y0vC4n8j5Yq0wJp8u7ZxYk2mU1E');
  watch.secret('DPS symmetric key', SYMMETRIC_KEY);
  for (const d of [alice, mallory]) {
    watch.pem(`${d.id} public key`, d.publicPem);
    watch.pem(`${d.id} private key`, await exportPKCS8(d.privateKey));
  }
});
afterAll(() => host?.close());

/** POSTs with the function key; records the answer. */
async function send(body: string | Buffer | readonly (string | Buffer)[], options: Parameters<typeof post>[2] = {}): Promise<HttpAnswer> {
  const answer = await post(host.url, body, { ...options, headers: { 'x-functions-key': FUNCTION_KEY, ...options.headers } });
  watch.saw('HTTP answer', { status: answer.status, headers: answer.headers, text: answer.text });
  return answer;
}

/** A valid request of alice's, with the secrets a careless webhook could echo riding along. */
async function validRequest(): Promise<Record<string, unknown>> {
  const token = await deviceToken(alice, now);
  watch.token('alice token', token);
  const request = allocationRequest({ registrationId: alice.id, token });
  const context = request.deviceRuntimeContext as Record<string, unknown>;
  context.symmetricKey = { primaryKey: SYMMETRIC_KEY };
  context.authorization = SAS;
  (request.individualEnrollment as Record<string, unknown>).customAllocationDefinition = {
    webhookUrl: `https://app.azurewebsites.net/api/validatejwt?code=${FUNCTION_KEY}`,
    apiVersion: '2021-10-01',
  };
  return request;
}

function expectRefused(answer: HttpAnswer, code?: ReasonCode): void {
  expect([400, 403], `status ${answer.status} ${answer.text.slice(0, 200)}`).toContain(answer.status);
  expect(answer.headers['content-type']).toMatch(/^application\/json/);
  if (code !== undefined) expect(answer.body?.code).toBe(code);
}

test('baseline: a valid request over HTTP is assigned', async () => {
  const answer = await send(JSON.stringify(await validRequest()));
  expect(answer.status).toBe(200);
  expect(HUBS).toContain(answer.body?.iotHubHostName);
});

describe('the caller (function key, method, route)', () => {
  test('no function key, a wrong one, or one differing in case is 401 and the key is not logged', async () => {
    const body = JSON.stringify(await validRequest());
    for (const headers of [{} as Record<string, string>, { 'x-functions-key': 'wrong' }, { 'x-functions-key': FUNCTION_KEY.toUpperCase() }, { 'x-functions-key': `${FUNCTION_KEY}x` }, { 'x-functions-key': FUNCTION_KEY.slice(0, -1) }]) {
      const answer = await post(host.url, body, { headers });
      watch.saw('HTTP answer', answer.text);
      expect(answer.status).toBe(401);
    }
    const viaQuery = await post(`${host.url}?code=${encodeURIComponent(FUNCTION_KEY)}`, body);
    watch.saw('HTTP answer', viaQuery.text);
    expect(viaQuery.status).toBe(200);
  });

  test('other methods and routes are refused without reaching the webhook', async () => {
    expect((await send('', { method: 'GET' })).status).toBe(405);
    const other = await post(host.url.replace('/api/validatejwt', '/api/../etc/passwd'), '{}', { headers: { 'x-functions-key': FUNCTION_KEY } });
    expect(other.status).toBe(404);
  });
});

describe('bodies that are not a JSON AllocationRequest', () => {
  const cases: Array<[string, string | Buffer, ReasonCode]> = [
    ['empty', '', 'request_not_json'],
    ['text', 'hello', 'request_not_json'],
    ['truncated JSON', '{"deviceRuntimeContext":', 'request_not_json'],
    ['a byte-order mark before the JSON', '\uFEFF{}', 'request_not_json'],
    ['invalid UTF-8', Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), 'request_not_json'],
    ['JSON null', 'null', 'request_invalid'],
    ['a JSON string', '"sensor-0042"', 'request_invalid'],
    ['a JSON number', '42', 'request_invalid'],
    ['a JSON array of a valid request', '[{}]', 'request_invalid'],
    ['an empty object', '{}', 'request_invalid'],
  ];
  test.each(cases)('%s', async (_name, body, code) => expectRefused(await send(body), code));

  test.each([
    ['text/plain'],
    ['application/x-www-form-urlencoded'],
    ['multipart/form-data; boundary=x'],
    ['application/jsonp'],
    ['application/json-patch+json'],
    ['text/json'],
  ])('content type %s is refused even with a valid body', async (contentType) => {
    expectRefused(await send(JSON.stringify(await validRequest()), { headers: { 'content-type': contentType } }), 'request_content_type');
  });

  test('application/json with parameters, in any case, is JSON; an absent content type is taken as JSON', async () => {
    expect((await send(JSON.stringify(await validRequest()), { headers: { 'content-type': 'Application/JSON; charset=utf-8' } })).status).toBe(200);
    expect((await send(JSON.stringify(await validRequest()), { omitContentType: true })).status).toBe(200);
  });
});

describe(`size limit (${MAX_REQUEST_BYTES} bytes) and framing`, () => {
  const padded = async (bytes: number) => {
    const request = await validRequest();
    const text = JSON.stringify({ ...request, filler: '' });
    return JSON.stringify({ ...request, filler: 'x'.repeat(bytes - Buffer.byteLength(text)) });
  };

  test('a body of exactly the limit is read; one byte more is 413', async () => {
    const atLimit = await padded(MAX_REQUEST_BYTES);
    expect(Buffer.byteLength(atLimit)).toBe(MAX_REQUEST_BYTES);
    expect((await send(atLimit)).status).toBe(200);
    const over = await padded(MAX_REQUEST_BYTES + 1);
    const answer = await send(over);
    expect(answer.status).toBe(413);
    expect(answer.body?.code).toBe('request_too_large');
  });

  test('a declared content-length over the limit is 413 before the body is read', async () => {
    const answer = await rawHttp(host.port,
      `POST /api/validatejwt HTTP/1.1\r\nhost: 127.0.0.1\r\nx-functions-key: ${FUNCTION_KEY}\r\ncontent-type: application/json\r\ncontent-length: 1000000000\r\n\r\n{"a":`);
    watch.saw('raw HTTP answer', answer.text);
    expect(answer.status).toBe(413);
  });

  test('chunked transfer encoding without content-length: 10 MiB is cut off at the limit with 413', async () => {
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    const answer = await send([Buffer.from('{"a":"'), ...Array.from({ length: 160 }, () => chunk)]);
    expect(answer.status).toBe(413);
    expect(answer.body?.code).toBe('request_too_large');
  });

  test('chunked transfer encoding of a valid request under the limit is read', async () => {
    const text = JSON.stringify(await validRequest());
    expect((await send([text.slice(0, 100), text.slice(100, 1000), text.slice(1000)])).status).toBe(200);
  });

  test('a content-length smaller than the body: only the declared bytes are the body (400), the rest is not a request', async () => {
    const text = JSON.stringify(await validRequest()) + ' '.repeat(100_000);
    const answer = await rawHttp(host.port,
      `POST /api/validatejwt HTTP/1.1\r\nhost: 127.0.0.1\r\nx-functions-key: ${FUNCTION_KEY}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n${text}`);
    watch.saw('raw HTTP answer', answer.text);
    expect(answer.status).toBe(400);
  });

  test('both content-length and transfer-encoding (request smuggling) is refused with 400', async () => {
    const answer = await rawHttp(host.port,
      `POST /api/validatejwt HTTP/1.1\r\nhost: 127.0.0.1\r\nx-functions-key: ${FUNCTION_KEY}\r\ncontent-type: application/json\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`);
    expect(answer.status).toBe(400);
  });
});

describe('deep nesting inside the limit (no recursion over input)', () => {
  test('32 000 nested arrays as the whole body: 400', async () => {
    expectRefused(await send(`${'['.repeat(32_000)}${']'.repeat(32_000)}`), 'request_invalid');
  });
  test('65 000 unclosed arrays: 400', async () => {
    expectRefused(await send('['.repeat(65_000)), 'request_not_json');
  });
  test('32 000 nested arrays as the jwt: 403', async () => {
    const request = await validRequest();
    const text = JSON.stringify(request).replace(/"jwt":"[^"]+"/, `"jwt":${'['.repeat(30_000)}${']'.repeat(30_000)}`);
    expectRefused(await send(text), 'token_malformed');
  });
  test('10 000 nested objects as linkedHubs: 400', async () => {
    const text = JSON.stringify(await validRequest()).replace(/"linkedHubs":\[[^\]]*\]/, `"linkedHubs":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`);
    expectRefused(await send(text), 'request_invalid');
  });
});

describe('__proto__, constructor and prototype keys', () => {
  const inheritedOnly: Array<[string, (r: Record<string, unknown>, token: string) => string, ReasonCode]> = [
    ['the enrollment only under __proto__', (r) => {
      const { individualEnrollment, ...rest } = r;
      return JSON.stringify(rest).replace(/^\{/, `{"__proto__":{"individualEnrollment":${JSON.stringify(individualEnrollment)}},`);
    }, 'request_invalid'],
    ['linkedHubs only under __proto__', (r) => {
      const { linkedHubs, ...rest } = r;
      return JSON.stringify(rest).replace(/^\{/, `{"__proto__":{"linkedHubs":${JSON.stringify(linkedHubs)}},`);
    }, 'request_invalid'],
    ['registrationId only under __proto__', (r) => JSON.stringify(r).replace(/"registrationId":"sensor-0042","symmetricKey"/, '"__proto__":{"registrationId":"sensor-0042"},"symmetricKey"'), 'request_invalid'],
    ['the jwt only under payload.__proto__', (r, token) => JSON.stringify(r).replace(`{"jwt":"${token}"}`, `{"__proto__":{"jwt":"${token}"}}`), 'token_missing'],
    ['the jwt only under payload.constructor.prototype', (r, token) => JSON.stringify(r).replace(`{"jwt":"${token}"}`, `{"constructor":{"prototype":{"jwt":"${token}"}}}`), 'token_missing'],
  ];
  test.each(inheritedOnly)('%s: an inherited member is not a member', async (_name, build, code) => {
    const request = await validRequest();
    const token = ((request.deviceRuntimeContext as Record<string, unknown>).payload as { jwt: string }).jwt;
    const text = build(request, token);
    expect(text).not.toBe(JSON.stringify(request));
    expectRefused(await send(text), code);
  });

  test('a claim only under __proto__ of the claims set is not a claim', async () => {
    const key = await keyObject(alice.privateKey);
    const claims = deviceClaims(alice, now, { sub: undefined, registration_id: undefined });
    const body = JSON.stringify(claims).replace(/^\{/, '{"__proto__":{"sub":"sensor-0042","registration_id":"sensor-0042"},');
    const token = signRaw(key, { alg: 'ES256' }, body);
    watch.token('proto-claims token', token);
    expectRefused(await send(JSON.stringify(allocationRequest({ registrationId: alice.id, token }))), 'token_claim_missing');
    const headerProto = signRaw(key, Buffer.from('{"__proto__":{"alg":"ES256"},"typ":"JWT"}').toString('base64url'), deviceClaims(alice, now));
    expectRefused(await send(JSON.stringify(allocationRequest({ registrationId: alice.id, token: headerProto }))), 'token_algorithm_not_allowed');
  });

  test('pollution keys at every level of a valid request change nothing, and Object.prototype stays clean', async () => {
    const junk = '"__proto__":{"polluted":"yes","isAdmin":true,"linkedHubs":["evil.example.com"]},"constructor":{"prototype":{"polluted":"yes"}},"prototype":{"polluted":"yes"},';
    const text = JSON.stringify(await validRequest()).replace(/\{(?=")/g, `{${junk}`);
    expect(text.split('__proto__').length).toBeGreaterThan(5);
    const answer = await send(text);
    expect(answer.status).toBe(200);
    expect(HUBS).toContain(answer.body?.iotHubHostName);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(prototypeKeys);
  });
});

test("pollution keys in the enrollment's initialTwin are copied as plain data, and cannot forge the provisioning tag", async () => {
  const request = await validRequest();
  const twin = '{"tags":{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}},"site":"plant-7","provisioning":{"keySource":"forged"}},"properties":{"desired":{"__proto__":{"polluted":"yes"},"interval":30}}}';
  const text = JSON.stringify(request).replace('"individualEnrollment":{', `"individualEnrollment":{"initialTwin":${twin},`);
  const answer = await send(text);
  expect(answer.status).toBe(200);
  const tags = (answer.body?.initialTwin as { tags: Record<string, unknown> }).tags;
  expect(tags.site).toBe('plant-7');
  expect(tags.provisioning).toMatchObject({ keySource: `${alice.id}.pem`, enrollmentType: 'individual' });
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(prototypeKeys);
});

describe('enrollments, hubs and ids', () => {
  const mutate = (change: (r: Record<string, unknown>) => void) => async () => {
    const request = await validRequest();
    change(request);
    return JSON.stringify(request);
  };
  const context = (r: Record<string, unknown>) => r.deviceRuntimeContext as Record<string, unknown>;
  const cases: Array<[string, () => Promise<string>, ReasonCode]> = [
    ['both enrollments', mutate((r) => { r.enrollmentGroup = { enrollmentGroupId: 'factory-line-7' }; }), 'request_invalid'],
    ['neither enrollment', mutate((r) => { delete r.individualEnrollment; }), 'request_invalid'],
    ['both enrollments null', mutate((r) => { r.individualEnrollment = null; r.enrollmentGroup = null; }), 'request_invalid'],
    ['an enrollment that is an array', mutate((r) => { r.individualEnrollment = [{ registrationId: 'sensor-0042' }]; }), 'request_invalid'],
    ['an individual enrollment for another id', mutate((r) => { (r.individualEnrollment as Record<string, unknown>).registrationId = 'victim'; }), 'request_invalid'],
    ['a group id with a slash', mutate((r) => { delete r.individualEnrollment; r.enrollmentGroup = { enrollmentGroupId: '../victim' }; }), 'request_invalid'],
    ['no deviceRuntimeContext', mutate((r) => { delete r.deviceRuntimeContext; }), 'request_invalid'],
    ['linkedHubs empty', mutate((r) => { r.linkedHubs = []; }), 'request_invalid'],
    ['linkedHubs missing', mutate((r) => { delete r.linkedHubs; }), 'request_invalid'],
    ['linkedHubs a string', mutate((r) => { r.linkedHubs = HUBS[0]; }), 'request_invalid'],
    ['linkedHubs an object', mutate((r) => { r.linkedHubs = { 0: HUBS[0], length: 1 }; }), 'request_invalid'],
    ['linkedHubs of numbers', mutate((r) => { r.linkedHubs = [42]; }), 'request_invalid'],
    ['linkedHubs with null', mutate((r) => { r.linkedHubs = [HUBS[0], null]; }), 'request_invalid'],
    ['linkedHubs with 65 hubs', mutate((r) => { r.linkedHubs = Array.from({ length: 65 }, (_, i) => `hub-${i}.azure-devices.net`); }), 'request_invalid'],
    ['linkedHubs with 5 000 hubs', mutate((r) => { r.linkedHubs = Array.from({ length: 5000 }, (_, i) => `h${i}.net`); }), 'request_invalid'],
    ...[
      '', ' ', 'hub eu.azure-devices.net', 'https://hub-eu.azure-devices.net', 'hub-eu.azure-devices.net:443', 'hub-eu.azure-devices.net/',
      'hub-eu.azure-devices.net.', '-hub.azure-devices.net', 'hub_eu.azure-devices.net', 'hub-\u0435u.azure-devices.net', 'hub-eu.azure-devices.net\u0000',
      'user@hub-eu.azure-devices.net', `${'a'.repeat(64)}.net`, `${'a.'.repeat(130)}net`, '../../etc/passwd',
    ].map((hub): [string, () => Promise<string>, ReasonCode] => [`a hub name that is not a host name: ${JSON.stringify(hub)}`, mutate((r) => { r.linkedHubs = [HUBS[0], hub]; }), 'request_invalid']),
    ['currentIotHubHostName not a host name', mutate((r) => { context(r).currentIotHubHostName = 'https://evil.example.com/'; }), 'request_invalid'],
    ['currentIotHubHostName a number', mutate((r) => { context(r).currentIotHubHostName = 7; }), 'request_invalid'],
    ...['x', 42, true, [], ['eyJ'], 'null'].map((payload): [string, () => Promise<string>, ReasonCode] => [`a payload that is not an object: ${JSON.stringify(payload)}`, mutate((r) => { context(r).payload = payload; }), 'token_missing']),
    ['a payload that is an array holding the jwt object', mutate((r) => { context(r).payload = [context(r).payload]; }), 'token_missing'],
    ['payload.jwt null', mutate((r) => { context(r).payload = { jwt: null }; }), 'token_missing'],
    ['payload.jwt an object', mutate((r) => { context(r).payload = { jwt: { token: 'x' } }; }), 'token_malformed'],
    ['payload.jwt an array of the token', mutate((r) => { const p = context(r).payload as { jwt: string }; p.jwt = [p.jwt] as never; }), 'token_malformed'],
    ['payload.JWT (another letter case)', mutate((r) => { const p = context(r).payload as Record<string, unknown>; p.JWT = p.jwt; delete p.jwt; }), 'token_missing'],
  ];
  test.each(cases)('%s', async (_name, build, code) => expectRefused(await send(await build()), code));

  test('a currentIotHubHostName that DPS did not link is never answered', async () => {
    const request = await validRequest();
    (request.deviceRuntimeContext as Record<string, unknown>).currentIotHubHostName = 'evil.example.com';
    const answer = await send(JSON.stringify(request));
    expect(answer.status).toBe(200);
    expect(HUBS).toContain(answer.body?.iotHubHostName);
  });
});

describe('registration ids that could reach outside DEVICE_KEYS_DIR', () => {
  // The parent of DEVICE_KEYS_DIR holds victim.pem, keys.pem, passwd.pem and .pem with mallory's key, and each
  // token below is validly signed by mallory for exactly the id sent: only a traversal could admit it.
  const hostile = [
    '../victim', '..', '../', './victim', 'keys/../../victim', '..\\victim', '%2e%2e%2fvictim', 'victim\u0000', 'victim\u0000.pem',
    '/etc/passwd', '../passwd', 'a/b', '\u212Aeys', 'vict\u0131m', 'sensor\u20110042', 'sensor-0042\u200B', 'x'.repeat(129), '', ' ', 'victim ',
    'ends-with-dot.', 'ends:with:colon:', 'ends_with_', '\u0000',
  ];
  test.each(hostile.map((id) => [JSON.stringify(id).slice(0, 40), id]))('registration id %s is 400 before any key lookup', async (_label, id) => {
    const token = await signToken(mallory.privateKey, deviceClaims({ ...mallory, id }, now));
    watch.token('mallory token', token);
    const answer = await send(JSON.stringify(allocationRequest({ registrationId: id, token })));
    expectRefused(answer, 'request_invalid');
    expect(answer.body?.message).toContain('registrationId');
  });

  test.each([['victim'], ['keys'], ['passwd'], ['..-'], ['.-'], ['victim.pem']])(
    'a well-formed id (%s) finds only files inside the folder: no key, 403',
    async (id) => {
      const token = await signToken(mallory.privateKey, deviceClaims({ ...mallory, id }, now));
      watch.token('mallory token', token);
      expectRefused(await send(JSON.stringify(allocationRequest({ registrationId: id, token }))), 'device_key_not_found');
    },
  );

  test('no log line names a file outside the folder', () => {
    const sources = logs.map((l) => (JSON.parse(l) as { keySource?: string }).keySource).filter((s) => s !== undefined);
    expect(sources.length).toBeGreaterThan(0);
    for (const source of sources) expect(source).toBe(`${alice.id}.pem`);
  });
});

test('no decision in this file was a 5xx', () => {
  const decisions = logs.map((l) => JSON.parse(l) as { status: number; code?: string });
  expect(decisions.length).toBeGreaterThan(100);
  expect(decisions.filter((d) => d.status >= 500)).toEqual([]);
});

test('no answer or log line carries a token, key material, the function key, a SAS token or the symmetric key', () => {
  expect(watch.count).toBeGreaterThan(100);
  expect(watch.leaks()).toEqual([]);
});
