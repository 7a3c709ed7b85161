/**
 * The C sample's command line, without a DPS: --help, the exit-code table (the same names and numbers as the Node
 * sample's sample-device/errors.ts), `keygen` file modes and refusal to overwrite, `token` claims, --timeout against a
 * server that never answers MQTT (exit 10), Ctrl-C (exit 130), an unreachable hub (exit 11), and the build's warning
 * flags (-Wall -Wextra -Werror on every source, from CMake's compile_commands.json).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createServer as createNetServer } from 'node:net';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt, decodeProtectedHeader, importSPKI, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { generateLocalTls } from '../../dps-emulator/tls.js';
import { EXIT_CODES } from '../../sample-device/errors.js';
import { buildCSample, type CBuild } from './build.js';
import { runBinary } from './exec.js';

let build: CBuild;
let work: string;
let silent: Server;
let silentPort: number;
let caFile: string;
let tls: Awaited<ReturnType<typeof generateLocalTls>>;
const sockets = new Set<TLSSocket>();

beforeAll(async () => {
  build = await buildCSample();
  work = await mkdtemp(join(tmpdir(), 'sample-device-c-'));
  // A TLS server with a trusted certificate that accepts connections and never says a word of MQTT.
  tls = await generateLocalTls();
  caFile = join(work, 'ca.pem');
  await writeFile(caFile, tls.ca);
  silent = createServer({ cert: tls.cert, key: tls.key }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const made = await runBinary(build.bin, ['keygen', '--out-dir', join(work, 'device'), '--name', 'cli-0003']);
  expect(made.code, made.stderr).toBe(0);
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  silentPort = (silent.address() as { port: number }).port;
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((r) => (silent ? silent.close(() => r()) : r()));
  if (work) await rm(work, { recursive: true, force: true });
});

describe('help', () => {
  test('--help lists the commands (exit 0); no arguments is a usage error (exit 2); an unknown command is named', async () => {
    const help = await runBinary(build.bin, ['--help']);
    expect(help.code).toBe(0);
    for (const c of ['keygen', 'token', 'register', 'connect', 'run']) expect(help.stdout).toMatch(new RegExp(`^  ${c} `, 'm'));
    expect((await runBinary(build.bin, [])).code).toBe(2);
    const unknown = await runBinary(build.bin, ['regster']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "regster"');
  });

  test("register --help prints the Node sample's exit-code table: the same names and numbers", async () => {
    const out = await runBinary(build.bin, ['register', '--help']);
    expect(out.code).toBe(0);
    const rows = [...out.stdout.matchAll(/^ +(\d+) {2}([a-z_]+) +/gm)].map((m) => [m[2], Number(m[1])]);
    expect(Object.fromEntries(rows)).toEqual(EXIT_CODES);
    for (const flag of ['--registration-id', '--id-scope', '--private-key', '--symmetric-key', '--group-key', '--host', '--transport', '--ca', '--lifetime', '--kid', '--timeout', '--json']) {
      expect(out.stdout).toContain(flag);
    }
    expect(out.stdout).toContain('DEVICE_SYMMETRIC_KEY');
    expect(out.stdout).toContain('DEVICE_GROUP_KEY');
  });
});

describe('keygen and token', () => {
  test('keygen writes a 0600 PKCS#8 private key and an SPKI public key, and never overwrites them (exit 3)', async () => {
    const dir = join(work, 'keys');
    const out = await runBinary(build.bin, ['keygen', '--out-dir', dir, '--name', 'cli-0001']);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/thumbprint: {3}[A-Za-z0-9_-]{43} /);
    expect(out.stdout).not.toContain('PRIVATE KEY');
    expect((await stat(join(dir, 'cli-0001.key.pem'))).mode & 0o777).toBe(0o600);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect(await readFile(join(dir, 'cli-0001.key.pem'), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(await readFile(join(dir, 'cli-0001.pub.pem'), 'utf8')).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    const before = await readFile(join(dir, 'cli-0001.key.pem'), 'utf8');
    const again = await runBinary(build.bin, ['keygen', '--out-dir', dir, '--name', 'cli-0001']);
    expect(again.code).toBe(3);
    expect(again.stderr).toContain('already exists; refusing to overwrite a device key');
    expect(await readFile(join(dir, 'cli-0001.key.pem'), 'utf8')).toBe(before);
    const bad = await runBinary(build.bin, ['keygen', '--out-dir', dir, '--name', '../escape']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--name must be a plain file name');
  });

  test('a P-384 or RSA key, or a file that is no PEM at all, is exit 3 naming the problem', async () => {
    const dir = join(work, 'wrong');
    await mkdir(dir);
    const p384 = join(dir, 'p384.key.pem');
    execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384', '-out', p384]);
    const rsa = join(dir, 'rsa.key.pem');
    execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', rsa]);
    const junk = join(dir, 'junk.key.pem');
    await writeFile(junk, 'not a key\n');
    for (const [file, text] of [[p384, 'is not a P-256 (ES256) private key'], [rsa, 'is not a P-256 (ES256) private key'], [junk, 'is not a PEM private key']] as const) {
      const out = await runBinary(build.bin, ['token', '--private-key', file, '--registration-id', 'cli-0002']);
      expect(out.code).toBe(3);
      expect(out.stderr).toContain(`--private-key ${file} ${text}`);
      expect(out.stdout).toBe('');
    }
  });

  test('token prints a token the public key verifies, with the Node sample\'s header and claims', async () => {
    const dir = join(work, 'keys');
    await runBinary(build.bin, ['keygen', '--out-dir', dir, '--name', 'cli-0002']);
    const out = await runBinary(build.bin, ['token', '--private-key', join(dir, 'cli-0002.key.pem'), '--registration-id', 'cli-0002', '--id-scope', '0ne00000000', '--host', 'localhost:8883', '--lifetime', '600', '--kid=-abc']);
    expect(out.code).toBe(0);
    const token = out.stdout.split('\n')[0]!;
    const publicKey = await importSPKI(await readFile(join(dir, 'cli-0002.pub.pem'), 'utf8'), 'ES256');
    const { payload } = await jwtVerify(token, publicKey, { algorithms: ['ES256'] });
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'ES256', typ: 'JWT', kid: '-abc' });
    expect(Object.keys(decodeJwt(token))).toEqual(['registration_id', 'id_scope', 'provisioning_host', 'sub', 'aud', 'iat', 'exp', 'jti']);
    expect(payload).toMatchObject({ registration_id: 'cli-0002', id_scope: '0ne00000000', provisioning_host: 'localhost:8883', sub: 'cli-0002', aud: '0ne00000000' });
    expect(payload.exp! - payload.iat!).toBe(600);
    expect(out.stdout).toContain('"registration_id": "cli-0002"');
    const long = await runBinary(build.bin, ['token', '--private-key', join(dir, 'cli-0002.key.pem'), '--registration-id', 'cli-0002', '--lifetime', '864001']);
    expect(long.code).toBe(2);
    expect(long.stderr).toContain('--lifetime must be a whole number of seconds from 1 to 864000');
  });
});

describe('no answer, Ctrl-C, no hub', () => {
  const register = (extra: string[]) => [
    'register', '--registration-id', 'cli-0003', '--id-scope', '0ne00000000', '--private-key', join(work, 'device', 'cli-0003.key.pem'),
    '--host', `localhost:${silentPort}`, '--ca', caFile, ...extra,
  ];

  test('a server that never answers MQTT: exit 10 (timeout) after --timeout', async () => {
    const out = await runBinary(build.bin, register(['--timeout', '2']), { DEVICE_SYMMETRIC_KEY: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' });
    expect(out.code).toBe(10);
    expect(out.stderr).toContain('did not finish within 2 s');
  });

  test("a certificate that does not name the host is refused at once (exit 4), not waited on", async () => {
    // The same trusted certificate (localhost, 127.0.0.1, ::1) on 127.0.0.2: only the name check can refuse it. Without
    // that check the device would wait for a CONNACK that never comes and end with exit 10 after --timeout.
    const other = createServer({ cert: tls.cert, key: tls.key }, (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((r) => other.listen(0, '127.0.0.2', r));
    const port = (other.address() as { port: number }).port;
    try {
      const args = register(['--timeout', '20']).map((a) => (a === `localhost:${silentPort}` ? `127.0.0.2:${port}` : a));
      const out = await runBinary(build.bin, args, { DEVICE_SYMMETRIC_KEY: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' });
      expect(out.code).toBe(4);
      expect(out.stderr).toContain(`cannot reach DPS at 127.0.0.2:${port} over mqtt (the TLS handshake or the MQTT CONNECT failed: is the server's certificate for 127.0.0.2?)`);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((r) => other.close(() => r()));
    }
  });

  test('Ctrl-C while waiting for DPS: exit 130', async () => {
    const child = spawn(build.bin, register([]), { env: { PATH: process.env.PATH ?? '', DEVICE_SYMMETRIC_KEY: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' }, stdio: ['ignore', 'pipe', 'pipe'] });
    // Interrupt once the device has connected its TCP socket to the silent server.
    await new Promise<void>((r) => silent.once('secureConnection', () => r()));
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    expect(code).toBe(130);
  });

  test('connect to a hub where nothing listens: exit 11 naming the cause', async () => {
    const closed = createNetServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as { port: number }).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const out = await runBinary(build.bin, ['connect', '--hub', 'hub-eu.azure-devices.net', '--device-id', 'cli-0003', '--hub-host', `localhost:${port}`, '--ca', caFile, '--count', '1'], { DEVICE_SYMMETRIC_KEY: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' });
    expect(out.code).toBe(11);
    expect(out.stderr).toContain(`cannot reach cli-0003 on hub-eu.azure-devices.net via localhost:${port} (ECONNREFUSED)`);
    expect(out.stderr).not.toContain('AAAAAAAAAAAA');
  });
});

describe("DPS's answers, mapped as sample-device/dps-errors.ts maps them", () => {
  const explain = (args: string[]) => runBinary(build.vectors, ['explain', ...args]);
  test.each([
    { args: ['--error-code', '400207', '--status', 'failed'], exit: 6, text: 'DPS error 400207 CustomAllocationFailed' },
    { args: ['--error-code', '400208', '--status', 'failed'], exit: 7, text: 'DPS error 400208 CustomAllocationIotHubNotSpecified' },
    { args: ['--error-code', '400209', '--status', 'failed'], exit: 7, text: 'DPS error 400209 CustomAllocationUnauthorizedAccess' },
    { args: ['--error-code', '401002', '--mqtt-status', '401'], exit: 5, text: 'DPS error 401002 Unauthorized' },
    { args: ['--error-code', '401003', '--mqtt-status', '401'], exit: 5, text: 'DPS error 401003: the symmetric key / SAS is wrong' },
    { args: ['--mqtt-status', '401'], exit: 5, text: 'DPS answered unauthorized' },
    { args: ['--status', 'disabled'], exit: 8, text: 'the enrollment or registration is disabled in DPS' },
    { args: ['--error-code', '429001', '--mqtt-status', '429'], exit: 9, text: 'DPS error 429001.' },
    { args: ['--error-code', '500000', '--status', 'failed'], exit: 9, text: 'DPS error 500000.' },
  ])('$args -> exit $exit', async ({ args, exit, text }) => {
    const out = await explain(args);
    expect(out.code).toBe(exit);
    expect(out.stdout).toContain(text);
  });

  test("the webhook's reason code is named when DPS's message carries the webhook's answer; anything SAS-like is removed", async () => {
    const message = 'The webhook answered 403: {"code":"token_expired","message":"exp is in the past"} SharedAccessSignature sr=0ne/registrations/x&sig=c2VjcmV0c2lnbmF0dXJl&se=1';
    const out = await explain(['--error-code', '400207', '--status', 'failed', '--message', message]);
    expect(out.code).toBe(6);
    expect(out.stdout).toContain("The webhook's reason: token_expired.");
    expect(out.stdout).not.toContain('c2VjcmV0c2lnbmF0dXJl');
    expect(out.stdout).not.toContain('sr=0ne');
    const plain = await explain(['--error-code', '400207', '--status', 'failed', '--message', 'The custom allocation webhook answered 403.']);
    expect(plain.stdout).toContain('DPS said: "The custom allocation webhook answered 403."');
    expect(plain.stdout).not.toContain("webhook's reason");
  });
});

test('every C source is compiled with -Wall -Wextra -Werror (C11)', async () => {
  const commands = JSON.parse(await readFile(join(build.buildDir, 'compile_commands.json'), 'utf8')) as { file: string; command: string }[];
  const files = commands.map((c) => c.file.replace(/.*sample-device-c\//, '')).sort();
  expect(files).toEqual(['src/crypto.c', 'src/dps.c', 'src/errors.c', 'src/hub.c', 'src/jwt.c', 'src/main.c', 'src/mqtt_util.c', 'src/sas.c', 'tools/vectors.c']);
  for (const c of commands) {
    expect(c.command.split(/\s+/)).toEqual(expect.arrayContaining(['-Wall', '-Wextra', '-Werror', '-std=c11']));
  }
});
