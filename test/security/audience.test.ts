/**
 * Issue 13 item 3: the audience failed open. Without DPS_ID_SCOPE, `aud` and `id_scope` were not checked at all and
 * the committed example settings left it unset, so a fresh clone admitted a token minted for another DPS. Now the
 * setting is required (the start names it), DPS_ID_SCOPE_CHECK=off is the explicit opt-out for fleets whose tokens
 * carry no audience, and in every mode a token that names another scope is refused.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { JWTPayload } from 'jose';
import { beforeAll, describe, expect, test } from 'vitest';
import { createWebhook, type Webhook } from '../../functions/app/compose.js';
import { ConfigError, loadConfig, type Env } from '../../functions/config.js';
import { allocationRequest, deviceToken, ID_SCOPE, keysDir, makeDevice, type TestDevice } from '../support/devices.js';

const NOW = Date.parse('2026-11-21T12:00:00Z');
const now = Math.floor(NOW / 1000);
const OTHER_SCOPE = '0ne00FFFFFF';

let device: TestDevice;
let dir: string;

beforeAll(async () => {
  device = await makeDevice('sensor-aud');
  dir = await keysDir([device]);
});

async function hook(env: Env): Promise<Webhook> {
  return createWebhook(loadConfig({ DEVICE_KEYS_DIR: dir, ...env }), { now: () => NOW });
}

/** The reason code (or `assigned`) for a token with these claim changes; `undefined` removes a claim. */
async function verdict(webhook: Webhook, claims: JWTPayload): Promise<string> {
  const token = await deviceToken(device, now, claims);
  const answer = await webhook.handle({ body: JSON.stringify(allocationRequest({ registrationId: device.id, token })) });
  return answer.status === 200 ? 'assigned' : ((answer.body as { code?: string }).code ?? String(answer.status));
}

const NO_AUDIENCE = { aud: undefined, id_scope: undefined };

describe('DPS_ID_SCOPE is required', () => {
  test('a start without it is refused, naming the setting and the opt-out', () => {
    let error: unknown;
    try {
      loadConfig({ DEVICE_KEYS_DIR: dir });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).setting).toBe('DPS_ID_SCOPE');
    expect((error as ConfigError).message).toContain('DPS_ID_SCOPE_CHECK=off');
  });

  test('the committed example settings set it, so a fresh clone refuses a token for another DPS', async () => {
    const example = JSON.parse(readFileSync(join(import.meta.dirname, '../../local.settings.example.json'), 'utf8')) as { Values: Env };
    expect(example.Values.DPS_ID_SCOPE).toMatch(/^0ne[0-9A-F]{8}$/);
    expect(example.Values.DPS_ID_SCOPE_CHECK).toBeUndefined();
    const webhook = await hook({ ...example.Values, DEVICE_KEYS_DIR: dir });
    const theirs = example.Values.DPS_ID_SCOPE!;
    expect(await verdict(webhook, { aud: theirs, id_scope: theirs })).toBe('assigned');
    expect(await verdict(webhook, { aud: OTHER_SCOPE, id_scope: OTHER_SCOPE })).toBe('token_audience_mismatch');
    expect(await verdict(webhook, NO_AUDIENCE)).toBe('token_claim_missing');
  });
});

describe('with the check on (the default)', () => {
  let webhook: Webhook;
  beforeAll(async () => {
    webhook = await hook({ DPS_ID_SCOPE: ID_SCOPE });
  });

  test.each<[string, JWTPayload, string]>([
    ['both claims name this scope', {}, 'assigned'],
    ['only aud, naming this scope', { id_scope: undefined }, 'assigned'],
    ['only id_scope, naming this scope', { aud: undefined }, 'assigned'],
    ['aud as a list holding this scope', { aud: ['other-audience', ID_SCOPE] }, 'assigned'],
    ['no audience at all', NO_AUDIENCE, 'token_claim_missing'],
    ['aud names another scope', { aud: OTHER_SCOPE }, 'token_audience_mismatch'],
    ['id_scope names another scope', { id_scope: OTHER_SCOPE }, 'token_audience_mismatch'],
    ['only id_scope, another scope', { aud: undefined, id_scope: OTHER_SCOPE }, 'token_audience_mismatch'],
    ['the scope in another case', { aud: ID_SCOPE.toLowerCase(), id_scope: undefined }, 'token_audience_mismatch'],
  ])('%s: %s', async (_what, claims, expected) => {
    expect(await verdict(webhook, claims)).toBe(expected);
  });
});

describe('DPS_ID_SCOPE_CHECK=off: the claims may be absent, but never name another scope', () => {
  test('with DPS_ID_SCOPE: absent passes, this scope passes, another scope is refused', async () => {
    const webhook = await hook({ DPS_ID_SCOPE: ID_SCOPE, DPS_ID_SCOPE_CHECK: 'off' });
    expect(await verdict(webhook, NO_AUDIENCE)).toBe('assigned');
    expect(await verdict(webhook, {})).toBe('assigned');
    expect(await verdict(webhook, { aud: OTHER_SCOPE, id_scope: undefined })).toBe('token_audience_mismatch');
    expect(await verdict(webhook, { aud: undefined, id_scope: OTHER_SCOPE })).toBe('token_audience_mismatch');
    expect(await verdict(webhook, { aud: [OTHER_SCOPE] })).toBe('token_audience_mismatch');
  });

  test('without DPS_ID_SCOPE: a token naming any scope is refused, since none can be told to be ours', async () => {
    const webhook = await hook({ DPS_ID_SCOPE_CHECK: 'off' });
    expect(await verdict(webhook, NO_AUDIENCE)).toBe('assigned');
    expect(await verdict(webhook, { aud: OTHER_SCOPE, id_scope: undefined })).toBe('token_audience_mismatch');
    expect(await verdict(webhook, { aud: undefined, id_scope: OTHER_SCOPE })).toBe('token_audience_mismatch');
    expect(await verdict(webhook, {})).toBe('token_audience_mismatch');
  });

  test('a malformed aud is refused in this mode too', async () => {
    const webhook = await hook({ DPS_ID_SCOPE_CHECK: 'off' });
    expect(await verdict(webhook, { aud: 42 as unknown as string })).toBe('token_claim_invalid');
  });
});
