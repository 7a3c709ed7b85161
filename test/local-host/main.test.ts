import { spawn } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { allocationRequest, deviceToken, ID_SCOPE, makeDevice } from '../support/devices.js';

const MAIN = join(process.cwd(), 'dist/local-host/main.js');

/** Runs `node dist/local-host/main.js` (what `npm start` runs after building) and waits for its first line. */
function start(cwd: string, env: Record<string, string>) {
  const child = spawn(process.execPath, [MAIN], { cwd, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
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
