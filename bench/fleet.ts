/**
 * Section 7 of `npm run bench`, and a program of its own (`node dist/bench/fleet.js [--quick] [--keys N]`): a fleet
 * import of N keys (default 20,000) into the Key Vault stand-in with its write limit on, scaled down in time (300 per
 * 3 s instead of per 10 s: under four minutes instead of twelve; a faster scale measures this machine's CPU, not the
 * pacing), side by side with `scripts/register-key.sh` per
 * device against the fake `az` (a small sample: per-key cost). Reported: the import's sustained write rate as a
 * fraction of the limit, the 429s it caused, and what a second run costs (list calls, writes).
 *
 * The import runs in a child process (this file with `child`), as the storm section does: TLS trust comes from
 * NODE_EXTRA_CA_CERTS and the managed identity endpoint from the environment, both read at start. The stand-ins stay
 * here and count what the vault saw.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportSPKI, generateKeyPair } from 'jose';
import { DOCUMENTED_WRITE_LIMIT, TokenBucket } from '../fleet/throttle.js';
import { cleanEnv, formatNumber, round, runNodeChild } from './lib.js';
import { createTestCa, startKeyVaultStandin, startManagedIdentityStandin } from './support.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '..', '..');

export interface FleetBenchOptions {
  readonly keys: number;
  /** The stand-in's limit, and the tool's: writes per window. */
  readonly writes: number;
  readonly windowMs: number;
  readonly concurrency: number;
  /** Devices registered one by one with register-key.sh. */
  readonly sample: number;
}

export function fleetPlan(quick: boolean, keys?: number): FleetBenchOptions {
  return quick
    ? { keys: keys ?? 300, writes: 100, windowMs: 1_000, concurrency: 8, sample: 3 }
    : { keys: keys ?? 20_000, writes: 300, windowMs: 3_000, concurrency: 8, sample: 20 };
}

interface ChildRun {
  created: number;
  unchanged: number;
  failed: number;
  listCalls: number;
  writeAttempts: number;
  throttled: number;
  writeSeconds: number;
  writesPerSecond: number;
  seconds: number;
}

export interface FleetBenchResult {
  keys: number;
  limit: { writes: number; windowMs: number; perSecond: number };
  concurrency: number;
  import: ChildRun & { fractionOfLimit: number; vaultWrites: number; vault429: number; fraction429: number; peakWindowWrites: number };
  secondRun: { seconds: number; listCalls: number; vaultListCalls: number; writes: number; unchanged: number };
  registerKey: { skipped: boolean; note?: string; sample: number; msPerKey: number; azCallsPerKey: number; keysPerSecond: number };
  /** 20,000 keys at Key Vault's real limit (300 per 10 s), and one register-key.sh per key at the measured cost. */
  projection: { importMinutesAtRealLimit: number; registerKeyMinutes: number };
}

async function makeManifest(dir: string, keys: number): Promise<string> {
  const lines = ['registrationId,publicKey'];
  // Many devices, few distinct keys would hide nothing here (the digest and the vault do not care); 200 real keys
  // reused keep key generation out of the measurement.
  const pems: string[] = [];
  for (let i = 0; i < Math.min(200, keys); i++) pems.push(await exportSPKI((await generateKeyPair('ES256', { extractable: true })).publicKey));
  for (let i = 0; i < keys; i++) lines.push(`bench-fleet-${i},"${pems[i % pems.length]!.trim()}"`);
  const file = join(dir, 'fleet.csv');
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

/** register-key.sh for `sample` devices, one az process per call, against the scripts' fake az. */
async function registerKeySample(dir: string, sample: number): Promise<FleetBenchResult['registerKey']> {
  const fake = join(repoRoot, 'test', 'scripts', 'fixtures', 'fake-cli.mjs');
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, 'az'), `#!/usr/bin/env bash\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(fake)} az "$@"\n`);
  chmodSync(join(bin, 'az'), 0o755);
  const log = join(dir, 'az-calls.jsonl');
  const state = join(dir, 'az-state.json');
  writeFileSync(log, '');
  writeFileSync(state, JSON.stringify({ vaults: { 'bench-kv': { rbac: true, secrets: {}, deleted: {} } } }));
  const env = { PATH: `${bin}:/usr/local/bin:/usr/bin:/bin`, HOME: dir, LANG: 'C.UTF-8', TMPDIR: dir, FAKE_AZ_LOG: log, FAKE_AZ_STATE: state };
  const pemFile = join(dir, 'key.pub.pem');
  writeFileSync(pemFile, await exportSPKI((await generateKeyPair('ES256', { extractable: true })).publicKey));
  const started = performance.now();
  for (let i = 0; i < sample; i++) {
    const r = spawnSync('bash', [join(repoRoot, 'scripts', 'register-key.sh'), '--vault', 'bench-kv', '--registration-id', `bench-sh-${i}`, '--public-key', pemFile], { env, cwd: dir, encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) {
      return { skipped: true, note: `register-key.sh exited ${r.status ?? r.signal}: ${(r.stderr ?? '').trim().split('\n').at(-1)?.slice(0, 160) ?? ''}`, sample: i, msPerKey: 0, azCallsPerKey: 0, keysPerSecond: 0 };
    }
  }
  const ms = (performance.now() - started) / sample;
  const azCalls = readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith('["az"')).length;
  return { skipped: false, sample, msPerKey: ms, azCallsPerKey: azCalls / sample, keysPerSecond: 1000 / ms };
}

export async function fleetBench(plan: FleetBenchOptions, progress: (message: string) => void = () => undefined): Promise<FleetBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'dps-bench-fleet-'));
  const ca = await createTestCa();
  const certFile = join(dir, 'ca.pem');
  writeFileSync(certFile, ca.certPem);
  const mi = await startManagedIdentityStandin();
  const vault = await startKeyVaultStandin({ acceptsToken: mi.isIssuedToken, ca, writeLimit: { writes: plan.writes, windowMs: plan.windowMs } });
  try {
    progress(`fleet: writing a manifest of ${plan.keys} keys`);
    const manifest = await makeManifest(dir, plan.keys);
    const env = cleanEnv({
      NODE_EXTRA_CA_CERTS: certFile,
      IDENTITY_ENDPOINT: mi.endpoint,
      IDENTITY_HEADER: mi.identityHeader,
      AZURE_TOKEN_CREDENTIALS: 'prod',
    });
    const args = [join(here, 'fleet.js'), 'child', manifest, vault.url, String(plan.writes), String(plan.windowMs), String(plan.concurrency)];
    const timeout = Math.max(120_000, (plan.keys / (plan.writes / plan.windowMs)) * 3);
    progress(`fleet: importing ${plan.keys} keys at ${plan.writes} writes per ${plan.windowMs} ms`);
    const first = await runNodeChild<ChildRun>(args, env, timeout);
    const firstVault = vault.writeCounts();
    vault.resetWriteCounts();
    progress('fleet: the same import again');
    const second = await runNodeChild<ChildRun>(args, env, timeout);
    const secondVault = vault.writeCounts();
    progress(`fleet: register-key.sh for ${plan.sample} devices against the fake az`);
    const registerKey = await registerKeySample(dir, plan.sample);
    const perSecond = (plan.writes * 1000) / plan.windowMs;
    const realPerSecond = new TokenBucket(DOCUMENTED_WRITE_LIMIT).maxRate * 1000; // the bucket's rate at 300 per 10 s
    return {
      keys: plan.keys,
      limit: { writes: plan.writes, windowMs: plan.windowMs, perSecond },
      concurrency: plan.concurrency,
      import: {
        ...first,
        fractionOfLimit: first.writesPerSecond / perSecond,
        vaultWrites: firstVault.writes,
        vault429: firstVault.throttled,
        fraction429: firstVault.throttled / Math.max(1, firstVault.writes + firstVault.throttled),
        peakWindowWrites: firstVault.peakWindowWrites,
      },
      secondRun: { seconds: second.seconds, listCalls: second.listCalls, vaultListCalls: secondVault.listCalls, writes: secondVault.writes, unchanged: second.unchanged },
      registerKey,
      projection: {
        importMinutesAtRealLimit: 20_000 / realPerSecond / 60,
        registerKeyMinutes: registerKey.skipped ? 0 : (20_000 * registerKey.msPerKey) / 60_000,
      },
    };
  } finally {
    await vault.stop();
    await mi.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function fleetTargets(r: FleetBenchResult): Record<string, { target: string; value: number | null; met: boolean | null }> {
  return {
    fleetImportFractionOfLimit: { target: '>= 0.9', value: r.import.fractionOfLimit, met: r.import.fractionOfLimit >= 0.9 },
    fleetImport429Fraction: { target: '<= 0.01', value: r.import.fraction429, met: r.import.fraction429 <= 0.01 },
    fleetImportAllStored: { target: `= ${r.keys}`, value: r.import.vaultWrites, met: r.import.vaultWrites === r.keys && r.import.failed === 0 },
    fleetSecondRunWrites: { target: '= 0', value: r.secondRun.writes, met: r.secondRun.writes === 0 },
  };
}

/** Rows for run.ts's table: #, what, rate /s, p50 ms, p99 ms, errors, notes. */
export function fleetRows(r: FleetBenchResult): string[][] {
  const n = formatNumber;
  return [
    ['10', `fleet import, ${n(r.keys)} keys, limit ${r.limit.writes}/${r.limit.windowMs} ms, ${r.concurrency} at once`, n(r.import.writesPerSecond, 1), '', '', n(r.import.failed),
      `${n(r.import.fractionOfLimit * 100, 1)}% of the limit; ${n(r.import.vault429)} x 429 (${n(r.import.fraction429 * 100, 2)}%); peak ${r.import.peakWindowWrites} in a window; ${n(r.import.listCalls)} list calls`],
    ['10b', 'fleet import again (nothing to do)', '', '', '', '0', `${n(r.secondRun.writes)} writes, ${n(r.secondRun.listCalls)} list calls, ${n(r.secondRun.seconds, 2)} s`],
    r.registerKey.skipped
      ? ['10c', 'register-key.sh per device, fake az', 'skipped', '', '', '', r.registerKey.note ?? '']
      : ['10c', `register-key.sh per device, fake az, ${r.registerKey.sample} devices`, n(r.registerKey.keysPerSecond, 1), n(r.registerKey.msPerKey, 0), '', '0',
        `${n(r.registerKey.azCallsPerKey, 1)} az processes a key; 20,000 keys: ${n(r.projection.registerKeyMinutes)} min here (real az: 1-2 s each) vs import ${n(r.projection.importMinutesAtRealLimit, 1)} min at 300/10 s`],
  ];
}

// ---------------------------------------------------------------------------------------------------------------
// The child: two imports through the real SDK, settings from argv.

async function child(argv: readonly string[]): Promise<void> {
  const [manifest, url, writes, windowMs, concurrency] = argv;
  const { guardLoopback } = await import('./support.js');
  const guard = guardLoopback();
  const { ManagedIdentityCredential } = await import('@azure/identity');
  const { importFleet } = await import('../fleet/commands/import.js');
  const { createSecretClientVault } = await import('../fleet/vault.js');
  const vault = createSecretClientVault({ url: url!, credential: new ManagedIdentityCredential(), disableChallengeResourceVerification: true });
  const started = performance.now();
  const s = await importFleet({ manifest: manifest!, vault, writeLimit: { writes: Number(writes), windowMs: Number(windowMs) }, concurrency: Number(concurrency) });
  const result: ChildRun = {
    created: s.created,
    unchanged: s.unchanged,
    failed: s.failed + s.skipped,
    listCalls: s.vault.listCalls,
    writeAttempts: s.vault.writeAttempts,
    throttled: s.vault.throttled,
    writeSeconds: s.writeSeconds,
    writesPerSecond: s.writesPerSecond,
    seconds: (performance.now() - started) / 1000,
  };
  if (guard.blocked.length > 0) throw new Error(`connections off loopback: ${guard.blocked.join(', ')}`);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function isMain(): boolean {
  return process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
}

if (isMain()) {
  const argv = process.argv.slice(2);
  if (argv[0] === 'child') {
    await child(argv.slice(1));
  } else {
    const quick = argv.includes('--quick');
    const keysAt = argv.indexOf('--keys');
    const keys = keysAt >= 0 ? Number(argv[keysAt + 1]) : undefined;
    if (keys !== undefined && !(Number.isInteger(keys) && keys > 0)) throw new TypeError('--keys must be a whole number above 0');
    const result = await fleetBench(fleetPlan(quick, keys), (m) => process.stderr.write(`bench: ${m}\n`));
    const rows = fleetRows(result);
    process.stdout.write(`${rows.map((r) => `| ${r.join(' | ')} |`).join('\n')}\n`);
    const targets = fleetTargets(result);
    const missed = Object.entries(targets).filter(([, t]) => t.met === false).map(([k]) => k);
    process.stdout.write(`targets missed: ${missed.length === 0 ? 'none' : missed.join(', ')}\n${JSON.stringify({ ...result, targets }, (k, v) => (typeof v === 'number' ? round(v, 3) : v))}\n`);
  }
}
