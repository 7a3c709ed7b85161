/**
 * The replay table reached by identity (issue 11 item 3): REPLAY_STORE=table with REPLAY_TABLE_ACCOUNT_URL and no
 * connection string, as a Flex Consumption app runs it. Azurite is started with HTTPS (a certificate from the test CA
 * every worker trusts, test/support/global-setup.ts) and `--oauth basic`, so it accepts only a bearer JWT whose aud,
 * iss, nbf and exp fit storage; the token comes from the loopback managed-identity stand-in through the real
 * DefaultAzureCredential, the same path the Key Vault tests use. One credential serves the vault and the table.
 */
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import type { TokenCredential } from '@azure/identity';
import { createWebhook, type Webhook } from '../../functions/app/compose.js';
import { loadConfig, type Env } from '../../functions/config.js';
import type { WebhookAnswer } from '../../functions/core/webhook.js';
import { deviceSecretName } from '../../functions/keys/names.js';
import { allocationRequest, deviceToken, ID_SCOPE, keysDir, makeDevice, type TestDevice } from '../support/devices.js';
import { issueLocalhostCertificate, processTrustedCa, startKeyVaultStandin, type KeyVaultStandin } from '../support/keyvault-standin.js';
import { startManagedIdentityStandin, useManagedIdentityEnv, type ManagedIdentityStandin } from '../support/managed-identity-standin.js';
import { guardLoopback, LeakWatch, startAzuriteTable, type Azurite } from '../support/security.js';

// Counts the DefaultAzureCredentials the product makes: one per webhook, shared by the vault and the table.
const made = vi.hoisted(() => ({ credentials: 0 }));
vi.mock('@azure/identity', async (importOriginal) => {
  const real = await importOriginal<typeof import('@azure/identity')>();
  class CountedDefaultAzureCredential extends real.DefaultAzureCredential {
    constructor(...args: ConstructorParameters<typeof real.DefaultAzureCredential>) {
      super(...args);
      made.credentials += 1;
    }
  }
  return { ...real, DefaultAzureCredential: CountedDefaultAzureCredential };
});

const NOW = Date.now();
const now = Math.floor(NOW / 1000);
const STORAGE = 'https://storage.azure.com';

const watch = new LeakWatch();
let guard: ReturnType<typeof guardLoopback>;
let mi: ManagedIdentityStandin;
let restoreEnv: () => void;
let azurite: Azurite;
let vault: KeyVaultStandin;
let alice: TestDevice;
let dir: string;
const hooks: Webhook[] = [];

beforeAll(async () => {
  guard = guardLoopback();
  mi = await startManagedIdentityStandin({ tokenFormat: 'jwt' });
  restoreEnv = useManagedIdentityEnv(mi);
  const ca = processTrustedCa();
  if (ca === undefined) throw new Error('the test CA from global-setup.ts is not trusted by this worker');
  azurite = await startAzuriteTable({ https: await issueLocalhostCertificate(ca), oauth: 'basic' });
  vault = await startKeyVaultStandin({ acceptsToken: mi.isIssuedToken, ca });
  alice = await makeDevice('sensor-0042');
  dir = await keysDir([alice]);
  vault.setSecret(deviceSecretName(alice.id), alice.publicPem, { contentType: 'application/x-pem-file' });
  watch.pem('alice public key', alice.publicPem);
  watch.forbid('a managed identity bearer token', /Bearer /);
});
afterAll(async () => {
  await Promise.all(hooks.map((h) => h.close()));
  await azurite?.stop();
  await vault?.stop();
  await mi?.stop();
  restoreEnv?.();
  guard?.restore();
});

async function webhookWith(env: Env, credential?: TokenCredential): Promise<Webhook> {
  const hook = await createWebhook(
    loadConfig({ DPS_ID_SCOPE: ID_SCOPE, REPLAY_STORE: 'table', REPLAY_TABLE_ACCOUNT_URL: azurite.accountUrl, REPLAY_TABLE_NAME: `used${hooks.length}x${now}`, ...env }),
    { now: () => NOW, ...(credential !== undefined && { credential }) },
  );
  hooks.push(hook);
  return hook;
}

async function ask(hook: Webhook, token: string): Promise<WebhookAnswer> {
  watch.token('token', token);
  const answer = await hook.handle({ body: JSON.stringify(allocationRequest({ registrationId: alice.id, token })), contentType: 'application/json' });
  watch.saw('answer', { status: answer.status, headers: answer.headers, body: answer.body, log: answer.log });
  return answer;
}

describe('REPLAY_TABLE_ACCOUNT_URL: the managed identity, no connection string', () => {
  test('a token is admitted once and refused as token_replayed after, by this and by a fresh instance', async () => {
    const hook = await webhookWith({ DEVICE_KEYS_DIR: dir });
    const token = await deviceToken(alice, now);
    expect((await ask(hook, token)).status).toBe(200);
    expect((await ask(hook, token)).body).toMatchObject({ code: 'token_replayed' });
    expect((await ask(await webhookWith({ DEVICE_KEYS_DIR: dir, REPLAY_TABLE_NAME: `used0x${now}` }), token)).body).toMatchObject({ code: 'token_replayed' });
    // The table's token came from the stand-in, for storage; nothing left the machine.
    expect(mi.resources).toContain(STORAGE);
    expect(guard.blocked).toEqual([]);
  });

  test('one credential per webhook serves both Key Vault and the table', async () => {
    const before = made.credentials;
    const requested = mi.resources.length;
    const hook = await webhookWith({ KEY_VAULT_URL: vault.url, KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION: 'true' });
    expect((await ask(hook, await deviceToken(alice, now))).status).toBe(200);
    expect(made.credentials - before).toBe(1);
    expect(vault.reads(deviceSecretName(alice.id))).toBeGreaterThan(0);
    const resources = mi.resources.slice(requested);
    // MSAL's process-wide cache may serve a token asked for by an earlier test; each resource was asked at least once.
    expect(new Set(mi.resources)).toEqual(new Set([STORAGE, expect.stringMatching(/^https:\/\/vault\.azure\.net/)]));
    expect(resources.every((r) => r === STORAGE || r.startsWith('https://vault.azure.net'))).toBe(true);
  });

  test('Azurite really checks the bearer token: a token that is not a storage JWT gets 503, never 200', async () => {
    const opaque: TokenCredential = { getToken: async () => ({ token: 'not-a-jwt-token-value', expiresOnTimestamp: NOW + 3_600_000 }) };
    const hook = await webhookWith({ DEVICE_KEYS_DIR: dir }, opaque);
    const answer = await ask(hook, await deviceToken(alice, now));
    expect(answer.body).toMatchObject({ code: 'replay_store_unavailable' });
    expect(answer.status).toBe(503);
  });

  test('a token for another audience (the vault) is refused by Azurite too: 503', async () => {
    const real = new (await import('@azure/identity')).DefaultAzureCredential();
    const wrongAudience: TokenCredential = { getToken: () => real.getToken('https://vault.azure.net/.default') };
    const hook = await webhookWith({ DEVICE_KEYS_DIR: dir }, wrongAudience);
    expect((await ask(hook, await deviceToken(alice, now))).body).toMatchObject({ code: 'replay_store_unavailable' });
  });
});

test('no answer or log line carries a token or a bearer token', () => {
  expect(watch.count).toBeGreaterThan(4);
  expect(watch.leaks()).toEqual([]);
});
