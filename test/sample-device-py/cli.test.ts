/**
 * The Python sample's command line, without DPS: help, argument errors that name the flag and never echo a value,
 * key files (the Python keygen's, the Node keygen's, scripts/keygen.sh's, openssl's SEC1; missing, public, wrong
 * curve), and an unreachable endpoint. Argument cases run through sampledevice.cli.main in one Python process (the
 * harness's batch mode); the entry point itself (cli.py: exit code, output) is run as a user runs it.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createPublicKey, randomInt } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compactVerify } from 'jose';
import { beforeAll, describe, expect, test } from 'vitest';
import { keygen } from '../../sample-device/commands/keygen.js';
import { REPO } from '../e2e/fixture.js';
import { HARNESS, python, runProcess, runPy } from './run.js';

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

// A valid-looking base64 key: errors must never echo it back.
const KEY = Buffer.alloc(32, 7).toString('base64');
let work: string;
let nodeKey: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'sample-device-py-cli-'));
  nodeKey = (await keygen({ outDir: join(work, 'node'), name: 'sensor-1' })).privateKeyFile;
});

async function batch(cases: { argv: string[]; env?: Record<string, string> }[]): Promise<Result[]> {
  const run = await runProcess(python(), [HARNESS, 'batch'], {}, JSON.stringify(cases));
  expect(run.code, run.stderr).toBe(0);
  return JSON.parse(run.stdout) as Result[];
}

/** Argument errors are reported before any file is read, so a path that does not exist does for them. */
const REGISTER = (extra: string[] = [], keyFile = 'k.pem'): string[] => ['register', '--registration-id', 'sensor-1', '--id-scope', '0ne00ABC123', '--private-key', keyFile, ...extra];

describe('the entry point', () => {
  test('no arguments: the tool help, exit 2; --help: exit 0, every command listed', async () => {
    const none = await runPy([]);
    expect(none.code).toBe(2);
    expect(none.stdout).toContain('Commands:');
    const help = await runPy(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/keygen[\s\S]*token[\s\S]*register[\s\S]*connect[\s\S]*run/);
  }, 60_000);

  test('register --help lists every exit code with the Node sample\'s numbers, and says a refusal is 6', async () => {
    const r = await runPy(['register', '--help']);
    expect(r.code).toBe(0);
    for (const [code, name] of [[1, 'internal'], [2, 'usage'], [3, 'file'], [4, 'unreachable'], [5, 'unauthorized'], [6, 'refused'], [8, 'disabled'], [9, 'dps_failed'], [10, 'timeout'], [11, 'hub_unreachable'], [12, 'hub_unauthorized'], [13, 'twin_timeout'], [130, 'interrupted']] as const) {
      expect(r.stdout).toMatch(new RegExp(`\\b${code}\\s+${name}\\b`));
    }
    expect(r.stdout).toContain('every status "failed" (DPS 400207, 400208, 400209) is exit 6');
    expect(r.stdout).toContain('--websockets');
  }, 60_000);
});

describe('argument errors (exit 2): the flag named, no value echoed', () => {
  let results: Result[];
  const cases: { title: string; argv: string[]; env?: Record<string, string>; message: RegExp }[] = [
    { title: 'an unknown command', argv: ['frobnicate'], message: /unknown command "frobnicate"/ },
    { title: 'an unknown option', argv: ['token', `--secret=${KEY}`], message: /--secret is not an option of `token`/ },
    { title: 'a stray value (a key without its flag)', argv: [...REGISTER(), KEY], message: /found a stray argument/ },
    { title: 'a missing value', argv: ['register', '--registration-id'], message: /--registration-id needs a value/ },
    { title: 'a value on a boolean', argv: [...REGISTER(), `--json=${KEY}`], message: /--json takes no value/ },
    { title: 'a required flag missing', argv: ['register', '--id-scope', '0ne00ABC123', '--private-key', 'k.pem'], message: /--registration-id is required/ },
    { title: 'no key at all', argv: REGISTER(), message: /--symmetric-key or --group-key is required \(or set DEVICE_SYMMETRIC_KEY/ },
    { title: 'both keys (one from the environment is not mixed in)', argv: REGISTER(['--symmetric-key', KEY, '--group-key', KEY]), message: /--symmetric-key and --group-key exclude each other/ },
    { title: 'a key that is not base64', argv: REGISTER(), env: { DEVICE_SYMMETRIC_KEY: `${KEY}!` }, message: /--symmetric-key must be a base64 key/ },
    { title: 'a bad registration id', argv: ['token', '--private-key', 'k.pem', '--registration-id', 'bad/id'], message: /--registration-id must be 1-128 characters/ },
    { title: 'a lifetime over 10 days', argv: ['token', '--private-key', 'k.pem', '--registration-id', 'a', '--lifetime', '864001'], message: /--lifetime must be a whole number of seconds from 1 to 864000/ },
    { title: 'a port the SDK cannot use', argv: REGISTER(['--host', 'localhost:8443', '--symmetric-key', KEY]), message: /--host port must be 8883: the Python SDK takes no port/ },
    { title: 'HTTP, which the Python SDK does not provision over', argv: REGISTER(['--transport', 'http', '--symmetric-key', KEY]), message: /--transport http is not available: the Python SDK .* provisions over MQTT only/ },
    { title: 'a bad --jti', argv: ['token', '--private-key', 'k.pem', '--registration-id', 'a', '--jti', 'a"b'], message: /--jti must be/ },
    { title: 'a bad --count', argv: ['connect', '--hub', 'h.azure-devices.net', '--device-id', 'd', '--count', 'x'], message: /--count must be a whole number/ },
  ];

  beforeAll(async () => {
    results = await batch(cases.map(({ argv, env }) => ({ argv, env: env ?? {} })));
  }, 60_000);

  test.each(cases.map((c, i) => ({ ...c, i })))('$title', ({ i, message }) => {
    const r = results[i]!;
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr + r.stdout).not.toContain(KEY);
  });
});

describe('key files', () => {
  test('keygen writes the Node sample\'s files (PKCS#8 0600, SPKI 0644) and refuses to overwrite either (exit 3, nothing half-written)', async () => {
    const dir = join(work, 'py');
    const made = await runPy(['keygen', '--out-dir', dir, '--name', 'sensor-2']);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).toMatch(/thumbprint: {3}[A-Za-z0-9_-]{43}/);
    expect((await stat(join(dir, 'sensor-2.key.pem'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'sensor-2.pub.pem'))).mode & 0o777).toBe(0o644);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect(await readFile(join(dir, 'sensor-2.key.pem'), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(await readFile(join(dir, 'sensor-2.pub.pem'), 'utf8')).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    expect(made.stdout).not.toContain('BEGIN');
    const before = await readFile(join(dir, 'sensor-2.key.pem'), 'utf8');
    await writeFile(join(dir, 'sensor-3.pub.pem'), 'x');
    const [again, half] = await batch([{ argv: ['keygen', '--out-dir', dir, '--name', 'sensor-2'] }, { argv: ['keygen', '--out-dir', dir, '--name', 'sensor-3'] }]);
    expect(again!.code).toBe(3);
    expect(again!.stderr).toContain('already exists; refusing to overwrite a device key');
    expect(await readFile(join(dir, 'sensor-2.key.pem'), 'utf8')).toBe(before);
    expect(half!.code).toBe(3);
    expect((await readdir(dir)).sort()).toEqual(['sensor-2.key.pem', 'sensor-2.pub.pem', 'sensor-3.pub.pem']);
  }, 60_000);

  test('the Python token signs with keys from the Node keygen, scripts/keygen.sh and openssl (SEC1); each verifies with its public key', async () => {
    const scripted = join(work, 'scripted');
    execFileSync('bash', ['-c', `mkdir -p ${scripted} && cd ${scripted} && ${join(REPO, 'scripts/keygen.sh')} --registration-id sensor-1`], { stdio: 'ignore' });
    const sec1 = join(work, 'sec1.pem');
    execFileSync('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', sec1]);
    const keys = [
      { file: nodeKey, pub: await readFile(nodeKey.replace('.key.pem', '.pub.pem'), 'utf8') },
      { file: join(scripted, 'sensor-1.key.pem'), pub: await readFile(join(scripted, 'sensor-1.pub.pem'), 'utf8') },
      { file: sec1, pub: createPublicKey(await readFile(sec1, 'utf8')).export({ type: 'spki', format: 'pem' }).toString() },
    ];
    const results = await batch(keys.map(({ file }) => ({ argv: ['token', '--private-key', file, '--registration-id', 'sensor-1', '--id-scope', '0ne00ABC123'] })));
    for (const [i, r] of results.entries()) {
      expect(r.code, r.stderr).toBe(0);
      const { payload } = await compactVerify(r.stdout.split('\n')[0]!, createPublicKey(keys[i]!.pub));
      expect(JSON.parse(new TextDecoder().decode(payload))).toMatchObject({ sub: 'sensor-1', registration_id: 'sensor-1', aud: '0ne00ABC123', id_scope: '0ne00ABC123', jti: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    }
  }, 60_000);

  test('a missing file, a public key, a P-384 key, a directory: exit 3, naming the problem and the path, no key material', async () => {
    const p384 = join(work, 'p384.pem');
    execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384', '-out', p384]);
    const pub = nodeKey.replace('.key.pem', '.pub.pem');
    const cases = [
      { file: join(work, 'missing.key.pem'), message: /--private-key \S+missing\.key\.pem does not exist/ },
      { file: pub, message: /--private-key \S+\.pub\.pem is not a PEM private key[\s\S]*hint: Use the <name>\.key\.pem written by `keygen`, not the \.pub\.pem/ },
      { file: p384, message: /--private-key \S+p384\.pem is not a P-256 \(ES256\) private key/ },
      { file: work, message: /--private-key \S+ cannot be read \(EISDIR\)/ },
    ];
    const results = await batch(cases.map(({ file }) => ({ argv: REGISTER(['--symmetric-key', KEY], file) })));
    for (const [i, r] of results.entries()) {
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(cases[i]!.message);
      expect(r.stderr).not.toMatch(/MI[GIJ]|BEGIN PUBLIC/); // no PEM body, no echo of what the file holds
    }
  }, 60_000);
});

describe('what the SDK raises, mapped to exit codes (the SDK\'s own exception classes and sentences, 2.14.0)', () => {
  // A cause text carrying something secret-looking: it must never reach our message.
  const SECRET = `SharedAccessSignature sr=x&sig=${KEY}`;
  const cases = [
    { outer: 'ClientError', cause: 'ServiceError', text: `register request returned a service error status code 401 ${SECRET}`, code: 'unauthorized', exit: 5 },
    { outer: 'ClientError', cause: 'ServiceError', text: 'Query Status operation returned a failed registration status with a status code of 200', code: 'refused', exit: 6 },
    { outer: 'ClientError', cause: 'ServiceError', text: 'Query Status Operation encountered an invalid registration status disabled with a status code of 200', code: 'disabled', exit: 8 },
    { outer: 'ClientError', cause: 'ServiceError', text: 'register request returned a service error status code 404', code: 'dps_failed', exit: 9 },
    { outer: 'ClientError', cause: 'ServiceError', text: 'Operation timed out before provisioning service could respond for query operation', code: 'timeout', exit: 10 },
    { outer: 'OperationTimeout', cause: undefined, text: '', code: 'timeout', exit: 10 },
    { outer: 'CredentialError', cause: undefined, text: '', code: 'unauthorized', exit: 5 },
    { outer: 'ConnectionFailedError', cause: 'ConnectionRefusedError', text: `[Errno 111] ${SECRET}`, code: 'unreachable', exit: 4 },
    { outer: 'ClientError', cause: 'SSLCertVerificationError', text: 'certificate verify failed: self-signed certificate (_ssl.c:1006)', code: 'unreachable', exit: 4 },
    { outer: 'ClientError', cause: 'ValueError', text: SECRET, code: 'internal', exit: 1 },
  ];
  let results: { code: string; exitCode: number; message: string; hint: string | null }[];

  beforeAll(async () => {
    const run = await runProcess(python(), [HARNESS, 'explain'], {}, JSON.stringify(cases));
    expect(run.code, run.stderr).toBe(0);
    results = JSON.parse(run.stdout) as typeof results;
  }, 60_000);

  test.each(cases.map((c, i) => ({ ...c, i, name: c.cause ?? c.outer })))('$name "$text" -> $code ($exit)', ({ i, code, exit }) => {
    expect(results[i]).toMatchObject({ code, exitCode: exit });
    expect(JSON.stringify(results[i])).not.toContain(KEY);
    expect(results[i]!.message).not.toMatch(/SharedAccessSignature|Errno|_ssl\.c/);
  });

  test('a failed status says the SDK does not pass on DPS\'s code; an untrusted certificate points to --ca', () => {
    expect(results[1]!.message).toContain("The Python SDK does not pass on DPS's error code or message");
    expect(results[8]!.message).toContain('its TLS certificate is not trusted');
    expect(results[8]!.hint).toContain('--ca FILE');
  });
});

describe('endpoints', () => {
  test('nothing listening at the DPS address: exit 4 (unreachable), naming the host; --json gives the code', async () => {
    const nowhere = `127.${randomInt(100, 255)}.${randomInt(0, 256)}.${randomInt(1, 255)}`;
    const r = await runPy(REGISTER(['--host', nowhere, '--json', '--timeout', '60'], nodeKey), { DEVICE_SYMMETRIC_KEY: KEY });
    expect(r.code, r.stderr).toBe(4);
    expect(r.stderr).toContain(`cannot reach DPS at ${nowhere} over mqtt`);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, code: 'unreachable', exitCode: 4 });
    expect(r.stdout + r.stderr).not.toContain(KEY);
  }, 120_000);

  test('nothing listening at the hub address: `connect` exits 11 (hub_unreachable)', async () => {
    const nowhere = `127.${randomInt(100, 255)}.${randomInt(0, 256)}.${randomInt(1, 255)}`;
    const r = await runPy(['connect', '--hub', 'hub-eu.azure-devices.net', '--device-id', 'sensor-1', '--hub-host', nowhere, '--count', '1'], { DEVICE_SYMMETRIC_KEY: KEY });
    expect(r.code, r.stderr).toBe(11);
    expect(r.stderr).toContain(`cannot reach sensor-1 on hub-eu.azure-devices.net via ${nowhere}`);
  }, 120_000);
});
