/**
 * Smoke test of `npm run bench`: the script runs end to end in its --quick form and writes every section as
 * numbers, so it cannot rot. No assertion here is about speed: CI machines vary, and the figures are for people
 * (docs/performance.md), not for a gate.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { deployedNodeOptions } from '../../bench/lib.js';

const root = resolve(import.meta.dirname, '..', '..');
const script = join(root, 'dist', 'bench', 'run.js');
const dir = mkdtempSync(join(tmpdir(), 'bench-smoke-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [script, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 200_000); // a hang guard: the quick run takes 30-90 s
    child.once('error', fail);
    child.once('exit', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

const isNumber = (value: unknown) => typeof value === 'number' && Number.isFinite(value);

function expectNumbers(section: Record<string, unknown>, names: string[], where: string): void {
  for (const name of names) expect(isNumber(section[name]), `${where}.${name} = ${JSON.stringify(section[name])}`).toBe(true);
}

describe('npm run bench --quick', () => {
  it('runs every section and writes the figures as JSON', async () => {
    expect(existsSync(script), 'dist/bench/run.js is missing: run `npm run build` first (npm test does)').toBe(true);
    const out = join(dir, 'results.json');
    const { code, stdout, stderr } = await run(['--quick', '--out', out]);
    expect(code, stderr).toBe(0);
    expect(stdout).toContain('| #');

    const results = JSON.parse(readFileSync(out, 'utf8')) as Record<string, Record<string, unknown>> & { quick: boolean };
    expect(results.quick).toBe(true);
    expectNumbers(results.machine!, ['cores', 'memoryGB', 'loadAverage1m'], 'machine');
    expect(typeof results.machine!.node).toBe('string');

    expectNumbers(results.floor!, ['threads', 'verificationsPerSecond', 'perThread', 'failed'], 'floor');
    expect(results.floor!.failed).toBe(0);

    // PyJWT is measured when /usr/bin/python3 can import it (CI installs python3-jwt), else skipped with a note.
    if (results.python!.skipped === true) expect(typeof results.python!.note).toBe('string');
    else expectNumbers(results.python!, ['decodesPerSecond', 'preloadedKeyDecodesPerSecond'], 'python');

    expectNumbers(results.handler!, ['devices', 'concurrency', 'requestsPerSecond', 'p50Ms', 'p99Ms', 'errors', 'storeReads'], 'handler');

    const http = results.http as Record<string, Record<string, unknown>>;
    for (const run of ['peak', 'halfPeak', 'halfPeakPaced']) {
      expectNumbers(http[run]!, ['connections', 'requestsPerSecond', 'requests', 'p50Ms', 'p99Ms', 'errors', 'non2xx'], `http.${run}`);
    }
    expectNumbers(http as unknown as Record<string, unknown>, ['logLines'], 'http');

    expectNumbers(
      results.storm!,
      ['devices', 'burstPerDevice', 'registrations', 'ok', 'vaultReads', 'vaultReadsPerDevice', 'peakConcurrentVaultReads', 'maxConcurrentReads', 'secondsToAdmitAll', 'tokenRequests', 'blockedConnections'],
      'storm',
    );
    expect(results.storm!.blockedConnections).toBe(0);

    // Section 6 on the host's memory, and in a cgroup of the instance's memory when this machine lets the bench make one.
    const memory = results.memory as unknown as { host: Record<string, unknown>; instance: Record<string, unknown> | null; instanceMemoryMB: number; instanceUnavailable: string | null };
    const runs = memory.instance === null ? [memory.host] : [memory.host, memory.instance];
    for (const run of runs) {
      expectNumbers(run, ['keys', 'cachedEntries', 'baselineRssMB', 'rssMB', 'heapUsedMB', 'bytesPerKey', 'servingRssMB', 'servingDecisions', 'heapSizeLimitMB'], 'memory');
      expect(run.sampleAdmitted).toBe(run.sampleSize);
      // --quick serves for a second: the sample admitted again, every time.
      expect(run.servingDecisions as number).toBeGreaterThan(0);
      expect(run.servingRefused).toBe(0);
    }
    if (memory.instance === null) expect(typeof memory.instanceUnavailable).toBe('string');
    else {
      // Node saw the cgroup's limit, and V8 sized its heap from it rather than from the host's memory.
      expect(memory.instance.constrainedMemoryMB).toBe(memory.instanceMemoryMB);
      expect(memory.instance.heapSizeLimitMB as number).toBeLessThan(memory.instanceMemoryMB);
      // ...and ran with the NODE_OPTIONS deploy.sh sets on the app (scripts/node-options), the host run with none.
      expect(memory.instance.nodeOptions).toBe(deployedNodeOptions(root));
      expect(memory.host.nodeOptions).toBeNull();
    }

    const fleet = results.fleet as unknown as Record<string, Record<string, unknown>>;
    expectNumbers(fleet.import!, ['vaultWrites', 'writesPerSecond', 'fractionOfLimit', 'vault429', 'listCalls'], 'fleet.import');
    expectNumbers(fleet.secondRun!, ['listCalls', 'writes'], 'fleet.secondRun');
    expect(fleet.import!.vaultWrites).toBe(fleet.keys);
    expect(fleet.secondRun!.writes).toBe(0);

    // Cold start: both builds admit the device through the Key Vault stand-in, from process start, loopback only.
    const cold = results.coldStart as Record<string, Record<string, unknown>>;
    for (const kind of ['bundled', 'unbundled', 'bundledTelemetry', 'unbundledTelemetry']) expectNumbers(cold[kind]!, ['sinceStartMs', 'bootMs', 'importMs', 'firstAdmissionMs'], `coldStart.${kind}`);
    expectNumbers(cold as unknown as Record<string, unknown>, ['ratio', 'telemetryRatio'], 'coldStart');
    expect(cold.bundled!.module).toBe('dist/bundle/validatejwt.js');
    expect(cold.blockedConnections).toBe(0);

    expectNumbers(results.package!, ['zipBytes', 'zipFiles'], 'package');
    // The bundle, its chunks (code loaded on demand), notices, host.json, package.json.
    expect(results.package!.zipFiles).toBeGreaterThan(4);

    // CPU per decision: the host and the reference server under the same load, and one raw verification.
    expectNumbers(results.cpu!, ['rate', 'rawVerifyUs'], 'cpu');
    expectNumbers((results.cpu as Record<string, Record<string, unknown>>).reference!, ['requestsPerSecond', 'requests'], 'cpu.reference');
    if (process.platform === 'linux') expectNumbers(results.cpu!, ['webhookUsPerDecision', 'referenceUsPerDecision', 'webhookVsReference'], 'cpu');
    // One paired round in --quick (nine in a full run).
    expect((results.cpu as unknown as { rounds: unknown[] }).rounds).toHaveLength(1);
    // With telemetry on: the host answered every request, and its traces and metrics reached the ingestion stand-in.
    const withTelemetry = (results.cpu as Record<string, Record<string, Record<string, unknown>>>).telemetry!;
    expect(withTelemetry.run!.errors).toBe(0);
    expect(withTelemetry.run!.non2xx).toBe(0);
    expect(withTelemetry.itemsAccepted as unknown as number).toBeGreaterThan(0);
    // Sent as in Azure: every batch compressed, so the figure includes the exporter's gzip.
    expect(withTelemetry.tracks as unknown as number).toBeGreaterThan(0);
    expect(withTelemetry.gzippedTracks).toBe(withTelemetry.tracks);
    // And over kept-alive connections, as the exporter sends without a proxy: not a new TLS session per batch. A few
    // connections are expected (traces and metrics export side by side; the stand-in closes one idle for 5 s), one
    // per request is what the tunnel gives (11 of 11 in a quick run here, against 2 of 12 direct).
    const connections = withTelemetry.connections as unknown as number;
    const tracks = withTelemetry.tracks as unknown as number;
    expect(connections).toBeGreaterThanOrEqual(1);
    if (tracks >= 8) expect(connections).toBeLessThanOrEqual(tracks / 2);
    if (process.platform === 'linux') expectNumbers(withTelemetry as unknown as Record<string, unknown>, ['usPerDecision', 'vsReference', 'vsWithout'], 'cpu.telemetry');

    // The demo ran as a user runs it and passed; its seconds are figures, not a gate.
    expectNumbers(results.demo!, ['runs', 'medianSeconds', 'worstSeconds'], 'demo');
    expect(results.demo!.runs).toBe(1);
    expect(results.demo!.allPassed).toBe(true);

    expectNumbers(results.ratios!, ['httpVsFloor', 'handlerVsFloor', 'coldStartBundledVsUnbundled'], 'ratios');
    expect(results.ratios!.httpVsPython === null || isNumber(results.ratios!.httpVsPython)).toBe(true);
  }, 240_000);
});
