/**
 * The C sample's whole flow under valgrind (memcheck): register through the local DPS and the real webhook, connect to
 * the local hub, read the twin, report, send telemetry; and a refused registration. Each run must end with the
 * program's own exit code, no memory error, and no leak (definite, indirect or possible); valgrind's summary is read
 * from its log, and --error-exitcode makes any error change the exit code too.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { ID_SCOPE, individual, makeDevices, randomKey, startFlow, type Device, type Flow } from '../e2e/fixture.js';
import { buildCSample, type CBuild } from './build.js';
import { runBinary } from './exec.js';

const key = randomKey();
let flow: Flow;
let devices: Map<string, Device>;
let build: CBuild;
const VALGRIND_ERROR = 99;

beforeAll(async () => {
  build = await buildCSample();
  flow = await startFlow();
  devices = await makeDevices(flow.work, flow.keysDir, ['cv-0001']);
  // Valgrind slows the device down many times over; the DPS answers whenever it asks.
  await flow.startDps({ individualEnrollments: [individual('cv-0001', key, flow.webhookUrl())] });
});

afterAll(async () => {
  await flow?.close();
});

async function underValgrind(name: string, args: string[], env: Record<string, string>) {
  const log = join(flow.work, `valgrind-${name}.log`);
  const prefix = [
    'valgrind',
    '--tool=memcheck',
    '--leak-check=full',
    '--show-leak-kinds=definite,indirect,possible',
    '--errors-for-leak-kinds=definite,indirect,possible',
    `--error-exitcode=${VALGRIND_ERROR}`,
    `--log-file=${log}`,
  ];
  const out = await runBinary(build.bin, args, env, { prefix });
  return { out, log: await readFile(log, 'utf8') };
}

function expectClean(log: string): void {
  expect(log).toMatch(/ERROR SUMMARY: 0 errors from 0 contexts/);
  // Either nothing was left on the heap, or what is left is still reachable (libraries' globals), never lost.
  const lost = /definitely lost: ([\d,]+) bytes/.exec(log)?.[1];
  if (lost !== undefined) {
    expect(lost).toBe('0');
    expect(/indirectly lost: ([\d,]+) bytes/.exec(log)?.[1]).toBe('0');
    expect(/possibly lost: ([\d,]+) bytes/.exec(log)?.[1]).toBe('0');
  } else {
    expect(log).toContain('All heap blocks were freed -- no leaks are possible');
  }
}

test('register, connect, twin, reported, telemetry: no memory error, no leak', async () => {
  const dps = flow.dps!;
  const { out, log } = await underValgrind('run', [
    'run', '--registration-id', 'cv-0001', '--id-scope', ID_SCOPE, '--private-key', devices.get('cv-0001')!.privateKeyFile,
    '--host', dps.mqttHost, '--ca', dps.caFile, '--hub-host', dps.hub.host, '--count', '1', '--json',
  ], { DEVICE_SYMMETRIC_KEY: key });
  expect(out.code, log).toBe(0);
  const doc = JSON.parse(out.stdout) as { ok: boolean; registration: { status: string; assignedHub: string }; connection: { telemetrySent: number } };
  expect(doc.ok).toBe(true);
  expect(doc.registration.status).toBe('assigned');
  expect(doc.connection.telemetrySent).toBe(1);
  expect(dps.hub.device(doc.registration.assignedHub, 'cv-0001')!.telemetryCount).toBe(1);
  expectClean(log);
});

test('a refused registration (wrong key, exit 5) and a missing key file (exit 3): no memory error, no leak', async () => {
  const dps = flow.dps!;
  const base = ['register', '--registration-id', 'cv-0001', '--id-scope', ID_SCOPE, '--host', dps.mqttHost, '--ca', dps.caFile];
  const refused = await underValgrind('refused', [...base, '--private-key', devices.get('cv-0001')!.privateKeyFile], { DEVICE_SYMMETRIC_KEY: randomKey() });
  expect(refused.out.code, refused.log).toBe(5);
  expectClean(refused.log);
  const missing = await underValgrind('missing', [...base, '--private-key', join(flow.work, 'missing.key.pem')], { DEVICE_SYMMETRIC_KEY: key });
  expect(missing.out.code, missing.log).toBe(3);
  expectClean(missing.log);
});
