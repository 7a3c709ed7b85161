import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { main } from '../../sample-device/cli.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(argv: string[], env: Record<string, string> = {}): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (t) => (stdout += `${t}\n`), stderr: (t) => (stderr += `${t}\n`), env });
  return { code, stdout, stderr };
}

// A valid-looking base64 key: errors must never echo it back.
const KEY = Buffer.alloc(32, 7).toString('base64');
const REGISTER = ['register', '--registration-id', 'sensor-1', '--id-scope', '0ne00ABC123', '--private-key', '/nonexistent/key.pem'];

describe('help', () => {
  test('no arguments prints the tool help and exits 2', async () => {
    const r = await run([]);
    expect(r.code).toBe(2);
    expect(r.stdout).toContain('Commands:');
    expect(r.stdout).toMatch(/keygen[\s\S]*token[\s\S]*register/);
  });

  test('--help exits 0', async () => {
    expect((await run(['--help'])).code).toBe(0);
  });

  test.each([
    ['keygen', '--out-dir'],
    ['token', '--private-key'],
    ['register', '--symmetric-key'],
  ])('%s --help documents its options', async (command, flag) => {
    const r = await run([command, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Usage: sample-device ${command}`);
    expect(r.stdout).toContain(flag);
  });

  test('register --help lists every exit code', async () => {
    const r = await run(['register', '--help']);
    for (const [code, name] of [[3, 'file'], [4, 'unreachable'], [5, 'unauthorized'], [6, 'refused'], [7, 'webhook_misconfigured'], [8, 'disabled'], [10, 'timeout']] as const) {
      expect(r.stdout).toMatch(new RegExp(`\\b${code}\\s+${name}\\b`));
    }
  });

  test('an unknown command exits 2', async () => {
    const r = await run(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "frobnicate"');
  });
});

describe('argument errors name the flag and exit 2', () => {
  test.each<[string, string[], Record<string, string>, RegExp]>([
    ['missing --out-dir', ['keygen'], {}, /--out-dir is required/],
    ['unknown flag', ['keygen', '--out-dir', '/tmp/x', '--force'], {}, /--force is not an option of `keygen`/],
    ['flag without value', ['token', '--private-key'], {}, /--private-key needs a value/],
    ['missing --registration-id', ['token', '--private-key', 'k.pem'], {}, /--registration-id is required/],
    ['non-numeric --lifetime', ['token', '--private-key', 'k.pem', '--registration-id', 'a', '--lifetime', '5m'], {}, /--lifetime must be a whole number of seconds, got "5m"/],
    ['bad --transport', [...REGISTER, '--symmetric-key', KEY, '--transport', 'amqp'], {}, /--transport must be one of http, mqtt/],
    ['bad --host', [...REGISTER, '--symmetric-key', KEY, '--host', 'https://dps.example/x'], {}, /--host must be a host name/],
    ['zero --timeout', [...REGISTER, '--symmetric-key', KEY, '--timeout', '0'], {}, /--timeout must be at least 1 second/],
    ['no key at all', REGISTER, {}, /--symmetric-key or --group-key is required/],
    ['both keys', [...REGISTER, '--symmetric-key', KEY, '--group-key', KEY], {}, /--symmetric-key and --group-key exclude each other/],
    ['both keys from env', REGISTER, { DEVICE_SYMMETRIC_KEY: KEY, DEVICE_GROUP_KEY: KEY }, /--symmetric-key and --group-key exclude each other/],
    ['bad --id-scope', ['register', '--registration-id', 'a', '--id-scope', 'a/b', '--private-key', 'k', '--symmetric-key', KEY], {}, /--id-scope must be/],
    ['bad --registration-id', ['register', '--registration-id', 'a b', '--id-scope', 's', '--private-key', 'k', '--symmetric-key', KEY], {}, /--registration-id must be/],
  ])('%s', async (_label, argv, env, message) => {
    const r = await run(argv, env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toContain('usage: sample-device');
    expect(r.stderr).not.toContain(KEY);
  });

  test('a malformed symmetric key is refused by flag name, never echoed', async () => {
    const secret = 'c2VjcmV0LWJ1dC1icm9rZW4=='.slice(0, -1) + '!';
    for (const [argv, env] of [
      [[...REGISTER, '--symmetric-key', secret], {}],
      [REGISTER, { DEVICE_SYMMETRIC_KEY: secret }],
    ] as const) {
      const r = await run([...argv], env);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/--symmetric-key must be a base64 key/);
      expect(r.stderr + r.stdout).not.toContain(secret);
    }
  });

  test('a stray value is reported without being echoed (it may be a key)', async () => {
    const r = await run([...REGISTER, '--json', KEY]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('stray argument');
    expect(r.stderr).not.toContain(KEY);
  });

  test('a usage error touches no file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sd-cli-'));
    const r = await run(['keygen', '--out-dir', dir, '--name', '../x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--name must be/);
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('other failures', () => {
  test('the key is taken from DEVICE_SYMMETRIC_KEY when no flag is given (the next problem is the key file, exit 3)', async () => {
    const r = await run(REGISTER, { DEVICE_SYMMETRIC_KEY: KEY });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('--private-key /nonexistent/key.pem does not exist');
  });

  test('--json also reports a failure as JSON on stdout', async () => {
    const r = await run([...REGISTER, '--symmetric-key', KEY, '--json']);
    expect(r.code).toBe(3);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, code: 'file', exitCode: 3 });
  });

  test('keygen then token through the CLI', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sd-cli-'));
    const k = await run(['keygen', '--out-dir', dir, '--name', 'sensor-9']);
    expect(k.code).toBe(0);
    const thumbprint = /thumbprint:\s+(\S+)/.exec(k.stdout)?.[1];
    expect(thumbprint).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // The = form: a base64url thumbprint starts with '-' one time in 64, which a separate argument would make an option.
    const t = await run(['token', '--private-key', join(dir, 'sensor-9.key.pem'), '--registration-id', 'sensor-9', `--kid=${thumbprint!}`]);
    expect(t.code).toBe(0);
    // First line is the bare token, so `| head -1` gives something usable.
    expect(t.stdout.split('\n')[0]).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(t.stdout).toContain(`"kid": "${thumbprint}"`);
    expect(t.stdout).toContain('"sub": "sensor-9"');
    const again = await run(['keygen', '--out-dir', dir, '--name', 'sensor-9']);
    expect(again.code).toBe(3);
    const dashed = await run(['token', '--private-key', join(dir, 'sensor-9.key.pem'), '--registration-id', 'sensor-9', '--kid=-Ab_9']);
    expect(dashed.code).toBe(0);
    expect(dashed.stdout).toContain('"kid": "-Ab_9"');
  });
});

describe('connect and run', () => {
  const CONNECT = ['connect', '--hub', 'hub-eu.azure-devices.net', '--device-id', 'sensor-1'];

  test.each([['connect'], ['run']])('%s --help documents --hub-host and the hub exit codes', async (command) => {
    const r = await run([command, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--hub-host');
    expect(r.stdout).toMatch(/11 hub_unreachable/);
    expect(r.stdout).toMatch(/12 hub_unauthorized/);
    expect(r.stdout).toMatch(/13 twin_timeout/);
  });

  test.each([
    [['connect', '--device-id', 'sensor-1', '--symmetric-key', KEY], '--hub is required'],
    [[...CONNECT, '--symmetric-key', KEY, '--count', 'many'], '--count must be a whole number'],
    [[...CONNECT, '--symmetric-key', KEY, '--hub-host', 'mqtts://localhost:8884'], '--hub-host must be a host name'],
    [['connect', '--hub', 'not a host', '--device-id', 'sensor-1', '--symmetric-key', KEY], '--hub must be the assigned hub'],
    [[...CONNECT], '--symmetric-key or --group-key is required'],
  ])('usage errors exit 2 and name the flag, never echoing the key (%#)', async (argv, message) => {
    const r = await run(argv);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(r.stdout + r.stderr).not.toContain(KEY);
  });
});
