/** The Functions host stand-in the end-to-end tests run the bundle in refuses what the real host refuses. */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startBundledFunction, type BundledFunction } from '../support/bundle-host.js';
import { allocationRequest, deviceToken, HUBS, ID_SCOPE, keysDir, makeDevice, type TestDevice } from '../support/devices.js';

const KEY = 'stand-in-function-key';
let device: TestDevice;
let fn: BundledFunction;
const lines: string[] = [];

beforeAll(async () => {
  device = await makeDevice('sensor-host');
  fn = await startBundledFunction({ env: { DEVICE_KEYS_DIR: await keysDir([device]), DPS_ID_SCOPE: ID_SCOPE }, functionKey: KEY, log: (l) => lines.push(l) });
});
afterAll(() => fn.close());

const post = async (url: string, body: string, headers: Record<string, string> = {}) => {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  return { status: response.status, text: await response.text() };
};

describe('the Functions host stand-in, serving the bundle', () => {
  test('invokes the bundled trigger with the function key, in the query or the header, and passes its log lines on', async () => {
    const body = JSON.stringify(allocationRequest({ registrationId: device.id, token: await deviceToken(device, Math.floor(Date.now() / 1000)) }));
    const byQuery = await post(`${fn.url}?code=${KEY}`, body);
    expect(byQuery.status).toBe(200);
    expect(HUBS).toContain((JSON.parse(byQuery.text) as { iotHubHostName: string }).iotHubHostName);
    expect((await post(fn.url, body, { 'x-functions-key': KEY })).status).toBe(200);
    await fn.settled();
    expect(lines.filter((l) => l.includes('"outcome":"assigned"'))).toHaveLength(2);
  });

  test('refuses a missing or wrong key (401), another method (405) and another path (404) without invoking the function', async () => {
    await fn.settled();
    const before = lines.filter((l) => l.includes('"durationMs"')).length;
    expect((await post(fn.url, '{}')).status).toBe(401);
    expect((await post(`${fn.url}?code=wrong`, '{}')).status).toBe(401);
    expect((await fetch(`${fn.url}?code=${KEY}`)).status).toBe(405);
    expect((await post(fn.url.replace('/api/validatejwt', '/api/other') + `?code=${KEY}`, '{}')).status).toBe(404);
    // Decision lines carry durationMs; none was written, so the function never ran.
    await fn.settled();
    expect(lines.filter((l) => l.includes('"durationMs"')).length).toBe(before);
  });
});
