import { spawn } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { rawHttp } from '../support/security.js';
import { allocationRequest, deviceToken, ID_SCOPE, makeDevice } from '../support/devices.js';

const MAIN = join(process.cwd(), 'dist/local-host/main.js');

/** Runs `node dist/local-host/main.js` (what `npm start` runs after building) and waits for its first line. */
function start(cwd: string, env: Record<string, string>, nodeArgs: string[] = []) {
  const child = spawn(process.execPath, [...nodeArgs, MAIN], { cwd, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const ready = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d;
      const match = /listening on (\S+)/.exec(out);
      if (match) resolve(match[1]!);
    });
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.on('exit', (code) => reject(new Error(`exited ${code}: ${err}`)));
  });
  return { child, ready, output: () => out + err };
}

test('npm start serves the webhook from local.settings.example.json on a fresh clone', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'npm-start-'));
  const device = await makeDevice('sensor-1');
  await writeFile(join(dir, 'local.settings.example.json'), JSON.stringify({ Values: { DEVICE_KEYS_DIR: 'keys', DPS_ID_SCOPE: ID_SCOPE } }));
  const { mkdir } = await import('node:fs/promises');
  await mkdir(join(dir, 'keys'), { mode: 0o700 });
  await writeFile(join(dir, 'keys', 'sensor-1.pem'), device.publicPem, { mode: 0o644 });
  const run = start(dir, { PORT: '0' });
  try {
    const url = await run.ready;
    expect(run.output()).toContain('settings: local.settings.example.json');
    const token = await deviceToken(device, Math.floor(Date.now() / 1000));
    const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(allocationRequest({ registrationId: 'sensor-1', token })) });
    expect(response.status).toBe(200);
  } finally {
    run.child.kill('SIGTERM');
  }
});

test('npm start refuses to start on a bad setting and names it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'npm-start-'));
  const run = start(dir, { PORT: '0', DEVICE_KEYS_DIR: 'keys', DPS_ID_SCOPE: ID_SCOPE, JWT_ALGORITHMS: 'HS256' });
  await expect(run.ready).rejects.toThrow(/JWT_ALGORITHMS: "HS256" is not allowed/);
});

async function keyFolder(deviceId: string) {
  const dir = await mkdtemp(join(tmpdir(), 'npm-start-'));
  const device = await makeDevice(deviceId);
  const { mkdir } = await import('node:fs/promises');
  await mkdir(join(dir, 'keys'));
  await writeFile(join(dir, 'keys', `${deviceId}.pem`), device.publicPem);
  return { dir, device };
}

test('npm start answers a request target the URL parser refuses with 400, keeps serving, and never prints ?code=', async () => {
  const { dir, device } = await keyFolder('sensor-2');
  const functionKey = 'fk-npm-start-0c4e8a2b6d1f3e5a7c9b';
  const run = start(dir, { PORT: '0', DEVICE_KEYS_DIR: 'keys', DPS_ID_SCOPE: '0ne00ABC123', WEBHOOK_FUNCTION_KEY: functionKey });
  try {
    const url = new URL(await run.ready);
    const port = Number(url.port);
    const bad = await rawHttp(port, `POST //x:99999/api/validatejwt?code=${functionKey} HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\n{}`);
    expect(bad.status).toBe(400);
    const token = await deviceToken(device, Math.floor(Date.now() / 1000));
    const response = await fetch(`${url.href}?code=${functionKey}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(allocationRequest({ registrationId: 'sensor-2', token })) });
    expect(response.status).toBe(200);
    expect(run.child.exitCode).toBeNull();
    expect(run.output()).not.toContain(functionKey);
  } finally {
    run.child.kill('SIGTERM');
  }
});

test('a fault no handler caught stops npm start with its class name only, never its message', async () => {
  const { dir } = await keyFolder('sensor-3');
  const thrower = "setTimeout(() => { throw new RangeError('secret-in-message code=fk-should-not-print') }, 1000);";
  const run = start(dir, { PORT: '0', DEVICE_KEYS_DIR: 'keys', DPS_ID_SCOPE: '0ne00ABC123' }, ['--import', `data:text/javascript,${encodeURIComponent(thrower)}`]);
  await run.ready;
  const code = await new Promise<number | null>((resolve) => run.child.once('exit', resolve));
  expect(code).toBe(70);
  expect(run.output()).toContain('stopped after an unexpected RangeError (uncaughtException)');
  expect(run.output()).not.toContain('secret-in-message');
  expect(run.output()).not.toContain('fk-should-not-print');
});

test('npm start: a decision line reaches stdout while the host keeps running, not only when it stops', async () => {
  const { dir, device } = await keyFolder('sensor-live');
  const run = start(dir, { PORT: '0', DEVICE_KEYS_DIR: 'keys', DPS_ID_SCOPE: ID_SCOPE });
  try {
    const url = await run.ready;
    const token = await deviceToken(device, Math.floor(Date.now() / 1000));
    const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(allocationRequest({ registrationId: 'sensor-live', token })) });
    expect(response.status).toBe(200);
    // Lines are gathered for a few milliseconds per write (server.ts): the line must come while the host runs.
    const line = await new Promise<string>((resolve) => {
      const look = () => {
        const found = run.output().split('\n').find((l) => l.startsWith('{') && l.includes('"sensor-live"'));
        if (found !== undefined) {
          run.child.stdout.off('data', look);
          resolve(found);
        }
      };
      run.child.stdout.on('data', look);
      look();
    });
    expect(JSON.parse(line)).toMatchObject({ event: 'validatejwt', registrationId: 'sensor-live', outcome: 'assigned', status: 200 });
    expect(run.child.exitCode).toBeNull();
  } finally {
    run.child.kill('SIGTERM');
  }
});
