/**
 * The C sample (sample-device-c/) as a child process against the real webhook and the local DPS and hub over MQTT
 * (TLS), on loopback: an individual and a group device register, get `assigned`, connect to the hub DPS assigned,
 * read the desired properties the webhook set, report back and send telemetry the hub records. Refusals end with the
 * documented exit codes (sample-device/errors.ts; the C sample shares the table), with messages naming the problem
 * and no secret in any output.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { group, HUBS, ID_SCOPE, individual, makeDevices, randomKey, startFlow, type Device, type Flow } from '../e2e/fixture.js';
import { deriveDeviceKey, importDevicePrivateKey, signDeviceToken } from '../../sample-device/jwt.js';
import { buildCSample, type CBuild } from './build.js';
import { runBinary, type RunOutcome } from './exec.js';

const individualKey = randomKey();
const groupKey = randomKey(64);
let flow: Flow;
let devices: Map<string, Device>;
let build: CBuild;

beforeAll(async () => {
  build = await buildCSample();
  flow = await startFlow();
  devices = await makeDevices(flow.work, flow.keysDir, ['c-0001', 'c-0002', 'c-0003', 'cline-0001', 'c-off', 'c-badcode', 'c-renew']);
  await flow.startDps({
    individualEnrollments: [
      ...['c-0001', 'c-0002', 'c-0003', 'c-renew'].map((id) => individual(id, individualKey, flow.webhookUrl())),
      individual('c-off', individualKey, flow.webhookUrl(), { provisioningStatus: 'disabled' }),
      individual('c-badcode', individualKey, flow.webhookUrl(undefined, 'not-the-function-key')),
    ],
    enrollmentGroups: [group('c-factory-line', groupKey, flow.webhookUrl())],
  });
});

afterAll(async () => {
  await flow?.close();
});

/** Every secret of this file's devices: none may appear in any output. */
function assertNoSecret(out: RunOutcome): void {
  const text = out.stdout + out.stderr;
  expect(text).not.toContain(individualKey);
  expect(text).not.toContain(groupKey);
  expect(text).not.toContain(deriveDeviceKey(groupKey, 'cline-0001'));
  expect(text).not.toMatch(/SharedAccessSignature\s+sr=/);
  expect(text).not.toMatch(/sig=[A-Za-z0-9%]{10,}/);
  expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.eyJ/); // a JWT
  expect(text).not.toContain('PRIVATE KEY');
}

function dpsArgs(id: string): string[] {
  const dps = flow.dps!;
  return ['--registration-id', id, '--id-scope', ID_SCOPE, '--private-key', devices.get(id)!.privateKeyFile, '--host', dps.mqttHost, '--ca', dps.caFile];
}

async function webhookReasonFor(id: string): Promise<string | undefined> {
  const mine = (await flow.webhookLog()).filter((l) => l.registrationId === id || (l as { registration_id?: string }).registration_id === id);
  const last = mine.at(-1);
  return typeof last?.code === 'string' ? last.code : undefined;
}

describe('the whole flow', () => {
  test('an individual device: `run` registers (assigned), reads the desired properties the webhook set, reports, sends telemetry the hub records, follows a desired update', async () => {
    const dps = flow.dps!;
    let pushed = false;
    let seenUpdate = false;
    let hubSeen: string | undefined;
    let pushes: NodeJS.Timeout | undefined;
    const out = await runBinary(build.bin, ['run', ...dpsArgs('c-0001'), '--hub-host', dps.hub.host, '--count', '2'], { DEVICE_SYMMETRIC_KEY: individualKey }, {
      onStdout: (soFar) => {
        hubSeen ??= /assigned hub: {2}(\S+)/.exec(soFar)?.[1];
        // Once the first message is out, the back end lowers the interval until the device has seen the update.
        if (!pushed && hubSeen !== undefined && soFar.includes('telemetry 1/2 sent')) {
          pushed = true;
          const push = (): void => {
            if (!seenUpdate) dps.hub.updateDesired(hubSeen!, 'c-0001', { telemetryInterval: 1 });
          };
          push();
          pushes = setInterval(push, 500);
        }
        seenUpdate = soFar.includes('desired update');
      },
    });
    clearInterval(pushes);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    assertNoSecret(out);
    expect(out.stdout).toContain(`c-0001 registered over mqtt with ${flow.dps!.mqttHost}`);
    expect(out.stdout).toMatch(/ {2}status: {8}assigned \(initialAssignment\)/);
    const hub = /assigned hub: {2}(\S+)/.exec(out.stdout)?.[1];
    expect(HUBS).toContain(hub);
    expect(out.stdout).toMatch(/attestation: {3}symmetric-key; token signed by key [A-Za-z0-9_-]{43}, expires \d{4}-/);

    // The webhook decided, and DPS put the device on the hub with the webhook's twin.
    const record = flow.dps!.registrations().filter((r) => r.registrationId === 'c-0001').at(-1)!;
    expect(record.status).toBe('assigned');
    const webhookTwin = record.initialTwin as { properties: { desired: Record<string, unknown> } };
    expect(out.stdout).toContain(`desired properties: ${JSON.stringify({ ...webhookTwin.properties.desired, $version: 1 })}`);

    const seen = flow.dps!.hub.device(hub!, 'c-0001')!;
    expect(seen.telemetryCount).toBe(2);
    expect(seen.twin.properties.reported).toMatchObject({ telemetryInterval: 30, agent: 'dps-jwt-webhook sample-device-c' });
    expect(JSON.parse(seen.lastTelemetry!.body)).toMatchObject({ deviceId: 'c-0001', seq: 2 });
    expect(seen.lastTelemetry!.properties).toMatchObject({ source: 'sample-device-c', '$.ct': 'application/json', '$.ce': 'utf-8' });
    expect(out.stdout).toMatch(/desired update \(version \d+\): \{"telemetryInterval":1\}/);
    expect(out.stdout).toContain('telemetry interval now 1 s');
    expect(out.stdout).toMatch(/telemetry: {5}2 message\(s\), every 1 s; [1-9]\d* desired update\(s\) received/);
  });

  test('a group device: `register --json` with DEVICE_GROUP_KEY, then `connect --json` with the same group key', async () => {
    const reg = await runBinary(build.bin, ['register', ...dpsArgs('cline-0001'), '--json'], { DEVICE_GROUP_KEY: groupKey });
    expect(reg.code).toBe(0);
    assertNoSecret(reg);
    const result = JSON.parse(reg.stdout) as Record<string, unknown>;
    expect(result).toMatchObject({ ok: true, registrationId: 'cline-0001', deviceId: 'cline-0001', status: 'assigned', transport: 'mqtt', attestation: 'group-key' });
    expect(HUBS).toContain(result.assignedHub);

    const dps = flow.dps!;
    const conn = await runBinary(build.bin, ['connect', '--hub', String(result.assignedHub), '--device-id', 'cline-0001', '--hub-host', dps.hub.host, '--ca', dps.caFile, '--count', '1', '--json'], { DEVICE_GROUP_KEY: groupKey });
    expect(conn.code).toBe(0);
    assertNoSecret(conn);
    const connection = JSON.parse(conn.stdout) as Record<string, unknown>;
    expect(connection).toMatchObject({ ok: true, deviceId: 'cline-0001', telemetrySent: 1, desired: { telemetryInterval: 30, $version: 1 } });
    expect(conn.stderr).toContain('desired properties: {"telemetryInterval":30,"$version":1}'); // progress goes to stderr under --json
    expect(dps.hub.device(String(result.assignedHub), 'cline-0001')!.telemetryCount).toBe(1);
  });
});

describe('a long session', () => {
  test('renews its hub SAS before it expires: reconnects and keeps sending (a 4 s SAS here, one hour in the program)', async () => {
    const dps = flow.dps!;
    const reg = await runBinary(build.bin, ['register', ...dpsArgs('c-renew'), '--json'], { DEVICE_SYMMETRIC_KEY: individualKey });
    expect(reg.code, reg.stderr).toBe(0);
    const hub = String((JSON.parse(reg.stdout) as { assignedHub: string }).assignedHub);
    dps.hub.updateDesired(hub, 'c-renew', { telemetryInterval: 1 });
    const out = await runBinary(build.vectors, ['connect', '--hub', hub, '--device-id', 'c-renew', '--hub-host', dps.hub.host, '--ca', dps.caFile, '--symmetric-key', individualKey, '--count', '4', '--sas-lifetime', '4']);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toContain(`reconnected: c-renew on ${hub} via ${dps.hub.host} with a renewed SAS`);
    expect(out.stdout).toContain('telemetry 4/4 sent');
    expect(dps.hub.device(hub, 'c-renew')!.telemetryCount).toBe(4);
  });
});

describe('Ctrl-C', () => {
  test('while sending telemetry ends normally: the summary, exit 0', async () => {
    const out = await runBinary(build.bin, ['run', ...dpsArgs('c-0003'), '--hub-host', flow.dps!.hub.host, '--count', '5'], { DEVICE_SYMMETRIC_KEY: individualKey }, { interruptWhen: 'telemetry 1/5 sent' });
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/telemetry: {5}1 message\(s\), every \d+ s/);
  });
});

describe('refusals, with the documented exit codes', () => {
  test('a wrong symmetric key: DPS 401002, exit 5 (unauthorized), the webhook never called', async () => {
    const calls = (await flow.webhookLog()).length;
    const out = await runBinary(build.bin, ['register', ...dpsArgs('c-0002'), '--symmetric-key', randomKey()]);
    expect(out.code).toBe(5);
    expect(out.stderr).toContain('registration of c-0002 failed: DPS error 401002 Unauthorized');
    expect(out.stderr).toContain('hint: Check --id-scope and --registration-id');
    expect((await flow.webhookLog()).length).toBe(calls);
    assertNoSecret(out);
  });

  test('a token signed with a key that is not this device\'s (the webhook\'s token_signature_invalid): DPS 400207, exit 6', async () => {
    const out = await runBinary(build.bin, ['register', ...dpsArgs('c-0002'), '--private-key', devices.get('c-0003')!.privateKeyFile, '--json'], { DEVICE_SYMMETRIC_KEY: individualKey });
    expect(out.code).toBe(6);
    const error = JSON.parse(out.stdout) as Record<string, unknown>;
    expect(error).toMatchObject({ ok: false, code: 'refused', exitCode: 6, dpsErrorCode: 400207, dpsStatus: 'failed' });
    expect(out.stderr).toContain('DPS error 400207 CustomAllocationFailed: the webhook refused this device');
    expect(await webhookReasonFor('c-0002')).toBe('token_signature_invalid');
    assertNoSecret(out);
  });

  test('a tampered token and another device\'s token, sent through the C sample\'s DPS client: exit 6, the webhook says why', async () => {
    const key = await importDevicePrivateKey(await readFile(devices.get('c-0002')!.privateKeyFile, 'utf8'));
    const signed = await signDeviceToken({ privateKey: key, registrationId: 'c-0002', idScope: ID_SCOPE });
    const [h, c, s] = signed.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(c, 'base64url').toString('utf8')) as Record<string, unknown>;
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...claims, exp: Number(claims.exp) + 3600 })).toString('base64url')}.${s}`;
    const otherKey = await importDevicePrivateKey(await readFile(devices.get('c-0003')!.privateKeyFile, 'utf8'));
    const others = await signDeviceToken({ privateKey: otherKey, registrationId: 'c-0003', idScope: ID_SCOPE });
    const naming = await signDeviceToken({ privateKey: key, registrationId: 'c-0003', idScope: ID_SCOPE });
    const cases = [
      { token: tampered, reason: 'token_signature_invalid' },
      // The webhook checks the token with the registering device's public key, so another device's token fails there.
      { token: others, reason: 'token_signature_invalid' },
      { token: naming, reason: 'token_registration_mismatch' },
    ];
    for (const { token, reason } of cases) {
      const file = join(flow.work, `token-${reason}`);
      await writeFile(file, token, { mode: 0o600 });
      const dps = flow.dps!;
      const out = await runBinary(build.vectors, ['register', '--token-file', file, '--registration-id', 'c-0002', '--id-scope', ID_SCOPE, '--host', dps.mqttHost, '--ca', dps.caFile, '--symmetric-key', individualKey]);
      expect(out.code, out.stderr).toBe(6);
      expect(out.stderr).toContain('DPS error 400207');
      expect(await webhookReasonFor('c-0002')).toBe(reason);
    }
  });

  test('a disabled enrollment: exit 8, the webhook never called; a webhook URL without the right function key: 400209, exit 7', async () => {
    const calls = (await flow.webhookLog()).length;
    const off = await runBinary(build.bin, ['register', ...dpsArgs('c-off'), '--json'], { DEVICE_SYMMETRIC_KEY: individualKey });
    expect(off.code).toBe(8);
    expect(JSON.parse(off.stdout)).toMatchObject({ ok: false, code: 'disabled', exitCode: 8, dpsStatus: 'disabled' });
    expect(off.stderr).toContain('registration of c-off failed: the enrollment or registration is disabled in DPS');
    expect((await flow.webhookLog()).length).toBe(calls);
    const badcode = await runBinary(build.bin, ['register', ...dpsArgs('c-badcode'), '--json'], { DEVICE_SYMMETRIC_KEY: individualKey });
    expect(badcode.code).toBe(7);
    expect(JSON.parse(badcode.stdout)).toMatchObject({ ok: false, code: 'webhook_misconfigured', exitCode: 7, dpsErrorCode: 400209 });
    expect(badcode.stderr).toContain('DPS error 400209 CustomAllocationUnauthorizedAccess');
    expect(badcode.stderr).toContain('hint: Set the enrollment\'s webhookUrl with ?code=<function key>');
    assertNoSecret(badcode);
    expect(badcode.stdout + badcode.stderr).not.toContain('not-the-function-key');
  });

  test('a missing key file and a public key given as the private key: exit 3 naming the flag and the file', async () => {
    const missing = await runBinary(build.bin, ['register', ...dpsArgs('c-0002'), '--private-key', join(flow.work, 'nope.key.pem')], { DEVICE_SYMMETRIC_KEY: individualKey });
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain(`--private-key ${join(flow.work, 'nope.key.pem')} does not exist`);
    const pub = await runBinary(build.bin, ['register', ...dpsArgs('c-0002'), '--private-key', devices.get('c-0002')!.publicKeyFile], { DEVICE_SYMMETRIC_KEY: individualKey });
    expect(pub.code).toBe(3);
    expect(pub.stderr).toContain('is not a PEM private key (expected -----BEGIN PRIVATE KEY-----)');
    expect(pub.stderr).toContain('not the .pub.pem');
  });

  test('an unreachable DPS (a closed port) and an untrusted one (no --ca): exit 4 saying which', async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    await new Promise<void>((r) => server.close(() => r()));
    const args = dpsArgs('c-0002');
    const closed = await runBinary(build.bin, ['register', ...args.slice(0, 6), '--host', `localhost:${port}`, '--ca', flow.dps!.caFile], { DEVICE_SYMMETRIC_KEY: individualKey });
    expect(closed.code).toBe(4);
    expect(closed.stderr).toContain(`cannot reach DPS at localhost:${port} over mqtt (ECONNREFUSED)`);
    const untrusted = await runBinary(build.bin, ['register', ...args.slice(0, 8)], { DEVICE_SYMMETRIC_KEY: individualKey });
    expect(untrusted.code).toBe(4);
    expect(untrusted.stderr).toContain('its TLS certificate is not trusted');
    expect(untrusted.stderr).toContain('--ca FILE');
  });

  test('the hub refuses a key that is not the device\'s: exit 12', async () => {
    const hub = flow.dps!.hub.device(HUBS[0]!, 'c-0001') !== undefined ? HUBS[0]! : HUBS[1]!;
    const out = await runBinary(build.bin, ['connect', '--hub', hub, '--device-id', 'c-0001', '--hub-host', flow.dps!.hub.host, '--ca', flow.dps!.caFile, '--count', '1', '--symmetric-key', randomKey()]);
    expect(out.code).toBe(12);
    expect(out.stderr).toContain(`the hub refused c-0001 on ${hub} via ${flow.dps!.hub.host}: not authorized (CONNACK 5)`);
  });

  test('usage errors name the flag and never echo a key', async () => {
    const both = await runBinary(build.bin, ['register', ...dpsArgs('c-0002'), '--symmetric-key', individualKey, '--group-key', groupKey]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--symmetric-key and --group-key exclude each other');
    assertNoSecret(both);
    const http = await runBinary(build.bin, ['register', ...dpsArgs('c-0002'), '--transport', 'http'], { DEVICE_SYMMETRIC_KEY: individualKey });
    expect(http.code).toBe(2);
    expect(http.stderr).toContain('--transport http is not available in the C sample');
    const stray = await runBinary(build.bin, ['register', individualKey]);
    expect(stray.code).toBe(2);
    expect(stray.stderr).toContain('found a stray argument');
    assertNoSecret(stray);
    const calls = (await flow.webhookLog()).length;
    const count = await runBinary(build.bin, ['run', ...dpsArgs('c-0002'), '--count', 'five'], { DEVICE_SYMMETRIC_KEY: individualKey });
    expect(count.code).toBe(2);
    expect(count.stderr).toContain('--count must be a whole number, got "five"');
    expect((await flow.webhookLog()).length).toBe(calls); // refused before registering
    const none = await runBinary(build.bin, ['register', ...dpsArgs('c-0002')]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('--symmetric-key or --group-key is required (or set DEVICE_SYMMETRIC_KEY / DEVICE_GROUP_KEY)');
  });
});
