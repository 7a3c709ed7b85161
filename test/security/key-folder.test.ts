/**
 * Issue 13 item 5 and CONTRACTS.md 3: configuration that should stop the start, and the key folder's own rules.
 * Anyone who can write to DEVICE_KEYS_DIR admits any device, so a missing folder, a file in its place, a folder or
 * key file writable by group or others, or a symbolic link among the key files stops the start, naming the setting.
 * What changes after the start is refused per request (`device_key_unusable`), and links are never followed.
 * `<id>.meta` beside a key carries `enabled` and tags.
 */
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { createWebhook, type Webhook } from '../../functions/app/compose.js';
import { ConfigError, loadConfig, loadLocalHostConfig, type Env } from '../../functions/config.js';
import type { AssignedBody } from '../../functions/core/webhook.js';
import { allocationRequest, deviceToken, ID_SCOPE, makeDevice, type TestDevice } from '../support/devices.js';

const NOW = Date.parse('2026-11-21T12:00:00Z');
const now = Math.floor(NOW / 1000);
const posix = process.platform !== 'win32';

let alice: TestDevice;
let mallory: TestDevice;

beforeAll(async () => {
  [alice, mallory] = await Promise.all([makeDevice('sensor-1'), makeDevice('mallory')]);
});

/** A fresh owner-only folder (mkdtemp: 0700) holding `files` (name -> content), each 0644. */
async function folder(files: Record<string, string> = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'key-folder-'));
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text, { mode: 0o644 });
  return dir;
}

function configError(env: Env): ConfigError | undefined {
  try {
    loadConfig({ DPS_ID_SCOPE: ID_SCOPE, ...env });
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  return undefined;
}

async function ask(webhook: Webhook, device: TestDevice, registrationId = device.id) {
  const token = await deviceToken(device, now, { sub: registrationId, registration_id: registrationId });
  const answer = await webhook.handle({ body: JSON.stringify(allocationRequest({ registrationId, token })) });
  return { status: answer.status, code: (answer.body as { code?: string }).code, body: answer.body };
}

const hookFor = (dir: string) => createWebhook(loadConfig({ DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: ID_SCOPE }), { now: () => NOW });

describe('DEVICE_KEYS_DIR is checked at start', () => {
  test('a folder that does not exist stops the start, naming the setting', async () => {
    const error = configError({ DEVICE_KEYS_DIR: join(await folder(), 'missing') });
    expect(error?.setting).toBe('DEVICE_KEYS_DIR');
    expect(error?.message).toContain('ENOENT');
  });

  test('a file in place of the folder stops the start', async () => {
    const dir = await folder({ 'keys.pem': alice.publicPem });
    const error = configError({ DEVICE_KEYS_DIR: join(dir, 'keys.pem') });
    expect(error?.setting).toBe('DEVICE_KEYS_DIR');
    expect(error?.message).toContain('not a folder');
  });

  test.runIf(posix).each(['0770', '0707', '0777', '1777'])('a folder with mode %s (writable by group or others) stops the start', async (mode) => {
    const dir = await folder({ 'sensor-1.pem': alice.publicPem });
    await chmod(dir, parseInt(mode, 8));
    const error = configError({ DEVICE_KEYS_DIR: dir });
    expect(error?.setting).toBe('DEVICE_KEYS_DIR');
    expect(error?.message).toContain('writable by group or others');
  });

  test.runIf(posix).each(['sensor-1.pem', 'sensor-2.JWK', 'sensor-3.json', 'sensor-1.meta'])('a group-writable %s stops the start', async (name) => {
    const dir = await folder({ 'sensor-1.pem': alice.publicPem, [name]: name.endsWith('.meta') ? '{}' : alice.publicPem });
    await chmod(join(dir, name), 0o664);
    const error = configError({ DEVICE_KEYS_DIR: dir });
    expect(error?.setting).toBe('DEVICE_KEYS_DIR');
    expect(error?.message).toContain(`"${name}" is writable by group or others`);
  });

  test.runIf(posix)('files the store never reads (a README) may have any mode', async () => {
    const dir = await folder({ 'sensor-1.pem': alice.publicPem, 'README.md': 'keys' });
    await chmod(join(dir, 'README.md'), 0o666);
    expect(configError({ DEVICE_KEYS_DIR: dir })).toBeUndefined();
  });

  test.runIf(posix)('a symbolic link among the key files stops the start, even one pointing inside the folder', async () => {
    const outside = await folder({ 'victim.pem': mallory.publicPem });
    for (const target of [join(outside, 'victim.pem'), 'sensor-1.pem']) {
      const dir = await folder({ 'sensor-1.pem': alice.publicPem });
      await symlink(target, join(dir, 'victim.pem'));
      const error = configError({ DEVICE_KEYS_DIR: dir });
      expect(error?.setting).toBe('DEVICE_KEYS_DIR');
      expect(error?.message).toContain('"victim.pem" is a symbolic link');
    }
  });

  test('a folder named like a key file inside the folder stops the start', async () => {
    const dir = await folder();
    await mkdir(join(dir, 'sensor-1.pem'));
    expect(configError({ DEVICE_KEYS_DIR: dir })?.message).toContain('"sensor-1.pem" is not a regular file');
  });
});

describe.runIf(posix)('what changes after the start is refused per request, never followed', () => {
  test('a symbolic link added later is device_key_unusable (403), and its target never admits anyone', async () => {
    const outside = await folder({ 'victim.pem': mallory.publicPem });
    const dir = await folder({ 'sensor-1.pem': alice.publicPem });
    const webhook = await hookFor(dir);
    await symlink(join(outside, 'victim.pem'), join(dir, 'victim.pem'));
    expect(await ask(webhook, mallory, 'victim')).toMatchObject({ status: 403, code: 'device_key_unusable' });
    expect((await ask(webhook, alice)).status).toBe(200);
  });

  test('a key file made group-writable later is device_key_unusable', async () => {
    const dir = await folder({ 'sensor-1.pem': alice.publicPem });
    const webhook = await hookFor(dir);
    await chmod(join(dir, 'sensor-1.pem'), 0o666);
    expect(await ask(webhook, alice)).toMatchObject({ status: 403, code: 'device_key_unusable' });
  });

  test('a FIFO named like a key, made later, is device_key_unusable at once (never waits for a writer)', async () => {
    const dir = await folder({ 'sensor-1.pem': alice.publicPem });
    const webhook = await hookFor(dir);
    await new Promise<void>((resolve, reject) => {
      spawn('mkfifo', ['-m', '0600', join(dir, 'victim.pem')]).once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`mkfifo ${code}`)))).once('error', reject);
    });
    expect(await ask(webhook, mallory, 'victim')).toMatchObject({ status: 403, code: 'device_key_unusable' });
  });

  test('a symbolic link as <id>.meta is device_key_unusable, not followed', async () => {
    const outside = await folder({ 'open.meta': '{"enabled": true}' });
    const dir = await folder({ 'sensor-1.pem': alice.publicPem });
    const webhook = await hookFor(dir);
    await symlink(join(outside, 'open.meta'), join(dir, 'sensor-1.meta'));
    expect(await ask(webhook, alice)).toMatchObject({ status: 403, code: 'device_key_unusable' });
  });
});

describe('<id>.meta beside the key (CONTRACTS.md 3)', () => {
  test('absent: the device is enabled with no tags from the store', async () => {
    const webhook = await hookFor(await folder({ 'sensor-1.pem': alice.publicPem }));
    expect((await ask(webhook, alice)).status).toBe(200);
  });

  test('"enabled": false answers device_key_disabled (403), matched case-insensitively', async () => {
    const webhook = await hookFor(await folder({ 'Sensor-1.PEM': alice.publicPem, 'SENSOR-1.Meta': '{"enabled": false}' }));
    expect(await ask(webhook, alice)).toMatchObject({ status: 403, code: 'device_key_disabled' });
  });

  test('"enabled": true with tags admits the device and puts the tags on its twin', async () => {
    const webhook = await hookFor(await folder({ 'sensor-1.pem': alice.publicPem, 'sensor-1.meta': '{"enabled": true, "tags": {"site": "plant-7"}}' }));
    const answer = await ask(webhook, alice);
    expect(answer.status).toBe(200);
    expect((answer.body as AssignedBody).initialTwin?.tags).toMatchObject({ site: 'plant-7' });
  });

  test.each([
    ['not JSON', '{"enabled": fals'],
    ['not an object', '[]'],
    ['a misspelt member, which must not leave the device enabled', '{"enable": false}'],
    ['enabled as a string', '{"enabled": "false"}'],
    ['tags not an object', '{"tags": ["site"]}'],
    ['a tag that is not a string', '{"tags": {"floor": 3}}'],
  ])('%s is device_key_unusable (403), never "enabled"', async (_what, meta) => {
    const webhook = await hookFor(await folder({ 'sensor-1.pem': alice.publicPem, 'sensor-1.meta': meta }));
    expect(await ask(webhook, alice)).toMatchObject({ status: 403, code: 'device_key_unusable' });
  });

  test('a .meta without a key file admits nobody', async () => {
    const webhook = await hookFor(await folder({ 'sensor-1.meta': '{"enabled": true}' }));
    expect(await ask(webhook, alice)).toMatchObject({ status: 403, code: 'device_key_not_found' });
  });
});

describe('DEVICE_PUBLIC_KEY is parsed at start', () => {
  test.each([
    ['a PEM whose body is not a key', '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----', 'does not parse'],
    ['a private key', '-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----', '"PRIVATE KEY" PEM block'],
    ['no PEM at all', 'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE', 'PEM public key'],
  ])('%s stops the start', (_what, pem, message) => {
    const error = configError({ DEVICE_PUBLIC_KEY: pem });
    expect(error?.setting).toBe('DEVICE_PUBLIC_KEY');
    expect(error?.message).toContain(message);
  });

  test('a key no allowed algorithm can use stops the start', async () => {
    const rsa = await makeDevice('fleet', 'RS256');
    const error = configError({ DEVICE_PUBLIC_KEY: rsa.publicPem, JWT_ALGORITHMS: 'ES256' });
    expect(error?.setting).toBe('DEVICE_PUBLIC_KEY');
    expect(error?.message).toContain('no key that can verify JWT_ALGORITHMS (ES256)');
    expect(configError({ DEVICE_PUBLIC_KEY: rsa.publicPem, JWT_ALGORITHMS: 'RS256' })).toBeUndefined();
  });

  test('no message quotes the key', async () => {
    const pem = alice.publicPem.replace('-----END PUBLIC KEY-----', 'garbage\n-----END PUBLIC KEY-----');
    const error = configError({ DEVICE_PUBLIC_KEY: pem });
    expect(error?.setting).toBe('DEVICE_PUBLIC_KEY');
    expect(error?.message).not.toContain(alice.publicPem.split('\n')[1]);
  });
});

describe('the local host function key', () => {
  test('a whitespace-only WEBHOOK_FUNCTION_KEY is refused, not taken for "no key"', () => {
    for (const key of [' ', '\t', '  \n ']) {
      expect(() => loadLocalHostConfig({ WEBHOOK_FUNCTION_KEY: key })).toThrow(ConfigError);
    }
  });

  test('npm start without a function key prints a clear warning line', async () => {
    const dir = await folder({ 'sensor-1.pem': alice.publicPem });
    const child = spawn(process.execPath, [join(process.cwd(), 'dist/local-host/main.js')], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '', PORT: '0', DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: ID_SCOPE },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d));
    child.stderr.on('data', (d: Buffer) => (output += d));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no listening line: ${output}`)), 20_000);
        const check = () => {
          if (/listening on/.test(output) && /WEBHOOK_FUNCTION_KEY/.test(output)) {
            clearTimeout(timer);
            resolve();
          }
        };
        child.stdout.on('data', check);
        child.stderr.on('data', check);
        child.once('exit', (code) => reject(new Error(`exited ${code}: ${output}`)));
      });
      expect(output).toMatch(/^validatejwt: warning: WEBHOOK_FUNCTION_KEY is not set/m);
    } finally {
      child.kill('SIGTERM');
    }
  });
});
