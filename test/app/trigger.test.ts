/**
 * The trigger module as the Functions worker loads it (functions/validatejwt.ts): HTTP streams switched on before
 * the function is registered, and a start fault that leaves the module loaded and answering 503.
 */
import { HttpRequest, InvocationContext } from '@azure/functions';
import { afterAll, beforeAll, expect, test, vi } from 'vitest';
import { ID_SCOPE, makeDevice } from '../support/devices.js';

const calls: Array<[string, unknown]> = [];
vi.mock('@azure/functions', async (importOriginal) => {
  const real = await importOriginal<typeof import('@azure/functions')>();
  return {
    ...real,
    app: {
      ...real.app,
      setup: (options: unknown) => calls.push(['setup', options]),
      http: (name: string, options: unknown) => calls.push(['http', { name, options }]),
    },
  };
});

const saved = { ...process.env };
const errors: string[] = [];
let trigger: typeof import('../../functions/validatejwt.js');

beforeAll(async () => {
  // A setting that fails loadConfig: importing the trigger must not throw, nor leave a rejected promise behind.
  // Every other setting is valid, so the fault is this one whatever order the settings are read in.
  process.env.JWT_ALGORITHMS = 'HS256';
  process.env.DEVICE_PUBLIC_KEY = (await makeDevice('fleet')).publicPem;
  process.env.DPS_ID_SCOPE = ID_SCOPE;
  vi.spyOn(console, 'error').mockImplementation((line: unknown) => void errors.push(String(line)));
  trigger = await import('../../functions/validatejwt.js');
});
afterAll(() => {
  process.env = saved;
  vi.restoreAllMocks();
});

test('HTTP streams are switched on before the function is registered', () => {
  expect(calls.map(([what]) => what)).toEqual(['setup', 'http']);
  expect(calls[0]![1]).toEqual({ enableHttpStream: true });
  expect(calls[1]![1]).toMatchObject({ name: 'validatejwt', options: { methods: ['POST'], authLevel: 'function' } });
});

test('a ConfigError at start: the module loads, one line names the setting, requests get 503 webhook_misconfigured', async () => {
  const lines: string[] = [];
  const response = await trigger.validateJwt(
    new HttpRequest({ method: 'POST', url: 'http://localhost:7071/api/validatejwt', body: { string: '{}' } }),
    new InvocationContext({ functionName: 'validatejwt', logHandler: (_level, ...args) => lines.push(args.map(String).join(' ')) }),
  );
  expect(response.status).toBe(503);
  expect(JSON.parse(String(response.body))).toMatchObject({ code: 'webhook_misconfigured' });
  expect(errors).toHaveLength(1);
  expect(JSON.parse(errors[0]!)).toMatchObject({ setting: 'JWT_ALGORITHMS', code: 'webhook_misconfigured' });
  expect(JSON.parse(lines[0]!)).toMatchObject({ setting: 'JWT_ALGORITHMS', status: 503 });
});
