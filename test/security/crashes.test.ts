/**
 * Issue 13 item 4: no request may crash the host or answer 500. Each case here did, on the local host (`npm start`'s
 * server, in process on port 0) or in the webhook: a request target Node's URL parser refuses, a caller hanging up
 * mid-body, an enrollment twin nested thousands deep, an RSA key under 2048 bits. Also the host's own bounds:
 * timeouts, a connection cap, and a 413 that a client still sending actually receives.
 */
import { generateKeyPairSync, sign as nodeSign, type KeyObject } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportPKCS8 } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createWebhook } from '../../functions/app/compose.js';
import { loadConfig } from '../../functions/config.js';
import { WebhookError } from '../../functions/core/reasons.js';
import { parseKeyMaterial } from '../../functions/keys/parse.js';
import { DEFAULT_LIMITS, startLocalHost, type LocalHost } from '../../local-host/server.js';
import { allocationRequest, deviceClaims, deviceToken, HUBS, ID_SCOPE, makeDevice, type TestDevice } from '../support/devices.js';
import { LeakWatch, json64, rawHttp } from '../support/security.js';

const FUNCTION_KEY = 'fk-crashes-suite-7a1c9e3b5d2f4a6c8e0b';
const watch = new LeakWatch();
const logs: string[] = [];
let alice: TestDevice;
let host: LocalHost;

function record(line: string): void {
  logs.push(line);
  watch.saw('local host log', line);
}

beforeAll(async () => {
  alice = await makeDevice('sensor-0042');
  const dir = await mkdtemp(join(tmpdir(), 'crashes-keys-'));
  await writeFile(join(dir, `${alice.id}.pem`), alice.publicPem);
  host = await startLocalHost({
    env: { DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: ID_SCOPE, WEBHOOK_FUNCTION_KEY: FUNCTION_KEY },
    port: 0,
    log: record,
    limits: { lingerMs: 3_000, lingerBytes: 32 * 1024 * 1024 },
  });
  watch.secret('function key', FUNCTION_KEY);
  watch.pem('alice private key', await exportPKCS8(alice.privateKey));
});
afterAll(() => host?.close());

const logged = () => logs.map((l) => JSON.parse(l) as { status: number; code?: string; outcome?: string; error?: string; twinDropped?: string[] });

async function validBody(twin?: string): Promise<string> {
  const token = await deviceToken(alice, Math.floor(Date.now() / 1000));
  watch.token('alice token', token);
  const text = JSON.stringify(allocationRequest({ registrationId: alice.id, token }));
  return twin === undefined ? text : text.replace('"individualEnrollment":{', `"individualEnrollment":{"initialTwin":${twin},`);
}

function rawPost(path: string, body: string): string {
  return `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-functions-key: ${FUNCTION_KEY}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

/** Resolves when `predicate` holds for some log line, or fails after `ms`. */
async function waitForLog(predicate: (line: ReturnType<typeof logged>[number]) => boolean, ms = 3_000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const hit = logged().find(predicate);
    if (hit !== undefined) return hit;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('no such log line');
}

describe('request targets the URL parser refuses', () => {
  test.each(['//x:99999/api/validatejwt', '//[::1/api/validatejwt', 'http://[/api/validatejwt', '//a%20b:1:2/api/validatejwt'])(
    '%s with ?code= is answered 400, never echoed, and the host keeps serving',
    async (target) => {
      logs.length = 0;
      const answer = await rawHttp(host.port, rawPost(`${target}?code=${FUNCTION_KEY}`, '{}'));
      watch.saw('raw HTTP answer', answer.text);
      expect(answer.status).toBe(400);
      expect(JSON.parse(answer.text)).toMatchObject({ code: 'request_invalid' });
      expect(logged()).toEqual([{ event: 'validatejwt', outcome: 'malformed', code: 'request_invalid', status: 400 }]);
      const next = await rawHttp(host.port, rawPost('/api/validatejwt', await validBody()));
      expect(next.status).toBe(200);
    },
  );

  test('a request line Node refuses outright is 400 with a JSON body, logged by class name only', async () => {
    logs.length = 0;
    const answer = await rawHttp(host.port, `GET /api/validatejwt?code=${FUNCTION_KEY} HTTP/1.1 junk\r\n\r\n`);
    watch.saw('raw HTTP answer', answer.text);
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.text)).toMatchObject({ code: 'request_invalid' });
    expect(logged()).toEqual([{ event: 'validatejwt', outcome: 'malformed', code: 'request_invalid', status: 400, error: 'Error' }]);
  });
});

test('a caller that hangs up mid-body is request_incomplete (400), not internal_error', async () => {
  logs.length = 0;
  const body = await validBody();
  const socket = connect({ host: '127.0.0.1', port: host.port });
  await new Promise((r) => socket.once('connect', r));
  socket.write(rawPost('/api/validatejwt', body).slice(0, -Math.floor(body.length / 2)));
  await new Promise((r) => setTimeout(r, 50));
  socket.destroy();
  const line = await waitForLog((l) => l.status !== undefined);
  expect(line).toMatchObject({ outcome: 'malformed', code: 'request_incomplete', status: 400, delivered: false });
  expect(logged().filter((l) => l.status >= 500)).toEqual([]);
});

describe("an enrollment twin IoT Hub would refuse (IoT Hub's twin limits)", () => {
  test('nested 5 000 deep: answered 200 without that tag, the drop logged, and the log states the status sent', async () => {
    logs.length = 0;
    const deep = `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`;
    const answer = await rawHttp(host.port, rawPost('/api/validatejwt', await validBody(`{"tags":{"deep":${deep},"site":"b7"},"properties":{"desired":{"deep":${deep}}}}`)));
    expect(answer.status).toBe(200);
    const twin = (JSON.parse(answer.text) as { initialTwin: { tags: Record<string, unknown>; properties: { desired: Record<string, unknown> } } }).initialTwin;
    expect(Object.keys(twin.tags)).toEqual(['site', 'provisioning']);
    expect(twin.properties.desired).toEqual({});
    expect(logged()).toHaveLength(1);
    expect(logged()[0]).toMatchObject({ status: 200, code: 'assigned', twinDropped: ['tags."deep": nested over 10 deep', 'properties.desired."deep": nested over 10 deep'] });
  });

  test('an array and an over-long string in the enrollment twin are dropped; the rest is kept', async () => {
    logs.length = 0;
    const answer = await rawHttp(host.port, rawPost('/api/validatejwt', await validBody(`{"tags":{"list":[1,2],"long":"${'x'.repeat(5000)}","line":"7"}}`)));
    expect(answer.status).toBe(200);
    expect(Object.keys((JSON.parse(answer.text) as { initialTwin: { tags: object } }).initialTwin.tags)).toEqual(['line', 'provisioning']);
    expect(logged()[0]!.twinDropped).toEqual(['tags."list": arrays are not allowed', 'tags."long": string over 4096 bytes']);
  });
});

describe('RSA keys under 2048 bits (issue 13 item 4)', () => {
  const rsa = (bits: number) => generateKeyPairSync('rsa', { modulusLength: bits });
  function rs256(privateKey: KeyObject, claims: Record<string, unknown>): string {
    const input = `${json64({ alg: 'RS256', typ: 'JWT' })}.${json64(claims)}`;
    return `${input}.${nodeSign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
  }

  test('are refused at parse as device_key_unusable, as PEM and as JWK; 2048 bits are accepted', async () => {
    const small = rsa(1024).publicKey;
    await expect(parseKeyMaterial(small.export({ type: 'spki', format: 'pem' }) as string, ['RS256'], 'rsa.pem')).rejects.toMatchObject({
      code: 'device_key_unusable',
      message: 'rsa.pem holds an RSA key of 1024 bits; at least 2048 are required',
    });
    await expect(parseKeyMaterial(JSON.stringify(small.export({ format: 'jwk' })), ['RS256', 'PS256'], 'rsa.jwk')).rejects.toBeInstanceOf(WebhookError);
    const ok = await parseKeyMaterial(rsa(2048).publicKey.export({ type: 'spki', format: 'pem' }) as string, ['RS256'], 'ok.pem');
    expect(ok).toHaveLength(1);
  });

  test('on file, a token for that id is 403 device_key_unusable, not 500', async () => {
    const { publicKey, privateKey } = rsa(1024);
    const dir = await mkdtemp(join(tmpdir(), 'crashes-rsa-'));
    await writeFile(join(dir, 'rsa-1.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
    const webhook = await createWebhook(loadConfig({ DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: ID_SCOPE, JWT_ALGORITHMS: 'RS256' }));
    const now = Math.floor(Date.now() / 1000);
    const token = rs256(privateKey, deviceClaims({ ...alice, id: 'rsa-1' }, now) as Record<string, unknown>);
    const answer = await webhook.handle({ body: JSON.stringify(allocationRequest({ registrationId: 'rsa-1', token })) });
    expect(answer.log).toMatchObject({ status: 403, code: 'device_key_unusable' });
  });

  test('a key jose refuses at verification (here one that bypassed the parser) maps to device_key_unusable', async () => {
    const { publicKey, privateKey } = rsa(1024);
    const jwk = publicKey.export({ format: 'jwk' });
    const webhook = await createWebhook(loadConfig({ DEVICE_PUBLIC_KEY: alice.publicPem, DPS_ID_SCOPE: ID_SCOPE, JWT_ALGORITHMS: 'RS256,ES256' }), {
      keyStore: {
        names: () => ['only'],
        store: { read: async () => ({ keys: [{ alg: 'RS256', jwk }], enabled: true, tags: {}, origin: 'stand-in' }) },
      },
    });
    const token = rs256(privateKey, deviceClaims({ ...alice, id: 'rsa-2' }, Math.floor(Date.now() / 1000)) as Record<string, unknown>);
    const answer = await webhook.handle({ body: JSON.stringify(allocationRequest({ registrationId: 'rsa-2', token })) });
    expect(answer.log).toMatchObject({ status: 403, code: 'device_key_unusable' });
    expect(answer.log.error).toBeUndefined();
  });
});

describe('a 413 reaches a client that is still sending', () => {
  /**
   * Sends a POST of `bodyBytes` (declared in content-length, or chunked when `declared` is 'chunked'), reading
   * nothing until every byte is written, as many simple clients do.
   */
  function writeAllThenRead(port: number, declared: number | 'chunked', bodyBytes: number): Promise<{ status?: number; error?: string }> {
    return new Promise((resolve) => {
      const socket: Socket = connect({ host: '127.0.0.1', port });
      socket.pause();
      let got = '';
      socket.on('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? 'error', ...(got && { status: Number(got.slice(9, 12)) }) }));
      const framing = declared === 'chunked' ? 'transfer-encoding: chunked' : `content-length: ${declared}`;
      socket.write(`POST /api/validatejwt HTTP/1.1\r\nhost: x\r\nx-functions-key: ${FUNCTION_KEY}\r\ncontent-type: application/json\r\n${framing}\r\n\r\n`);
      const body = Buffer.alloc(bodyBytes, 0x20);
      const wire = declared === 'chunked' ? Buffer.concat([Buffer.from(`${bodyBytes.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]) : body;
      socket.end(wire, () => {
        socket.on('data', (d: Buffer) => (got += d.toString()));
        socket.once('end', () => resolve({ status: Number(got.slice(9, 12)) }));
        socket.resume();
      });
    });
  }

  // 24 MiB: more than loopback's socket buffers hold, so a server that closes without reading resets the connection.
  test('declared over the limit: the 413 is read after the whole 24 MiB body was written', async () => {
    const result = await writeAllThenRead(host.port, 24 * 1024 * 1024, 24 * 1024 * 1024);
    expect(result).toEqual({ status: 413 });
  });

  test('chunked, cut off at the limit while reading: the 413 is read after the whole 24 MiB body was written', async () => {
    expect(await writeAllThenRead(host.port, 'chunked', 24 * 1024 * 1024)).toEqual({ status: 413 });
  });

  test('a client that never stops is cut off at the linger bound, after its 413 was sent', async () => {
    const started = Date.now();
    const outcome = await new Promise<{ head: string; closedAfterMs: number }>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: host.port });
      let head = '';
      socket.on('data', (d: Buffer) => (head += d.toString()));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve({ head, closedAfterMs: Date.now() - started }));
      socket.write(`POST /api/validatejwt HTTP/1.1\r\nhost: x\r\nx-functions-key: ${FUNCTION_KEY}\r\ncontent-length: 1000000000\r\n\r\n`);
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const pump = () => {
        while (!socket.destroyed && socket.write(chunk));
        if (!socket.destroyed) socket.once('drain', pump);
      };
      pump();
    });
    expect(outcome.head).toMatch(/^HTTP\/1\.1 413 /);
    expect(outcome.closedAfterMs).toBeLessThan(3_000 + 1_500);
  });
});

describe('the host bounds what one caller can hold', () => {
  let tight: LocalHost;
  const tightLogs: string[] = [];
  beforeAll(async () => {
    tight = await startLocalHost({
      env: { DEVICE_PUBLIC_KEY: alice.publicPem, DPS_ID_SCOPE: ID_SCOPE },
      port: 0,
      log: (l) => tightLogs.push(l),
      limits: { headersTimeoutMs: 400, requestTimeoutMs: 800, maxConnections: 3 },
    });
  });
  afterAll(() => tight?.close());

  test('npm start has finite defaults, below Node\'s own', () => {
    expect(DEFAULT_LIMITS.headersTimeoutMs).toBeLessThanOrEqual(20_000);
    expect(DEFAULT_LIMITS.requestTimeoutMs).toBeLessThanOrEqual(60_000);
    expect(DEFAULT_LIMITS.keepAliveTimeoutMs).toBeLessThanOrEqual(10_000);
    expect(DEFAULT_LIMITS.maxConnections).toBeLessThan(10_000);
    expect(host.limits).toMatchObject({ headersTimeoutMs: DEFAULT_LIMITS.headersTimeoutMs, requestTimeoutMs: DEFAULT_LIMITS.requestTimeoutMs, maxConnections: DEFAULT_LIMITS.maxConnections });
  });

  test('headers trickled slower than headersTimeout get 408 and the connection is closed', async () => {
    const started = Date.now();
    const result = await new Promise<{ text: string; ms: number }>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: tight.port });
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString()));
      socket.on('error', () => undefined);
      const line = 'POST /api/validatejwt HTTP/1.1\r\nx-slow: ' + 'a'.repeat(100);
      let i = 0;
      const timer = setInterval(() => (i < line.length && !socket.destroyed ? socket.write(line[i++]!) : clearInterval(timer)), 50);
      socket.on('close', () => {
        clearInterval(timer);
        resolve({ text, ms: Date.now() - started });
      });
    });
    expect(result.text).toMatch(/^HTTP\/1\.1 408 /);
    expect(result.ms).toBeLessThan(2_500);
  });

  test('a body that never completes gets 408 within requestTimeout, logged without a 500', async () => {
    const started = Date.now();
    const text = await new Promise<string>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: tight.port });
      let got = '';
      socket.on('data', (d: Buffer) => (got += d.toString()));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(got));
      socket.write('POST /api/validatejwt HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"a":');
    });
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(tightLogs.map((l) => JSON.parse(l) as { status: number }).filter((l) => l.status >= 500)).toEqual([]);
  });

  test('connections over maxConnections are closed on accept; the others are served', async () => {
    const open: Socket[] = [];
    for (let i = 0; i < 3; i++) {
      const s = connect({ host: '127.0.0.1', port: tight.port });
      s.on('error', () => undefined);
      await new Promise((r) => s.once('connect', r));
      open.push(s);
    }
    await new Promise((r) => setTimeout(r, 50));
    const extra = connect({ host: '127.0.0.1', port: tight.port });
    extra.on('error', () => undefined);
    const closed = await new Promise<boolean>((resolve) => {
      extra.once('close', () => resolve(true));
      setTimeout(() => resolve(false), 1_000);
    });
    expect(closed).toBe(true);
    for (const s of open) s.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const answer = await rawHttp(tight.port, `POST /api/validatejwt HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}`);
    expect(answer.status).toBe(400);
  });
});

test('no decision in this file was a 5xx, and nothing leaked', () => {
  expect(logged().filter((l) => l.status >= 500)).toEqual([]);
  expect(watch.leaks()).toEqual([]);
  expect(HUBS.length).toBeGreaterThan(0);
});
