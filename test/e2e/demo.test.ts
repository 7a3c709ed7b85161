/**
 * `npm run demo` as a user runs it: the built demo as a child process must exit 0 and show the outcomes it promises,
 * without printing a token, a key or the function key. How long it takes is the bench's to measure (bench/demo.ts,
 * `npm run bench`), not a test's: a busy machine would fail a timed test without anything being wrong.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, expect, test } from 'vitest';
import { ensureBuilt, REPO } from './fixture.js';

/**
 * Preloaded into the demo's process: any lookup or connection to a name outside loopback is refused and reported on
 * stderr, which the test requires to be empty. The demo must never resolve or contact a *.azure-devices.net hub.
 */
const LOOPBACK_ONLY = `data:text/javascript,${encodeURIComponent(`
import dns from 'node:dns';
import net from 'node:net';
const ok = (h) => typeof h !== 'string' || /^(localhost|127\\.\\d+\\.\\d+\\.\\d+|::1|\\[::1\\])$/i.test(h);
const lookup = dns.lookup;
dns.lookup = function (name, ...rest) {
  if (ok(name)) return lookup.call(this, name, ...rest);
  process.stderr.write('loopback guard: lookup of ' + name + ' refused\\n');
  const cb = rest.at(-1);
  process.nextTick(() => cb(Object.assign(new Error('refused'), { code: 'ENOTFOUND' })));
};
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  const o = Array.isArray(args[0]) ? args[0][0] : args[0];
  const host = typeof o === 'object' && o !== null ? o.host : typeof args[1] === 'string' ? args[1] : undefined;
  if (!(typeof o === 'object' && o !== null && typeof o.path === 'string') && !ok(host)) {
    process.stderr.write('loopback guard: connection to ' + host + ' refused\\n');
    process.nextTick(() => this.destroy(new Error('refused')));
    return this;
  }
  return connect.apply(this, args);
};
`)}`;

beforeAll(async () => {
  await ensureBuilt();
});

test('the demo exits 0 with every device as expected, printing no secret', async () => {
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', LOOPBACK_ONLY, join(REPO, 'dist/demo/run.js')], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (exit) => resolve({ code: exit, stdout: out, stderr: err }));
  });
  expect(stderr).toBe('');
  expect(code).toBe(0);

  // The summary table: one row per device with the outcome a user should see.
  expect(stdout).toMatch(/^device\s+enrollment\s+via\s+token\s+expected\s+outcome/m);
  expect(stdout).toMatch(/^sensor-0042\s+individual\s+http\s+own\s+assigned\s+assigned\s+hub-(eu|us)\.azure-devices\.net\s+assigned\s+\d+\s+ok$/m);
  expect(stdout).toMatch(/^line7-0001\s+group factory-line-7\s+mqtt\s+own\s+assigned\s+assigned\s+hub-(eu|us)\.azure-devices\.net\s+assigned\s+\d+\s+ok$/m);
  expect(stdout).toMatch(/^sensor-0042\s+individual\s+mqtt\s+tampered\s+refused\s+refused\s+DPS 400207\s+token_signature_invalid\s+\d+\s+ok$/m);
  expect(stdout).toMatch(/^line7-0002\s+group factory-line-7\s+http\s+sensor-0042's\s+refused\s+refused\s+DPS 400207\s+\S+\s+\d+\s+ok$/m);
  expect(stdout).toMatch(/^line7-0099\s+group factory-line-7\s+mqtt\s+own\s+refused\s+refused\s+DPS 400207\s+device_key_not_found\s+\d+\s+ok$/m);
  // The assigned device's hub and initial twin, as DPS recorded them.
  expect(stdout).toMatch(/sensor-0042 as DPS recorded it: hub hub-(eu|us)\.azure-devices\.net, device id sensor-0042/);
  expect(stdout).toMatch(/initial twin: \{.*"telemetryInterval":30/);
  // After assignment: each admitted device connected to its (local) hub, read the desired properties the webhook put
  // in its initial twin, and the hub received its telemetry (count and a sample).
  expect(stdout).toMatch(/^\s+sensor-0042: desired properties: \{"telemetryInterval":30,"\$version":1\}$/m);
  for (const id of ['sensor-0042', 'line7-0001']) {
    expect(stdout).toMatch(new RegExp(`^${id}\\s+hub-(eu|us)\\.azure-devices\\.net\\s+yes\\s+yes \\{"telemetryInterval":30\\}\\s+3\\s+\\{"deviceId":"${id}","seq":3,.*\\}\\s+ok$`, 'm'));
  }
  expect(stdout).toMatch(/^PASS: 5\/5 devices ended as expected; 2\/2 connected devices read the webhook's twin and had their telemetry received/m);

  expect(stdout).not.toMatch(/eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/);
  expect(stdout).not.toMatch(/code=|SharedAccessSignature sr=|[?&]sig=|primaryKey/);
});
