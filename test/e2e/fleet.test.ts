/**
 * Migrating a fleet, whole flow: factory keys (sample-device keygen), a manifest naming their public key files,
 * `fleet import` into the Key Vault stand-in (real SDK, managed identity stand-in), then one of the devices registers
 * through the local DPS (official device SDK) against the webhook reading that vault: it is assigned, with the
 * manifest's tags in its twin; a device imported disabled is refused.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startLocalDps, type LocalDps } from '../../dps-emulator/index.js';
import { main } from '../../fleet/cli.js';
import { startLocalHost, type LocalHost } from '../../local-host/server.js';
import { keygen } from '../../sample-device/commands/keygen.js';
import { register } from '../../sample-device/commands/register.js';
import { SampleDeviceError } from '../../sample-device/errors.js';
import { writeCsv } from '../fleet/helpers.js';
import { startKeyVaultStandin, type KeyVaultStandin } from '../support/keyvault-standin.js';
import { startManagedIdentityStandin, useManagedIdentityEnv, type ManagedIdentityStandin } from '../support/managed-identity-standin.js';
import { guardLoopback } from '../support/security.js';
import { ID_SCOPE, individual, randomKey } from './fixture.js';

const IDS = ['pump-0001', 'pump-0002', 'pump-0003'];
const symmetricKey = randomKey();
const functionKey = randomBytes(24).toString('base64url');

let guard: ReturnType<typeof guardLoopback>;
let mi: ManagedIdentityStandin;
let restoreEnv: () => void;
let vault: KeyVaultStandin;
let webhook: LocalHost;
let dps: LocalDps;
let work: string;
const privateKeys = new Map<string, string>();
const webhookLog: string[] = [];

beforeAll(async () => {
  guard = guardLoopback();
  mi = await startManagedIdentityStandin();
  restoreEnv = useManagedIdentityEnv(mi);
  vault = await startKeyVaultStandin({ acceptsToken: mi.isIssuedToken });
  work = await mkdtemp(join(tmpdir(), 'fleet-e2e-'));
  const rows = [];
  for (const [i, id] of IDS.entries()) {
    const pair = await keygen({ outDir: join(work, 'factory'), name: id });
    privateKeys.set(id, pair.privateKeyFile);
    rows.push({ registrationId: id, publicKeyFile: relative(work, pair.publicKeyFile), tags: `site=plant-${i + 1};desired.telemetryInterval=15`, disabled: String(i === 2) });
  }
  const manifest = await writeCsv(work, 'fleet.csv', rows);
  let out = '';
  const code = await main(['import', '--vault-url', vault.url, '--disable-challenge-resource-verification', '--manifest', manifest], {
    stdout: (t) => (out += t),
    stderr: (t) => (out += t),
    env: process.env,
  });
  expect(code, out).toBe(0);

  webhook = await startLocalHost({
    env: {
      KEY_VAULT_URL: vault.url,
      KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION: 'true',
      WEBHOOK_FUNCTION_KEY: functionKey,
      DPS_ID_SCOPE: ID_SCOPE,
    },
    port: 0,
    log: (line) => webhookLog.push(line),
  });
  const url = `${webhook.url}?code=${encodeURIComponent(functionKey)}`;
  dps = await startLocalDps({
    enrollments: { individualEnrollments: IDS.map((id) => individual(id, symmetricKey, url)), enrollmentGroups: [] },
    idScope: ID_SCOPE,
    retryAfterSeconds: 1,
    webhookRetry: { attempts: 3, firstDelayMs: 50, incrementMs: 50 },
    webhookTimeoutMs: 5_000,
  });
});

afterAll(async () => {
  await dps?.close();
  await webhook?.close();
  await vault?.stop();
  await mi?.stop();
  restoreEnv?.();
  guard?.restore();
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

const registerDevice = (id: string) =>
  register({ registrationId: id, idScope: ID_SCOPE, privateKeyFile: privateKeys.get(id)!, symmetricKey, host: dps.httpsHost, caFile: dps.caFile, transport: 'http', timeoutMs: 20_000 });

test('an imported device registers through the local DPS, with the manifest tags in its twin', async () => {
  const result = await registerDevice('pump-0002');
  expect(result).toMatchObject({ registrationId: 'pump-0002', status: 'assigned', deviceId: 'pump-0002' });
  const record = dps.registrations().find((r) => r.registrationId === 'pump-0002' && r.status === 'assigned');
  expect(record?.initialTwin).toMatchObject({ tags: { site: 'plant-2' } });
  expect(JSON.stringify(record?.initialTwin)).toContain('device-pump-0002/');
});

test('a device imported disabled is refused by the webhook (device_key_disabled)', async () => {
  const error = await registerDevice('pump-0003').then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(SampleDeviceError);
  expect((error as SampleDeviceError).code).toBe('refused');
  expect(webhookLog.join('\n')).toContain('device_key_disabled');
  expect(guard.blocked).toEqual([]);
});
