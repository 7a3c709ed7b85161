import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { HttpRequest, InvocationContext } from '@azure/functions';
import { beforeAll, describe, expect, test } from 'vitest';
import { createWebhook } from '../../functions/app/compose.js';
import { toFunctionsHandler } from '../../functions/app/functions-adapter.js';
import { loadConfig } from '../../functions/config.js';
import { allocationRequest, deviceToken, HUBS, keysDir, makeDevice, type TestDevice } from '../support/devices.js';

type Handler = ReturnType<typeof toFunctionsHandler>;

// The bundle is what ships (package.json main, dist/app.zip): its handler runs the same tests as the source's.
// It reads its settings from process.env when loaded, as in the Functions host.
const BUNDLE = resolve(import.meta.dirname, '..', '..', 'dist', 'bundle', 'validatejwt.js');

async function bundledHandler(env: Record<string, string>): Promise<Handler> {
  if (!existsSync(BUNDLE)) throw new Error('dist/bundle/validatejwt.js is missing: run `npm run build` first (npm test does)');
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    return ((await import(pathToFileURL(BUNDLE).href)) as { validateJwt: Handler }).validateJwt;
  } finally {
    for (const name of Object.keys(env)) if (!(name in saved)) delete process.env[name];
    Object.assign(process.env, saved);
  }
}

let device: TestDevice;
const handlers: Record<'source' | 'bundle', Handler | undefined> = { source: undefined, bundle: undefined };

beforeAll(async () => {
  device = await makeDevice('sensor-7');
  const env = { DEVICE_KEYS_DIR: await keysDir([device]) };
  handlers.source = toFunctionsHandler(createWebhook(loadConfig(env)));
  handlers.bundle = await bundledHandler(env);
});

describe.each(['source', 'bundle'] as const)('the v4 trigger adapter (%s)', (build) => {
  function invoke(body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) {
    const lines: Array<{ level: string; text: string }> = [];
    const context = new InvocationContext({
      functionName: 'validatejwt',
      logHandler: (level, ...args) => lines.push({ level, text: args.map(String).join(' ') }),
    });
    const request = new HttpRequest({ method: 'POST', url: 'http://localhost:7071/api/validatejwt', headers, body: { string: body } });
    return handlers[build]!(request, context).then((response) => ({ response, lines }));
  }

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
