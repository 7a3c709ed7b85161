import { HttpRequest, InvocationContext } from '@azure/functions';
import { beforeAll, describe, expect, test } from 'vitest';
import { createWebhook } from '../../functions/app/compose.js';
import { toFunctionsHandler } from '../../functions/app/functions-adapter.js';
import { loadConfig } from '../../functions/config.js';
import { allocationRequest, deviceToken, HUBS, ID_SCOPE, keysDir, makeDevice, type TestDevice } from '../support/devices.js';

let device: TestDevice;
let handler: ReturnType<typeof toFunctionsHandler>;

beforeAll(async () => {
  device = await makeDevice('sensor-7');
  handler = toFunctionsHandler(createWebhook(loadConfig({ DEVICE_KEYS_DIR: await keysDir([device]), DPS_ID_SCOPE: ID_SCOPE })));
});

function invoke(body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) {
  const lines: Array<{ level: string; text: string }> = [];
  const context = new InvocationContext({
    functionName: 'validatejwt',
    logHandler: (level, ...args) => lines.push({ level, text: args.map(String).join(' ') }),
  });
  const request = new HttpRequest({ method: 'POST', url: 'http://localhost:7071/api/validatejwt', headers, body: { string: body } });
  return handler(request, context).then((response) => ({ response, lines }));
}

describe('the v4 trigger adapter', () => {
  test('answers 200 with the DPS shape and logs one structured line without the token', async () => {
    const token = await deviceToken(device, Math.floor(Date.now() / 1000));
    const { response, lines } = await invoke(JSON.stringify(allocationRequest({ registrationId: device.id, token })));
    expect(response.status).toBe(200);
    expect(HUBS).toContain((response.jsonBody as { iotHubHostName: string }).iotHubHostName);
    expect(lines).toHaveLength(1);
    expect(lines[0]!.level).toBe('information');
    expect(JSON.parse(lines[0]!.text)).toMatchObject({ event: 'validatejwt', registrationId: device.id, outcome: 'assigned' });
    for (const segment of token.split('.')) expect(lines[0]!.text).not.toContain(segment);
  });

  test('a refusal is a 403 logged as a warning with its code', async () => {
    const { response, lines } = await invoke(JSON.stringify(allocationRequest({ registrationId: device.id, token: 'e30.e30.AAAA' })));
    expect(response.status).toBe(403);
    expect(response.jsonBody).toMatchObject({ code: 'token_algorithm_not_allowed' });
    expect(lines.map((l) => l.level)).toEqual(['warning']);
  });

  test('a body over the limit is refused with 413 by its declared length', async () => {
    const { response } = await invoke('{}', { 'content-type': 'application/json', 'content-length': String(1024 * 1024) });
    expect(response.status).toBe(413);
    expect(response.jsonBody).toMatchObject({ code: 'request_too_large' });
  });

  test('a body over the limit without a declared length is cut off at the limit', async () => {
    const { response } = await invoke(' '.repeat(70 * 1024) + '{}');
    expect(response.status).toBe(413);
  });
});
