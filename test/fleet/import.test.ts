/**
 * `fleet import` against the Key Vault stand-in through the real SecretClient and a real ManagedIdentityCredential
 * (the loopback managed identity stand-in, IDENTITY_ENDPOINT for the whole file): a clean import, a second run that
 * writes nothing, bad rows that write nothing and are named by line, conflicts left alone or rotated with --replace,
 * throttling and injected 5xx with nothing lost, disabled rows that the webhook refuses as device_key_disabled.
 */
import { ManagedIdentityCredential } from '@azure/identity';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createWebhook } from '../../functions/app/compose.js';
import { loadConfig } from '../../functions/config.js';
import { deviceSecretName, groupSecretName } from '../../functions/keys/names.js';
import { main } from '../../fleet/cli.js';
import { importFleet } from '../../fleet/commands/import.js';
import { createSecretClientVault } from '../../fleet/vault.js';
import { allocationRequest, deviceClaims, ID_SCOPE, signToken } from '../support/devices.js';
import { startKeyVaultStandin, type KeyVaultStandin, type KeyVaultWriteLimit } from '../support/keyvault-standin.js';
import { startManagedIdentityStandin, useManagedIdentityEnv, type ManagedIdentityStandin } from '../support/managed-identity-standin.js';
import { guardLoopback } from '../support/security.js';
import { csvLines, expectedDigest, fleetDevice, fleetDevices, publicJwkOf, writeCsv, writeJsonl, type Captured, type FleetDevice } from './helpers.js';

let guard: ReturnType<typeof guardLoopback>;
let mi: ManagedIdentityStandin;
let restoreEnv: () => void;
let dir: string;
const vaults: KeyVaultStandin[] = [];
/** Every private and public key body made in this file: none may appear in any output. */
const keyBodies: string[] = [];

beforeAll(async () => {
  guard = guardLoopback();
  mi = await startManagedIdentityStandin();
  restoreEnv = useManagedIdentityEnv(mi);
  dir = await mkdtemp(join(tmpdir(), 'fleet-import-'));
});
afterAll(async () => {
  await Promise.all(vaults.map((v) => v.stop()));
  await mi?.stop();
  restoreEnv?.();
  guard?.restore();
  await rm(dir, { recursive: true, force: true });
});

async function newVault(writeLimit?: KeyVaultWriteLimit): Promise<KeyVaultStandin> {
  const vault = await startKeyVaultStandin({ acceptsToken: mi.isIssuedToken, ...(writeLimit !== undefined && { writeLimit }) });
  vaults.push(vault);
  return vault;
}

function remember(devices: readonly FleetDevice[]): void {
  for (const d of devices) {
    for (const pem of [d.publicPem, d.privatePem]) keyBodies.push(pem.split('\n')[1]!);
  }
}

async function cli(vault: KeyVaultStandin, args: string[]): Promise<Captured> {
  let stdout = '';
  let stderr = '';
  const code = await main(['import', '--vault-url', vault.url, '--disable-challenge-resource-verification', ...args], {
    stdout: (t) => (stdout += `${t}\n`),
    stderr: (t) => (stderr += t),
    env: process.env,
    isTTY: false,
  });
  expectNoKeyMaterial(stdout + stderr);
  return { code, stdout, stderr };
}

function expectNoKeyMaterial(text: string): void {
  for (const body of keyBodies) expect(text).not.toContain(body);
  expect(text).not.toMatch(/-----BEGIN|mi-standin\./);
}

async function reportOf(file: string): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(file, 'utf8');
  expectNoKeyMaterial(text);
  return text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('a clean import, then a second run', () => {
  let vault: KeyVaultStandin;
  let devices: FleetDevice[];
  let manifest: string;
  let group: FleetDevice;
  let jwkDevice: FleetDevice;
  let fileDevice: FleetDevice;

  beforeAll(async () => {
    vault = await newVault();
    devices = await fleetDevices('clean', 40);
    group = await fleetDevice('line-7');
    jwkDevice = await fleetDevice('Sensor.JWK:1');
    fileDevice = await fleetDevice('from-file');
    remember([...devices, group, jwkDevice, fileDevice]);
    await writeFile(join(dir, 'from-file.pub.pem'), fileDevice.publicPem);
    manifest = await writeCsv(dir, 'clean.csv', [
      ...devices.map((d, i) => ({
        registrationId: d.id,
        publicKey: d.publicPem,
        ...(i % 3 === 0 && { tags: `site=plant-${i};desired.telemetryInterval=60;owner@team+x:y=ops` }),
        ...(i % 5 === 0 && { disabled: 'true' }),
      })),
      { groupId: group.id, publicKey: group.publicPem },
      { registrationId: jwkDevice.id, publicKey: JSON.stringify(await publicJwkOf(jwkDevice)) },
      { registrationId: fileDevice.id, publicKeyFile: 'from-file.pub.pem', disabled: 'false' },
    ]);
  });

  test('stores every key once, as SPKI PEM with the digest tag, its tags and enabled state; exit 0', async () => {
    const r = await cli(vault, ['--manifest', manifest]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('created 43, updated 0, unchanged 0, refused 0, conflicts 0, failed 0');
    expect(vault.writeCounts()).toMatchObject({ writes: 43, throttled: 0, listCalls: 1 });

    devices.forEach((d, i) => {
      const versions = vault.versions(deviceSecretName(d.id));
      expect(versions).toHaveLength(1);
      const v = versions[0]!;
      expect(v.value).toBe(`${d.publicPem.trim()}\n`);
      expect(v.contentType).toBe('application/x-pem-file');
      expect(v.enabled).toBe(i % 5 !== 0);
      expect(v.tags).toEqual({
        'public-key-sha256': expectedDigest(d.publicPem),
        ...(i % 3 === 0 && { site: `plant-${i}`, 'desired.telemetryInterval': '60', 'owner@team+x:y': 'ops' }),
      });
    });
    expect(vault.versions(groupSecretName(group.id))[0]!.tags).toEqual({ 'public-key-sha256': expectedDigest(group.publicPem) });
    // A JWK is stored as SPKI PEM (CONTRACTS item 1), under the hashed name its id maps to.
    const jwk = vault.versions(deviceSecretName(jwkDevice.id));
    expect(deviceSecretName(jwkDevice.id)).toMatch(/^devicehash-/);
    expect(jwk[0]!.value).toBe(`${jwkDevice.publicPem.trim()}\n`);
    expect(jwk[0]!.tags['public-key-sha256']).toBe(expectedDigest(jwkDevice.publicPem));
    expect(vault.versions(deviceSecretName(fileDevice.id))[0]!.value).toBe(`${fileDevice.publicPem.trim()}\n`);

    const report = await reportOf(`${manifest}.report.jsonl`);
    expect(report).toHaveLength(43);
    expect(report.every((l) => l.outcome === 'created' && l.reason === 'new')).toBe(true);
    expect(report.find((l) => l.line === 2)).toMatchObject({ id: 'clean-0', secretName: 'device-clean-0', digest: expectedDigest(devices[0]!.publicPem) });
  });

  test('a second run reads the listing once (2 pages of 25) and writes nothing', async () => {
    vault.resetWriteCounts();
    const r = await cli(vault, ['--manifest', manifest]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('created 0, updated 0, unchanged 43');
    expect(vault.writeCounts()).toMatchObject({ writes: 0, listCalls: 2, versionListCalls: 0 });
    expect((await reportOf(`${manifest}.report.jsonl`)).every((l) => l.outcome === 'unchanged' && l.reason === 'same_key')).toBe(true);
  });

  test('the listing is paged (25 a page) and every page is read once', async () => {
    for (let i = 0; i < 30; i++) vault.setSecret(`other-secret-${i}`, 'not ours');
    vault.resetWriteCounts();
    const r = await cli(vault, ['--manifest', manifest]);
    expect(r.code).toBe(0);
    expect(vault.writeCounts()).toMatchObject({ writes: 0, listCalls: Math.ceil(vault.secretNames().length / 25) });
  });

  test('--dry-run says what it would do and writes nothing', async () => {
    const extra = await fleetDevice('dry-new');
    remember([extra]);
    const rows = [{ registrationId: devices[1]!.id, publicKey: devices[1]!.publicPem }, { registrationId: extra.id, publicKey: extra.publicPem }];
    const file = await writeCsv(dir, 'dry.csv', rows);
    const [first, second] = csvLines(rows);
    vault.resetWriteCounts();
    const r = await cli(vault, ['--manifest', file, '--dry-run']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`line ${first}: unchanged device clean-1 (device-clean-1)`);
    expect(r.stdout).toContain(`line ${second}: would create device dry-new (device-dry-new, sha256 ${expectedDigest(extra.publicPem)}, enabled)`);
    expect(r.stdout).toContain('would create 1, would update 0, unchanged 1');
    expect(vault.writeCounts().writes).toBe(0);
    expect(vault.versions('device-dry-new')).toEqual([]);
  });
});

describe('JSON Lines, with the same names', () => {
  test('tags as an object, disabled as a boolean, a JWKS of two keys stored as two PEM blocks', async () => {
    const vault = await newVault();
    const [a, b, c] = await fleetDevices('jl', 3);
    remember([a!, b!, c!]);
    const file = await writeJsonl(dir, 'fleet.jsonl', [
      { registrationId: a!.id, publicKey: a!.publicPem, tags: { site: 'x', 'desired.mode': 'eco' }, disabled: true },
      '',
      { registrationId: b!.id, publicKey: { keys: [await publicJwkOf(b!), await publicJwkOf(c!)] } },
    ]);
    const r = await cli(vault, ['--manifest', file]);
    expect(r.code, r.stderr).toBe(0);
    expect(vault.versions(deviceSecretName(a!.id))[0]).toMatchObject({ enabled: false, tags: { site: 'x', 'desired.mode': 'eco' } });
    const two = vault.versions(deviceSecretName(b!.id))[0]!;
    expect(two.value).toBe(`${b!.publicPem.trim()}\n${c!.publicPem.trim()}\n`);
    // CONTRACTS item 1: the digest of two blocks is over both DERs in order.
    const { createHash, createPublicKey } = await import('node:crypto');
    const der = (pem: string) => createPublicKey(pem).export({ type: 'spki', format: 'der' });
    expect(two.tags['public-key-sha256']).toBe(createHash('sha256').update(der(b!.publicPem)).update(der(c!.publicPem)).digest('hex'));
  });
});

describe('bad rows: each named by line, field and reason; nothing written', () => {
  let vault: KeyVaultStandin;
  let file: string;
  let good: FleetDevice[];
  let privateDevice: FleetDevice;
  /** The file line of each row, by its position in the list below (0 = first row). */
  let at: number[];

  beforeAll(async () => {
    vault = await newVault();
    good = await fleetDevices('good', 3);
    privateDevice = await fleetDevice('has-private');
    const p384 = await fleetDevice('p384-dev', 'ES384');
    const dup = await fleetDevice('Dup-1');
    remember([...good, privateDevice, p384, dup]);
    const fifteen = Array.from({ length: 15 }, (_, i) => `t${i}=v`).join(';');
    const rows = [
      { registrationId: good[0]!.id, publicKey: good[0]!.publicPem }, // line 2
      { registrationId: 'bad id!', publicKey: good[1]!.publicPem }, // 3
      { registrationId: 'Dup-1', publicKey: dup.publicPem }, // 4
      { registrationId: 'dup-1', publicKey: dup.publicPem }, // 5
      { registrationId: privateDevice.id, publicKey: privateDevice.privatePem }, // 6
      { registrationId: p384.id, publicKey: p384.publicPem }, // 7
      { registrationId: 'tag-space', publicKey: good[1]!.publicPem, tags: 'has space=x' }, // 8
      { registrationId: 'tag-dollar', publicKey: good[1]!.publicPem, tags: '$version=1' }, // 9
      { registrationId: 'tag-many', publicKey: good[1]!.publicPem, tags: fifteen }, // 10
      { registrationId: 'tag-long', publicKey: good[1]!.publicPem, tags: `k=${'v'.repeat(257)}` }, // 11
      { registrationId: 'tag-digest', publicKey: good[1]!.publicPem, tags: 'public-key-sha256=00' }, // 12
      { registrationId: 'no-key' }, // 13
      { registrationId: 'both', groupId: 'both', publicKey: good[1]!.publicPem }, // 14
      { registrationId: 'dis', publicKey: good[1]!.publicPem, disabled: 'maybe' }, // 15
      { registrationId: 'not-a-key', publicKey: 'hello' }, // 16
      { registrationId: 'missing-file', publicKeyFile: 'nope.pem' }, // 17
      { registrationId: 'tag-dot', publicKey: good[1]!.publicPem, tags: 'a.b=1' }, // 18
      { registrationId: 'x'.repeat(129), publicKey: good[1]!.publicPem }, // 19
      { registrationId: good[2]!.id, publicKey: good[2]!.publicPem }, // 20
    ];
    file = await writeCsv(dir, 'bad.csv', rows);
    at = csvLines(rows);
  });

  test('exit 3, no vault call at all, every bad line listed with its reason', async () => {
    const r = await cli(vault, ['--manifest', file]);
    expect(r.code).toBe(3);
    expect(vault.writeCounts()).toMatchObject({ writes: 0, listCalls: 0 });
    expect(r.stderr).toContain('17 of 19 rows refused');
    const report = await reportOf(`${file}.report.jsonl`);
    const reasons = Object.fromEntries(report.map((l) => [l.line, `${String(l.field)}:${String(l.reason)}`]));
    expect(reasons).toEqual({
      [at[1]!]: 'registrationId:id_invalid',
      [at[2]!]: 'registrationId:duplicate_id',
      [at[3]!]: 'registrationId:duplicate_id',
      [at[4]!]: 'publicKey:key_private',
      [at[5]!]: 'publicKey:key_algorithm',
      [at[6]!]: 'tags:tags_invalid',
      [at[7]!]: 'tags:tags_invalid',
      [at[8]!]: 'tags:tags_too_many',
      [at[9]!]: 'tags:tags_invalid',
      [at[10]!]: 'tags:tag_reserved',
      [at[11]!]: 'publicKey:key_missing',
      [at[12]!]: 'registrationId:id_ambiguous',
      [at[13]!]: 'disabled:disabled_invalid',
      [at[14]!]: 'publicKey:key_unusable',
      [at[15]!]: 'publicKeyFile:key_file_unreadable',
      [at[16]!]: 'tags:tags_invalid',
      [at[17]!]: 'registrationId:id_invalid',
    });
    for (const line of Object.keys(reasons)) expect(r.stderr).toMatch(new RegExp(`^line ${line}: `, 'm'));
    expect(r.stderr).toContain(`line ${at[2]}: registrationId: Dup-1 is also on line ${at[3]} (ids are case-insensitive)`);
    expect(r.stderr).toContain(`line ${at[4]}: publicKey: a PRIVATE key (not shown)`);
    expect(r.stderr).toContain(`line ${at[5]}: publicKey: a key for ES384; the webhook accepts ES256`);
  });

  test('--skip-invalid imports the valid rows and reports the rest', async () => {
    const r = await cli(vault, ['--manifest', file, '--skip-invalid']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('created 2, updated 0, unchanged 0, refused 17');
    expect(vault.secretNames()).toEqual([deviceSecretName(good[0]!.id), deviceSecretName(good[2]!.id)].sort());
  });

  test('a JSON Lines row that is not JSON, or has an unknown field, is named by line', async () => {
    const jl = await writeJsonl(dir, 'bad.jsonl', [{ registrationId: good[0]!.id, publicKey: good[0]!.publicPem }, '{not json', { registrationId: 'x', publicKey: 'y', disable: true }]);
    const r = await cli(vault, ['--manifest', jl]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('line 2: row: not valid JSON');
    expect(r.stderr).toContain('line 3: disable: not a manifest field');
  });

  test('an unknown CSV column stops the run before any row (a misspelt "disabled" must not enable devices)', async () => {
    const csv = join(dir, 'bad-header.csv');
    await writeFile(csv, `registrationId,publicKey,disable\n${good[0]!.id},x,true\n`);
    const r = await cli(vault, ['--manifest', csv]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('line 1: unknown column "disable"');
  });
});

describe('a stored key that differs', () => {
  test('is reported and left alone (exit 6), and rotated with --replace: one new version', async () => {
    const vault = await newVault();
    const [old, rotated] = await fleetDevices('rot', 2);
    remember([old!, rotated!]);
    const name = deviceSecretName('rot-dev');
    vault.setSecret(name, old!.publicPem, { tags: { 'public-key-sha256': expectedDigest(old!.publicPem) }, contentType: 'application/x-pem-file' });
    const file = await writeCsv(dir, 'rot.csv', [{ registrationId: 'rot-dev', publicKey: rotated!.publicPem }]);

    const r = await cli(vault, ['--manifest', file]);
    expect(r.code).toBe(6);
    expect(r.stderr).toMatch(/line \d+: conflict: device rot-dev/);
    expect(r.stderr).toContain('conflict: device rot-dev (device-rot-dev) holds a different key; left alone');
    expect(vault.versions(name)).toHaveLength(1);
    expect((await reportOf(`${file}.report.jsonl`))[0]).toMatchObject({ outcome: 'conflict', reason: 'key_differs', storedDigest: expectedDigest(old!.publicPem) });

    const replaced = await cli(vault, ['--manifest', file, '--replace']);
    expect(replaced.code, replaced.stderr).toBe(0);
    expect(replaced.stdout).toContain('updated 1');
    expect(vault.versions(name).map((v) => v.tags['public-key-sha256'])).toEqual([expectedDigest(old!.publicPem), expectedDigest(rotated!.publicPem)]);
    expect((await cli(vault, ['--manifest', file, '--replace'])).stdout).toContain('unchanged 1');
    expect(vault.versions(name)).toHaveLength(2);
  });

  test('same key, other tags or enabled state (an activated device) is a conflict too; a secret without the digest tag cannot be compared', async () => {
    const vault = await newVault();
    const [d, e] = await fleetDevices('meta', 2);
    remember([d!, e!]);
    vault.setSecret(deviceSecretName(d!.id), d!.publicPem, { tags: { 'public-key-sha256': expectedDigest(d!.publicPem), site: 'activated' } });
    vault.setSecret(deviceSecretName(e!.id), e!.publicPem, { tags: { 'file-encoding': 'utf-8' } });
    const file = await writeCsv(dir, 'meta.csv', [{ registrationId: d!.id, publicKey: d!.publicPem, disabled: 'true' }, { registrationId: e!.id, publicKey: e!.publicPem }]);
    const r = await cli(vault, ['--manifest', file]);
    expect(r.code).toBe(6);
    const report = await reportOf(`${file}.report.jsonl`);
    expect(report.map((l) => l.reason)).toEqual(['metadata_differs', 'digest_missing']);
    expect(vault.writeCounts().writes).toBe(0);
  });
});

describe('throttling and injected 5xx mid-run: nothing lost, nothing twice', () => {
  async function run(vault: KeyVaultStandin, file: string, limit: KeyVaultWriteLimit) {
    return importFleet({
      manifest: file,
      vault: createSecretClientVault({ url: vault.url, credential: new ManagedIdentityCredential(), disableChallengeResourceVerification: true }),
      writeLimit: limit,
      concurrency: 8,
      retry: { attempts: 8, baseDelayMs: 50, maxDelayMs: 400 },
    });
  }

  test('a vault shared with another writer (its limit below ours) answers 429s; all retried, every key stored once', async () => {
    const vault = await newVault({ writes: 10, windowMs: 500 });
    const devices = await fleetDevices('thr', 60);
    remember(devices);
    const file = await writeCsv(dir, 'thr.csv', devices.map((d) => ({ registrationId: d.id, publicKey: d.publicPem })));
    // We think we may write 30 per 500 ms; the vault allows 10.
    const summary = await run(vault, file, { writes: 30, windowMs: 500 });
    expect(summary).toMatchObject({ created: 60, failed: 0, skipped: 0 });
    expect(summary.vault.throttled).toBeGreaterThan(0);
    expect(summary.vault.throttled).toBe(vault.writeCounts().throttled);
    for (const d of devices) expect(vault.versions(deviceSecretName(d.id))).toHaveLength(1);
  });

  test('5xx answers, some after the version was stored: checked against the versions, never written twice', async () => {
    const vault = await newVault({ writes: 40, windowMs: 500 });
    const devices = await fleetDevices('flt', 40);
    remember(devices);
    const file = await writeCsv(dir, 'flt.csv', devices.map((d) => ({ registrationId: d.id, publicKey: d.publicPem })));
    vault.failWrites({ status: 500, count: 4, afterWrites: 10, stored: true });
    const first = run(vault, file, { writes: 40, windowMs: 500 });
    // Once those are spent, the vault goes unavailable for a few writes without storing them.
    const timer = setInterval(() => {
      if (vault.writeCounts().faulted >= 4) {
        vault.failWrites({ status: 503, count: 5 });
        clearInterval(timer);
      }
    }, 5);
    const summary = await first;
    clearInterval(timer);
    expect(vault.writeCounts().faulted).toBe(9);
    expect(summary).toMatchObject({ created: 40, failed: 0 });
    expect(summary.vault.unavailable).toBe(9);
    expect(summary.vault.versionListCalls).toBe(9);
    for (const d of devices) expect(vault.versions(deviceSecretName(d.id))).toHaveLength(1);
  });

  test('retries spent: the row fails with a stable reason, the run says so (exit 7), and the next run finishes it', async () => {
    const vault = await newVault();
    const [d] = await fleetDevices('spent', 1);
    remember([d!]);
    const file = await writeCsv(dir, 'spent.csv', [{ registrationId: d!.id, publicKey: d!.publicPem }]);
    vault.failWrites({ status: 503, count: 100 });
    const summary = await importFleet({
      manifest: file,
      vault: createSecretClientVault({ url: vault.url, credential: new ManagedIdentityCredential(), disableChallengeResourceVerification: true }),
      retry: { attempts: 3, baseDelayMs: 10, maxDelayMs: 20 },
    });
    expect(summary).toMatchObject({ failed: 1, created: 0 });
    vault.failWrites({ status: 503, count: 0 });
    const r = await cli(vault, ['--manifest', file]);
    expect(r.code).toBe(0);
    expect(vault.versions(deviceSecretName(d!.id))).toHaveLength(1);
  });
});

describe('disabled rows are stored disabled: the webhook answers device_key_disabled', () => {
  test('through createWebhook with KEY_VAULT_URL at the stand-in', async () => {
    const vault = await newVault();
    const [on, off] = await fleetDevices('hook', 2);
    remember([on!, off!]);
    const file = await writeCsv(dir, 'hook.csv', [
      { registrationId: on!.id, publicKey: on!.publicPem, tags: 'site=plant-9;desired.interval=30' },
      { registrationId: off!.id, publicKey: off!.publicPem, disabled: 'true' },
    ]);
    expect((await cli(vault, ['--manifest', file])).code).toBe(0);
    const hook = await createWebhook(
      loadConfig({ KEY_VAULT_URL: vault.url, KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION: 'true', DPS_ID_SCOPE: ID_SCOPE }),
    );
    try {
      const now = Math.floor(Date.now() / 1000);
      const ask = async (device: FleetDevice) => {
        const token = await signToken(device.privateKey, deviceClaims({ id: device.id } as never, now));
        return hook.handle({ body: JSON.stringify(allocationRequest({ registrationId: device.id, token })), contentType: 'application/json' });
      };
      const admitted = await ask(on!);
      expect(admitted.status).toBe(200);
      expect(JSON.stringify(admitted.body)).toContain('plant-9');
      const refused = await ask(off!);
      expect(refused.body).toMatchObject({ code: 'device_key_disabled' });
    } finally {
      await hook.close();
    }
  });
});

describe('failures of the vault and of the command line', () => {
  let file: string;
  beforeAll(async () => {
    const [d] = await fleetDevices('fail', 1);
    remember([d!]);
    file = await writeCsv(dir, 'fail.csv', [{ registrationId: d!.id, publicKey: d!.publicPem }]);
  });

  test('an identity the vault refuses: exit 5 with a hint, nothing written', async () => {
    const vault = await startKeyVaultStandin({ acceptsToken: () => false });
    vaults.push(vault);
    const r = await cli(vault, ['--manifest', file]);
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/error: list secrets: refused \(HTTP 401/);
    expect(r.stderr).toContain('hint: the identity needs to list secrets');
    expect(vault.writeCounts().writes).toBe(0);
  });

  test('a vault that cannot be reached: exit 4 after the client retried the page, nothing written', async () => {
    const vault = await newVault();
    const url = vault.url;
    await vault.stop();
    const failure = await importFleet({
      manifest: file,
      vault: createSecretClientVault({ url, credential: new ManagedIdentityCredential(), disableChallengeResourceVerification: true, listRetry: { maxRetries: 2, retryDelayInMs: 10, maxRetryDelayInMs: 20 } }),
    }).then(
      () => expect.fail('the import should have failed'),
      (e: unknown) => e as { code: string; message: string; exitCode: number },
    );
    expect(failure).toMatchObject({ code: 'vault_unavailable', exitCode: 4 });
    expect(failure.message).toMatch(/list secrets: ECONNREFUSED .*nothing was written/);
  });

  test.each([
    [['--manifest', 'x.csv', '--write-limit', '400'], '--write-limit 400 is above Key Vault\'s limit of 300 per 10 s'],
    [['--manifest', 'x.csv', '--write-limit', '31/1'], '--write-limit 31/1 is above'],
    [['--manifest', 'x.csv', '--write-limit', 'fast'], '--write-limit must be N or N/SECONDS'],
    [['--manifest', 'x.txt'], 'cannot tell the format from the extension'],
    [['--manifest', 'x.csv', '--concurrency', '0'], '--concurrency must be a whole number from 1 to 64'],
    [['--manifest', 'x.csv', '--algorithms', 'HS256'], '--algorithms "HS256" is not one of'],
    [['--manifest', 'x.csv', '--credential', 'password'], '--credential must be one of'],
    [['--manifest', 'x.csv', '--nope'], '--nope is not an option of `import`'],
    [[], '--manifest is required'],
  ])('usage error %j', async (args, message) => {
    const vault = await newVault();
    const r = await cli(vault, args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(vault.writeCounts()).toMatchObject({ writes: 0, listCalls: 0 });
  });

  test('a missing manifest file: exit 3', async () => {
    const vault = await newVault();
    const r = await cli(vault, ['--manifest', join(dir, 'absent.csv')]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('absent.csv: no such file');
  });
});

test('never connected anywhere but loopback', () => {
  expect(guard.blocked).toEqual([]);
});
