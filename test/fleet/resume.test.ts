/**
 * A run killed mid-way (kill -9 of the real CLI process, dist/fleet/cli.js) or stopped with Ctrl-C is finished by
 * running the same command again: every key present exactly once, nothing written twice. The child trusts the
 * stand-in's CA through NODE_EXTRA_CA_CERTS and gets its token from the loopback managed identity stand-in.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { deviceSecretName } from '../../functions/keys/names.js';
import { main } from '../../fleet/cli.js';
import { startKeyVaultStandin, type KeyVaultStandin } from '../support/keyvault-standin.js';
import { startManagedIdentityStandin, useManagedIdentityEnv, type ManagedIdentityStandin } from '../support/managed-identity-standin.js';
import { guardLoopback } from '../support/security.js';
import { fleetDevices, writeCsv, type FleetDevice } from './helpers.js';

const CLI = resolve(import.meta.dirname, '../../dist/fleet/cli.js');

let guard: ReturnType<typeof guardLoopback>;
let mi: ManagedIdentityStandin;
let restoreEnv: () => void;
let dir: string;
const vaults: KeyVaultStandin[] = [];

beforeAll(async () => {
  guard = guardLoopback();
  mi = await startManagedIdentityStandin();
  restoreEnv = useManagedIdentityEnv(mi);
  dir = await mkdtemp(join(tmpdir(), 'fleet-resume-'));
});
afterAll(async () => {
  await Promise.all(vaults.map((v) => v.stop()));
  await mi?.stop();
  restoreEnv?.();
  guard?.restore();
  await rm(dir, { recursive: true, force: true });
});

async function fleet(name: string, count: number): Promise<{ vault: KeyVaultStandin; devices: FleetDevice[]; manifest: string }> {
  const vault = await startKeyVaultStandin({ acceptsToken: mi.isIssuedToken });
  vaults.push(vault);
  const devices = await fleetDevices(name, count);
  const manifest = await writeCsv(dir, `${name}.csv`, devices.map((d) => ({ registrationId: d.id, publicKey: d.publicPem })));
  return { vault, devices, manifest };
}

function args(vault: KeyVaultStandin, manifest: string): string[] {
  // 20 writes a second: slow enough to stop mid-way.
  return ['import', '--vault-url', vault.url, '--disable-challenge-resource-verification', '--manifest', manifest, '--write-limit', '20/1'];
}

function startChild(vault: KeyVaultStandin, manifest: string): { child: ChildProcess; output: () => string; exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
  expect(existsSync(CLI), 'dist/fleet/cli.js is missing: run `npm run build` first (npm test does)').toBe(true);
  // process.env carries NODE_EXTRA_CA_CERTS (global setup) and IDENTITY_ENDPOINT / IDENTITY_HEADER (the stand-in).
  const child = spawn(process.execPath, [CLI, ...args(vault, manifest)], { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (output += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (output += c));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => child.once('exit', (code, signal) => done({ code, signal })));
  return { child, output: () => output, exit };
}

async function waitFor(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function resume(vault: KeyVaultStandin, manifest: string): Promise<{ code: number; stdout: string }> {
  let stdout = '';
  const code = await main(args(vault, manifest), { stdout: (t) => (stdout += `${t}\n`), stderr: () => undefined, env: process.env });
  return { code, stdout };
}

function expectEveryKeyOnce(vault: KeyVaultStandin, devices: readonly FleetDevice[]): void {
  for (const d of devices) {
    const versions = vault.versions(deviceSecretName(d.id));
    expect(versions, d.id).toHaveLength(1);
    expect(versions[0]!.value).toBe(`${d.publicPem.trim()}\n`);
  }
  expect(vault.secretNames()).toHaveLength(devices.length);
}

test('kill -9 mid-way, then the same command again: every key present exactly once', async () => {
  const { vault, devices, manifest } = await fleet('kill', 80);
  const run = startChild(vault, manifest);
  await waitFor(() => vault.writeCounts().writes >= 25);
  run.child.kill('SIGKILL');
  expect((await run.exit).signal).toBe('SIGKILL');
  const before = vault.writeCounts().writes;
  expect(before).toBeGreaterThanOrEqual(25);
  expect(before).toBeLessThan(80);

  const again = await resume(vault, manifest);
  expect(again.code, again.stdout).toBe(0);
  expect(again.stdout).toContain(`created ${80 - before}, updated 0, unchanged ${before}`);
  expectEveryKeyOnce(vault, devices);
  expect(vault.writeCounts().writes).toBe(80);
});

test('Ctrl-C: writes in flight end, the run says it stopped (exit 130), and the next run finishes it', async () => {
  const { vault, devices, manifest } = await fleet('sigint', 80);
  const run = startChild(vault, manifest);
  await waitFor(() => vault.writeCounts().writes >= 15);
  run.child.kill('SIGINT');
  const { code } = await run.exit;
  expect(code, run.output()).toBe(130);
  expect(run.output()).toMatch(/stopped: 80 rows: created \d+/);
  expect(run.output()).toMatch(/^progress: \d+\/80 rows/m);
  expect(run.output()).toContain('run the same command again to finish');
  expect(run.output()).not.toMatch(/-----BEGIN/);
  const again = await resume(vault, manifest);
  expect(again.code, again.stdout).toBe(0);
  expectEveryKeyOnce(vault, devices);
  expect(guard.blocked).toEqual([]);
});
