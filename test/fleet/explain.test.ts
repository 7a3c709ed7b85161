/**
 * `fleet explain` through its command line, in process: against a key folder (DEVICE_KEYS_DIR, read through
 * --settings as the function reads local.settings.json) and against the Key Vault stand-in through the real
 * SecretClient and ManagedIdentityCredential (the loopback managed identity stand-in). Each refusal names the failing
 * check, the code the webhook answers and what to do; nothing printed holds the token or key material; without a
 * token it reports the entries; the replay store is never opened.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { EXIT_CODES } from '../../fleet/errors.js';
import { CHECKS } from '../../functions/core/checks.js';
import { main } from '../../fleet/cli.js';
import { DIGEST_TAG } from '../../fleet/keys.js';
import { deviceSecretName, groupSecretName } from '../../functions/keys/names.js';
import { deviceClaims, deviceToken, HUBS, ID_SCOPE, keysDir, makeDevice, publicJwk, signToken, type TestDevice } from '../support/devices.js';
import { startKeyVaultStandin, type KeyVaultStandin } from '../support/keyvault-standin.js';
import { startManagedIdentityStandin, useManagedIdentityEnv, type ManagedIdentityStandin } from '../support/managed-identity-standin.js';
import { guardLoopback } from '../support/security.js';
import { expectedDigest } from './helpers.js';

const NOW = Date.parse('2026-11-21T12:00:00Z');
const now = Math.floor(NOW / 1000);
const AT = ['--at', '2026-11-21T12:00:00Z'];

let guard: ReturnType<typeof guardLoopback>;
let dir: string;
let alice: TestDevice;
let bob: TestDevice;
let sleeper: TestDevice;
let keyed: TestDevice;
/** Every token and key body made here: none may appear in any output. */
const secrets: string[] = [];

async function remember(...devices: TestDevice[]): Promise<void> {
  for (const d of devices) {
    secrets.push(d.publicPem.split('\n')[1]!);
    const jwk = await publicJwk(d);
    secrets.push(jwk.x as string, jwk.y as string);
  }
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function expectNoSecrets(text: string): void {
  for (const secret of secrets) {
    expect(text).not.toContain(secret);
    // Any of a token's three segments.
    for (const part of secret.split('.')) if (part.length > 16) expect(text).not.toContain(part);
  }
  expect(text).not.toMatch(/-----BEGIN|mi-standin\.|AccountKey/);
}

async function explain(args: string[], env: Record<string, string | undefined> = {}, stdin?: string): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await main(['explain', ...args], {
    stdout: (t) => (stdout += `${t}\n`),
    stderr: (t) => (stderr += t),
    env,
    ...(stdin !== undefined && { readStdin: async () => stdin }),
  });
  expectNoSecrets(stdout + stderr);
  return { code, stdout, stderr };
}

let fileCount = 0;
async function tokenFile(token: string): Promise<string> {
  secrets.push(token);
  const file = join(dir, `token-${(fileCount += 1)}.jwt`);
  await writeFile(file, `${token}\n`);
  return file;
}

async function settingsFile(values: Record<string, string>): Promise<string> {
  const file = join(dir, `settings-${(fileCount += 1)}.json`);
  await writeFile(file, JSON.stringify({ IsEncrypted: false, Values: values }));
  return file;
}

/** The line of one check in the output. */
const checkLine = (out: string, check: string) => out.split('\n').find((l) => new RegExp(`^  (pass|FAIL|skip|--) +${check} `).test(l));

beforeAll(async () => {
  guard = guardLoopback();
  dir = await mkdtemp(join(tmpdir(), 'fleet-explain-'));
  [alice, bob, sleeper, keyed] = await Promise.all([makeDevice('sensor-0042'), makeDevice('sensor-0043'), makeDevice('sensor-asleep'), makeDevice('sensor-kid')]);
  await remember(alice, bob, sleeper, keyed);
});
afterAll(async () => {
  guard?.restore();
  await rm(dir, { recursive: true, force: true });
});

describe('against a key folder, with the settings file the function reads', () => {
  let settings: string;
  let keys: string;

  beforeAll(async () => {
    keys = await keysDir([alice, sleeper]);
    await writeFile(join(keys, `${sleeper.id}.meta`), JSON.stringify({ enabled: false, tags: { site: 'lyon' } }), { mode: 0o644 });
    await writeFile(join(keys, `${keyed.id}.jwk`), JSON.stringify({ keys: [await publicJwk(keyed, { kid: 'k1' })] }), { mode: 0o644 });
    settings = await settingsFile({ DEVICE_KEYS_DIR: keys, DPS_ID_SCOPE: ID_SCOPE });
  });

  test('an admitted device passes every check and is given one of the linked hubs', async () => {
    const file = await tokenFile(await deviceToken(alice, now));
    const run = await explain([alice.id, '--settings', settings, '--token-file', file, '--linked-hub', HUBS[0]!, '--linked-hub', HUBS[1]!, ...AT]);
    expect(run.code).toBe(EXIT_CODES.ok);
    expect(run.stdout).not.toMatch(/FAIL|not reached/);
    expect(checkLine(run.stdout, 'signature')).toMatch(/^  pass/);
    expect(checkLine(run.stdout, 'replay')).toMatch(/^  skip +replay +REPLAY_STORE is off/);
    expect(run.stdout).toMatch(new RegExp(`Answer: 200 assigned: DPS assigns the device to (${HUBS.join('|').replace(/\./g, '\\.')})\\.`));
    expect(run.stdout).toContain(`stored as  ${alice.id}.pem`);
    expect(run.stdout).toContain(`sha256     ${expectedDigest(alice.publicPem)}`);
  });

  // Facts are functions: the table is read when the tests are collected, before the devices exist.
  const refusals: Array<[string, () => Promise<{ id: string; token: string }>, string, string, () => RegExp[]]> = [
    ['a disabled key', async () => ({ id: sleeper.id, token: await deviceToken(sleeper, now) }), 'key-enabled', 'device_key_disabled',
      () => [/"enabled": true in sensor-asleep\.meta/, /disabled entry +device sensor-asleep/, /tags +site=lyon/]],
    ['a token for another DPS', async () => ({ id: alice.id, token: await deviceToken(alice, now, { aud: '0ne00OTHER', id_scope: '0ne00OTHER' }) }), 'audience', 'token_audience_mismatch',
      () => [/token aud +"0ne00OTHER"/, /token id_scope +"0ne00OTHER"/, new RegExp(`DPS_ID_SCOPE +${ID_SCOPE}`)]],
    ['a device clock ten minutes ahead', async () => ({ id: alice.id, token: await deviceToken(alice, now + 600) }), 'token-times', 'token_issued_in_future',
      () => [/clock +the device's clock is about 600 s ahead; JWT_CLOCK_SKEW_SECONDS allows 60 s/, /set its clock/]],
    ['an expired token', async () => ({ id: alice.id, token: await deviceToken(alice, now - 1000) }), 'token-times', 'token_expired',
      () => [/clock +expired 700 s ago; JWT_CLOCK_SKEW_SECONDS allows 60 s/]],
    ['an unknown kid', async () => ({ id: keyed.id, token: await deviceToken(keyed, now, {}, { kid: 'k2' }) }), 'key-id', 'token_key_unknown',
      () => [/token kid +"k2"/, /kids on file +k1/, /fleet import --replace/]],
    ['another device\'s key', async () => ({ id: alice.id, token: await signToken(bob.privateKey, deviceClaims(alice, now)) }), 'signature', 'token_signature_invalid',
      () => [new RegExp(`public-key-sha256 ${expectedDigest(alice.publicPem)}`)]],
    ['a token naming another registration', async () => ({ id: alice.id, token: await deviceToken(alice, now, { sub: bob.id, registration_id: bob.id }) }), 'registration', 'token_registration_mismatch',
      () => [/token sub +"sensor-0043"/, /registration id +sensor-0042/]],
    ['a token without sub or registration_id', async () => ({ id: alice.id, token: await deviceToken(alice, now, { sub: undefined, registration_id: undefined }) }), 'registration', 'token_claim_missing',
      () => [/missing +sub \/ registration_id$/m]],
    ['no key on file', async () => ({ id: bob.id, token: await deviceToken(bob, now) }), 'key-found', 'device_key_not_found',
      () => [/names tried +sensor-0043\.pem\|\.jwk\|\.json/, /import the device's public key/]],
  ];
  test.each(refusals)('%s: the failing check, its code and what to do', async (_name, make, check, code, facts) => {
    const { id, token } = await make();
    const run = await explain([id, '--settings', settings, '--token-file', await tokenFile(token), ...AT]);
    expect(run.code).toBe(EXIT_CODES.refused);
    expect(checkLine(run.stdout, check)).toMatch(new RegExp(`^  FAIL  ${check} +${code}: `));
    expect(run.stdout.match(/^ {2}FAIL/gm)).toHaveLength(1);
    expect(run.stdout).toContain(`Answer: 403 ${code}: DPS fails the registration; the device sees status "failed", errorCode 400207 CustomAllocationFailed.`);
    for (const fact of facts()) expect(run.stdout).toMatch(fact);
    // Every check after the failing one is listed as not reached.
    expect(checkLine(run.stdout, 'twin')).toMatch(/^  -- +twin +not reached/);
  });

  test('--at decides at another instant: a token expired now was good when it was signed', async () => {
    const file = await tokenFile(await deviceToken(alice, now));
    expect((await explain([alice.id, '--settings', settings, '--token-file', file, '--at', String(now + 3600)])).code).toBe(EXIT_CODES.refused);
    expect((await explain([alice.id, '--settings', settings, '--token-file', file, '--at', String(now + 10)])).code).toBe(EXIT_CODES.ok);
  });

  test('the token is read from stdin, as the JWT or as the DPS payload around it', async () => {
    const token = await deviceToken(alice, now);
    secrets.push(token);
    for (const input of [token, JSON.stringify({ jwt: token })]) {
      const run = await explain([alice.id, '--settings', settings, '--token-file', '-', ...AT], {}, input);
      expect(run.code).toBe(EXIT_CODES.ok);
    }
  });

  test('with replay protection on, the jti is judged but never recorded: the replay store is not opened', async () => {
    // A table store on a port nobody listens on: opening it, or recording in it, would fail the decision.
    const replay = await settingsFile({
      DEVICE_KEYS_DIR: keys,
      DPS_ID_SCOPE: ID_SCOPE,
      REPLAY_STORE: 'table',
      REPLAY_TABLE_CONNECTION: 'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Zm9vYmFyYmF6;TableEndpoint=http://127.0.0.1:9/devstoreaccount1',
    });
    const file = await tokenFile(await deviceToken(alice, now));
    for (let i = 0; i < 2; i += 1) {
      const run = await explain([alice.id, '--settings', replay, '--token-file', file, ...AT]);
      expect(run.code).toBe(EXIT_CODES.ok);
      expect(checkLine(run.stdout, 'replay')).toMatch(/^  skip +replay +no replay store in this decision: the jti was not recorded/);
      expect(run.stdout).toContain('Note: explain does not record the jti; the webhook would (REPLAY_STORE=table)');
    }
    const without = await explain([alice.id, '--settings', replay, '--token-file', await tokenFile(await deviceToken(alice, now, { jti: undefined })), ...AT]);
    expect(checkLine(without.stdout, 'jti')).toMatch(/^  FAIL  jti +token_jti_missing/);
  });

  test('without a token: what the folder holds for the id, and whether any token could pass', async () => {
    const enabled = await explain([alice.id, '--settings', settings]);
    expect(enabled.code).toBe(EXIT_CODES.ok);
    expect(enabled.stdout).toMatch(/device +sensor-0042\.pem\|\.jwk\|\.json +enabled +<- the webhook uses this entry/);
    expect(enabled.stdout).not.toContain('Checks');
    const disabled = await explain([sleeper.id, '--settings', settings]);
    expect(disabled.code).toBe(EXIT_CODES.refused);
    expect(disabled.stdout).toContain('every token of this device is refused: device_key_disabled');
    const absent = await explain([bob.id, '--settings', settings]);
    expect(absent.code).toBe(EXIT_CODES.refused);
    expect(absent.stdout).toMatch(/device +sensor-0043\.pem\|\.jwk\|\.json +absent/);
    expect(absent.stdout).toContain('device_key_not_found');
  });

  test('a fleet key (DEVICE_PUBLIC_KEY) decides for a device without its own file', async () => {
    const fleet = await settingsFile({ DEVICE_KEYS_DIR: keys, DEVICE_PUBLIC_KEY: bob.publicPem.replace(/\n/g, '\\n'), DPS_ID_SCOPE: ID_SCOPE });
    const run = await explain([bob.id, '--settings', fleet, '--token-file', await tokenFile(await deviceToken(bob, now)), ...AT]);
    expect(run.code).toBe(EXIT_CODES.ok);
    expect(run.stdout).toMatch(/device +sensor-0043\.pem\|\.jwk\|\.json +absent/);
    expect(run.stdout).toMatch(/fleet +DEVICE_PUBLIC_KEY +enabled +<- the webhook uses this entry/);
    const only = await settingsFile({ DEVICE_PUBLIC_KEY: bob.publicPem, DPS_ID_SCOPE: ID_SCOPE });
    expect((await explain([bob.id, '--settings', only])).stdout).toMatch(/device +\(no DEVICE_KEYS_DIR\) +absent/);
  });

  test('a token given as an argument is refused and not echoed', async () => {
    const token = await deviceToken(alice, now);
    secrets.push(token);
    for (const args of [[alice.id, token], [token], [alice.id, '--linked-hub', token], [alice.id, `--token-file=${token}`], [alice.id, '--bogus', token]]) {
      const run = await explain([...args, '--settings', settings]);
      expect(run.code).toBe(EXIT_CODES.usage);
      expect(run.stderr).toContain('a token is never taken as an argument');
    }
    // An id with dots is not a token.
    expect((await explain(['building12.floor3.unit4', '--settings', settings])).stderr).not.toContain('never taken as an argument');
  });

  test('settings the function would refuse stop explain with exit 9, naming the setting', async () => {
    const run = await explain([alice.id, '--settings', await settingsFile({ DEVICE_KEYS_DIR: keys })]);
    expect(run.code).toBe(EXIT_CODES.settings);
    expect(run.stderr).toMatch(/error: DPS_ID_SCOPE: is required/);
    const broken = join(dir, 'broken.json');
    await writeFile(broken, '{ not json');
    expect((await explain([alice.id, '--settings', broken])).code).toBe(EXIT_CODES.settings);
    expect((await explain([alice.id, '--settings', join(dir, 'missing.json')])).stderr).toMatch(/cannot be read \(ENOENT\)/);
  });

  test('the help lists the exit codes explain ends with; import\'s help does not', async () => {
    const help = await explain(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/ {4}8 {2}refused /);
    expect(help.stdout).toMatch(/ {4}9 {2}settings /);
    let importHelp = '';
    await main(['import', '--help'], { stdout: (t) => (importHelp += t), stderr: () => {}, env: {} });
    expect(importHelp).toContain('130  interrupted');
    expect(importHelp).not.toMatch(/ 8 {2}refused| 9 {2}settings/);
  });

  test('bad arguments are usage errors', async () => {
    expect((await explain(['bad id!', '--settings', settings])).code).toBe(EXIT_CODES.usage);
    expect((await explain([alice.id, '--linked-hub', 'not a host'])).stderr).toContain('--linked-hub');
    expect((await explain([alice.id, '--at', 'yesterday'])).stderr).toContain('--at must be an ISO 8601 time');
    expect((await explain([alice.id, '--token-file', join(dir, 'nope.jwt')])).stderr).toContain('--token-file cannot be read (ENOENT)');
  });
});

describe('against Key Vault (stand-in), as the function reaches it', () => {
  let mi: ManagedIdentityStandin;
  let vault: KeyVaultStandin;
  let restoreEnv: () => void;
  let settings: string;
  let identityEnv: Record<string, string | undefined>;
  let grouped: TestDevice;
  const dotted = 'plant.7:sensor_9';

  beforeAll(async () => {
    mi = await startManagedIdentityStandin();
    restoreEnv = useManagedIdentityEnv(mi);
    identityEnv = { IDENTITY_ENDPOINT: process.env.IDENTITY_ENDPOINT, IDENTITY_HEADER: process.env.IDENTITY_HEADER, AZURE_TOKEN_CREDENTIALS: 'prod' };
    vault = await startKeyVaultStandin({ acceptsToken: mi.isIssuedToken });
    grouped = await makeDevice('line7-unit-3');
    await remember(grouped);
    vault.setSecret(deviceSecretName(alice.id), alice.publicPem, { tags: { [DIGEST_TAG]: expectedDigest(alice.publicPem), owner: 'acme' } });
    vault.setSecret(deviceSecretName(sleeper.id), sleeper.publicPem, { enabled: false, tags: { [DIGEST_TAG]: expectedDigest(sleeper.publicPem), site: 'lyon' } });
    vault.setSecret(deviceSecretName(keyed.id), JSON.stringify({ keys: [await publicJwk(keyed, { kid: 'k1' }), await publicJwk(bob, { kid: 'k0' })] }));
    vault.setSecret(groupSecretName('line-7'), grouped.publicPem);
    vault.setSecret(deviceSecretName(dotted), alice.publicPem);
    vault.setSecret('fleet-key', bob.publicPem);
    settings = await settingsFile({
      KEY_VAULT_URL: vault.url,
      KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION: 'true',
      KEY_VAULT_FLEET_SECRET: 'fleet-key',
      DPS_ID_SCOPE: ID_SCOPE,
    });
  });
  afterAll(async () => {
    restoreEnv?.();
    await vault?.stop();
    await mi?.stop();
  });

  test('a disabled secret fails key-enabled and says how to activate it; the fleet key is not used instead', async () => {
    const run = await explain([sleeper.id, '--settings', settings, '--token-file', await tokenFile(await deviceToken(sleeper, now)), ...AT], identityEnv);
    expect(run.code).toBe(EXIT_CODES.refused);
    expect(checkLine(run.stdout, 'key-enabled')).toMatch(/^  FAIL  key-enabled +device_key_disabled/);
    expect(run.stdout).toContain(`scripts/activate.sh --vault <vault name> --registration-id ${sleeper.id}`);
    expect(run.stdout).toMatch(new RegExp(`device +${deviceSecretName(sleeper.id)} +DISABLED +<- the webhook uses this entry`));
    expect(run.stdout).toMatch(/fleet +fleet-key +enabled\n/);
  });

  test('an unknown kid lists the kids the vault holds', async () => {
    const run = await explain([keyed.id, '--settings', settings, '--token-file', await tokenFile(await deviceToken(keyed, now, {}, { kid: 'k9' })), ...AT], identityEnv);
    expect(run.code).toBe(EXIT_CODES.refused);
    expect(checkLine(run.stdout, 'key-id')).toMatch(/^  FAIL  key-id +token_key_unknown/);
    expect(run.stdout).toMatch(/kids on file +k1, k0/);
  });

  test('a group member without its own secret is decided by the group key, and admitted', async () => {
    vault.resetCounters();
    const run = await explain([grouped.id, '--group', 'line-7', '--settings', settings, '--token-file', await tokenFile(await deviceToken(grouped, now)), '--current-hub', HUBS[1]!, '--linked-hub', HUBS[0]!, '--linked-hub', HUBS[1]!, ...AT], identityEnv);
    expect(run.code).toBe(EXIT_CODES.ok);
    expect(run.stdout).toContain(`${grouped.id}, enrollment group line-7`);
    expect(run.stdout).toMatch(new RegExp(`device +${deviceSecretName(grouped.id)} +absent`));
    expect(run.stdout).toMatch(/group +group-line-7 +enabled +<- the webhook uses this entry/);
    expect(checkLine(run.stdout, 'hub')).toMatch(/\[current\]/);
    expect(run.stdout).toContain(`DPS assigns the device to ${HUBS[1]}.`);
    // The report and the decision share one read per name: they describe the same state of the vault.
    expect(vault.reads(deviceSecretName(grouped.id))).toBe(1);
    expect(vault.reads(groupSecretName('line-7'))).toBe(1);
  });

  test('without a token: the secret name, enabled, kids, tags and digest (checked against its tag)', async () => {
    const run = await explain([alice.id, '--settings', settings], identityEnv);
    expect(run.code).toBe(EXIT_CODES.ok);
    expect(run.stdout).toMatch(new RegExp(`device +${deviceSecretName(alice.id)} +enabled +<- the webhook uses this entry`));
    expect(run.stdout).toMatch(new RegExp(`stored as  ${deviceSecretName(alice.id)}/[0-9a-f]+`));
    expect(run.stdout).toContain(`sha256     ${expectedDigest(alice.publicPem)} (matches its ${DIGEST_TAG} tag)`);
    expect(run.stdout).toContain('tags       owner=acme');
    expect(run.stdout).toMatch(/fleet +fleet-key +enabled\n/);
    const hashed = await explain([dotted, '--settings', settings], identityEnv);
    expect(hashed.stdout).toContain(deviceSecretName(dotted));
    expect(deviceSecretName(dotted)).toMatch(/^devicehash-/);
    const kids = await explain([keyed.id, '--settings', settings], identityEnv);
    expect(kids.stdout).toMatch(/kids +k1, k0/);
  });

  test('without a token, a disabled secret: refused, with the tags and digest tag its versions list', async () => {
    const run = await explain([sleeper.id, '--settings', settings], identityEnv);
    expect(run.code).toBe(EXIT_CODES.refused);
    expect(run.stdout).toMatch(new RegExp(`device +${deviceSecretName(sleeper.id)} +DISABLED +<- the webhook uses this entry`));
    expect(run.stdout).toContain(`sha256     ${expectedDigest(sleeper.publicPem)} (its ${DIGEST_TAG} tag; the key itself is not readable while disabled)`);
    expect(run.stdout).toContain("tags       site=lyon (listed: a disabled secret's GET hands out none)");
    expect(run.stdout).toContain('every token of this device is refused: device_key_disabled');
    expect(run.stdout).toContain(`scripts/activate.sh --vault <vault name> --registration-id ${sleeper.id}`);
  });

  test('an id with no secret falls to the fleet key, and the report says so', async () => {
    const run = await explain([bob.id, '--settings', settings], identityEnv);
    expect(run.code).toBe(EXIT_CODES.ok);
    expect(run.stdout).toMatch(new RegExp(`device +${deviceSecretName(bob.id)} +absent`));
    expect(run.stdout).toMatch(/fleet +fleet-key +enabled +<- the webhook uses this entry/);
  });

  test('an identity without the role is exit 5 and names the role', async () => {
    vault.setFault({ kind: 'status', status: 403 }, deviceSecretName(alice.id));
    try {
      const run = await explain([alice.id, '--settings', settings], identityEnv);
      expect(run.code).toBe(EXIT_CODES.access_denied);
      expect(run.stderr).toContain('Key Vault Secrets User');
    } finally {
      vault.clearFaults();
    }
  });
});

test('docs/operations.md names every check of the decision and every exit code explain ends with', async () => {
  const doc = await readFile(join(import.meta.dirname, '../../docs/operations.md'), 'utf8');
  for (const check of CHECKS) expect(doc).toContain(`| \`${check}\` |`);
  for (const code of [0, 1, 2, 4, 5, 8, 9]) expect(doc).toMatch(new RegExp(`^\\| ${code} \\| `, 'm'));
});
