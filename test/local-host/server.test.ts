import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startLocalHost, type LocalHost } from '../../local-host/server.js';
import { allocationRequest, deviceToken, HUBS, ID_SCOPE, keysDir, makeDevice, type TestDevice } from '../support/devices.js';

const FUNCTION_KEY = 'local-function-key-0123456789';
let device: TestDevice;
let host: LocalHost;
const lines: string[] = [];

beforeAll(async () => {
  device = await makeDevice('sensor-0042');
  host = await startLocalHost({ env: { DEVICE_KEYS_DIR: await keysDir([device]), DPS_ID_SCOPE: ID_SCOPE, WEBHOOK_FUNCTION_KEY: FUNCTION_KEY }, port: 0, log: (l) => lines.push(l) });
});
afterAll(() => host.close());

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`http://127.0.0.1:${host.port}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, body: (await response.json()) as Record<string, unknown> };
}

describe('npm start: the local host', () => {
  test('serves validatejwt at /api/validatejwt with ?code=, and answers a good device 200 with a linked hub', async () => {
    const token = await deviceToken(device, Math.floor(Date.now() / 1000));
    const answer = await post(`/api/validatejwt?code=${FUNCTION_KEY}`, allocationRequest({ registrationId: device.id, token }));
    expect(answer.status).toBe(200);
    expect(HUBS).toContain(answer.body.iotHubHostName);
    expect(answer.headers.get('content-type')).toMatch(/^application\/json/);
  });

  test('accepts the key in x-functions-key too', async () => {
    const token = await deviceToken(device, Math.floor(Date.now() / 1000));
    const answer = await post('/api/validatejwt', allocationRequest({ registrationId: device.id, token }), { 'x-functions-key': FUNCTION_KEY });
    expect(answer.status).toBe(200);
  });

  test('without the function key, or with a wrong one, answers 401 (DPS: 400209)', async () => {
    expect((await post('/api/validatejwt', {})).status).toBe(401);
    expect((await post('/api/validatejwt?code=wrong', {})).status).toBe(401);
    expect(lines.join('\n')).not.toContain(FUNCTION_KEY);
  });

  test('other paths are 404 and other methods 405', async () => {
    expect((await post(`/api/other?code=${FUNCTION_KEY}`, {})).status).toBe(404);
    const get = await fetch(`http://127.0.0.1:${host.port}/api/validatejwt?code=${FUNCTION_KEY}`);
    expect(get.status).toBe(405);
  });

  test('a declared body over 64 KiB gets 413 without being read', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: host.port, method: 'POST', path: `/api/validatejwt?code=${FUNCTION_KEY}`, headers: { 'content-type': 'application/json', 'content-length': 10_000_000 } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.write('{');
    });
    expect(status).toBe(413);
  });

  test('logs one line per decision with registration id, outcome, code and hub, never the token', async () => {
    lines.length = 0;
    const token = await deviceToken(device, Math.floor(Date.now() / 1000));
    await post(`/api/validatejwt?code=${FUNCTION_KEY}`, allocationRequest({ registrationId: device.id, token }));
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]!);
    expect(line).toMatchObject({ registrationId: device.id, outcome: 'assigned', code: 'assigned', status: 200 });
    expect(HUBS).toContain(line.hub);
    expect(typeof line.durationMs).toBe('number');
    expect(lines[0]).not.toContain(token.split('.')[2]);
  });
});
