/**
 * No secret in any log or error (issue 6, part 6), through the Azure Functions adapter as the Functions host runs
 * it: `new HttpRequest` in, every `context.log/warn/error` captured by `new InvocationContext({ logHandler })`, every
 * response kept. The other files of this suite check their own answers and logs the same way (LeakWatch).
 */
import { HttpRequest, InvocationContext, type HttpResponseInit, type LogLevel } from '@azure/functions';
import { exportJWK, exportPKCS8 } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createWebhook, type Webhook } from '../../functions/app/compose.js';
import { toFunctionsHandler } from '../../functions/app/functions-adapter.js';
import { loadConfig } from '../../functions/config.js';
import { MAX_REQUEST_BYTES } from '../../functions/core/policy.js';
import { createLocalKeyStore } from '../../functions/keys/local.js';
import { allocationRequest, deviceClaims, deviceToken, ID_SCOPE, keysDir, makeDevice, signToken, type TestDevice } from '../support/devices.js';
import { LeakWatch } from '../support/security.js';

const NOW = Date.parse('2026-11-21T12:00:00Z');
const now = Math.floor(NOW / 1000);
const FUNCTION_KEY = 'fk-logs-suite-5d1e9a7c3b2f4e6a8c0d';
const SAS = 'SharedAccessSignature sr=0ne00ABC123%2Fregistrations%2Fsensor-0042&sig=Zk9vQmFyQmF6UXV4UXV1eFNlY3JldFNpZ25hdHVyZQ%3D&se=1900000000&skn=registration';

const watch = new LeakWatch();
let alice: TestDevice;
let mallory: TestDevice;
let dir: string;
const hooks: Webhook[] = [];

interface Captured {
  readonly level: LogLevel;
  readonly text: string;
}

beforeAll(async () => {
  [alice, mallory] = await Promise.all([makeDevice('sensor-0042'), makeDevice('mallory')]);
  dir = await keysDir([alice]);
  watch.secret('function key', FUNCTION_KEY);
  watch.secret('SAS token', SAS);
  for (const d of [alice, mallory]) {
    watch.pem(`${d.id} public key`, d.publicPem);
    const pkcs8 = await exportPKCS8(d.privateKey);
    watch.pem(`${d.id} private key`, pkcs8);
    watch.secret(`${d.id} private scalar`, String((await exportJWK(d.privateKey)).d));
    watch.secret(`${d.id} public x`, String((await exportJWK(d.publicKey)).x));
  }
});
afterAll(() => Promise.all(hooks.map((h) => h.close())));

async function handlerFor(webhook: Webhook) {
  hooks.push(webhook);
  return toFunctionsHandler(webhook);
}

/** One invocation as the Functions host makes it; returns the response and every log line of it. */
async function invoke(handler: ReturnType<typeof toFunctionsHandler>, body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) {
  const lines: Captured[] = [];
  const request = new HttpRequest({
    method: 'POST',
    url: `https://dps-webhook.azurewebsites.net/api/validatejwt?code=${FUNCTION_KEY}`,
    headers: { ...headers, 'x-functions-key': FUNCTION_KEY },
    body: { string: body },
  });
  const context = new InvocationContext({
    invocationId: 'security-logs',
    functionName: 'validatejwt',
    logHandler: (level, ...args) => lines.push({ level, text: args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' ') }),
  });
  const response: HttpResponseInit = await handler(request, context);
  for (const line of lines) watch.saw(`functions log (${line.level})`, line.text);
  watch.saw('functions response', response);
  return { response, lines };
}

describe('the Functions adapter', () => {
  let handler: ReturnType<typeof toFunctionsHandler>;
  beforeAll(async () => {
    handler = await handlerFor(await createWebhook(loadConfig({ DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: ID_SCOPE, REPLAY_STORE: 'memory' }), { now: () => NOW }));
  });

  /** A request of alice's carrying `token`, and the secrets a careless webhook could echo. */
  function request(token: unknown, registrationId = alice.id): string {
    if (typeof token === 'string' && token.length >= 12) watch.token('token', token);
    const r = allocationRequest({ registrationId, token });
    (r.deviceRuntimeContext as Record<string, unknown>).authorization = SAS;
    return JSON.stringify(r);
  }

  test('logs exactly one line per decision, at a level that matches the status, for every kind of answer', async () => {
    const token = await deviceToken(alice, now);
    const scenarios: Array<[string, string, Record<string, string> | undefined, number, LogLevel]> = [
      ['assigned', request(token), undefined, 200, 'information'],
      ['replayed', request(token), undefined, 403, 'warning'],
      ['signed by another key', request(await signToken(mallory.privateKey, deviceClaims(alice, now))), undefined, 403, 'warning'],
      ['another registration', request(await deviceToken(alice, now, { sub: 'sensor-0043', registration_id: undefined })), undefined, 403, 'warning'],
      ['expired', request(await deviceToken(alice, now - 1000, { exp: now - 500 })), undefined, 403, 'warning'],
      ['alg none', request(`${Buffer.from('{"alg":"none"}').toString('base64url')}.${token.split('.')[1]}.${token.split('.')[2]}`), undefined, 403, 'warning'],
      ['no key on file', request(await deviceToken(mallory, now), mallory.id), undefined, 403, 'warning'],
      ['a token too large', request(`${token}${'A'.repeat(5000)}`), undefined, 403, 'warning'],
      ['a bad registration id', request(token, '../sensor-0042'), undefined, 400, 'warning'],
      ['not JSON, quoting the token', `{"jwt":"${token}"`, undefined, 400, 'warning'],
      ['wrong content type', request(token), { 'content-type': 'text/plain' }, 400, 'warning'],
      ['a body over the limit', request(token) + ' '.repeat(MAX_REQUEST_BYTES), undefined, 413, 'warning'],
    ];
    for (const [name, body, headers, status, level] of scenarios) {
      const { response, lines } = await invoke(handler, body, headers);
      expect(response.status, name).toBe(status);
      expect(lines, name).toHaveLength(1);
      expect(lines[0]!.level, name).toBe(level);
      const decision = JSON.parse(lines[0]!.text) as Record<string, unknown>;
      expect(decision).toMatchObject({ event: 'validatejwt', status });
      expect(Object.keys(decision).sort()).toEqual(expect.arrayContaining(['code', 'durationMs', 'outcome', 'status']));
    }
  });
});

describe('an unexpected fault (a bug) answers 500 without its message', () => {
  test('an error quoting key material and a token is logged by class name only, and answered generically', async () => {
    const token = await deviceToken(alice, now);
    const pkcs8 = await exportPKCS8(alice.privateKey);
    const local = createLocalKeyStore({ dir, algorithms: ['ES256'] });
    const webhook = await createWebhook(loadConfig({ DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: ID_SCOPE }), {
      now: () => NOW,
      keyStore: {
        names: local.names,
        store: {
          read: async () => {
            throw new TypeError(`cannot parse ${pkcs8} for token ${token} with ${SAS}`);
          },
        },
      },
    });
    const { response, lines } = await invoke(await handlerFor(webhook), JSON.stringify(allocationRequest({ registrationId: alice.id, token })));
    expect(response.status).toBe(500);
    expect(JSON.parse(String(response.body))).toEqual({ code: 'internal_error', message: 'An unexpected fault in the webhook.' });
    expect(lines).toHaveLength(1);
    expect(lines[0]!.level).toBe('error');
    expect(JSON.parse(lines[0]!.text)).toMatchObject({ code: 'internal_error', outcome: 'error', error: 'TypeError' });
  });
});

test('no log line or response of the Functions adapter carries a token, key material, the function key or a SAS token', () => {
  expect(watch.count).toBeGreaterThan(20);
  expect(watch.leaks()).toEqual([]);
});

test('the leak watch finds a leaked signature, payload segment, PEM line, or SAS (so a clean result means something)', async () => {
  const token = await deviceToken(alice, now);
  const [, payload, signature] = token.split('.') as [string, string, string];
  const pemLine = alice.publicPem.split('\n')[1]!;
  for (const leaked of [`sig ${signature}`, `claims ${payload}`, `key ${pemLine}`, `auth ${SAS}`, `url ?code=${FUNCTION_KEY}`]) {
    const probe = new LeakWatch();
    probe.token('token', token);
    probe.pem('public key', alice.publicPem);
    probe.secret('SAS', SAS);
    probe.secret('function key', FUNCTION_KEY);
    probe.saw('probe', { message: leaked });
    expect(probe.leaks(), leaked.slice(0, 10)).not.toEqual([]);
  }
});
