/**
 * After `assigned` (issue 14): a device registers through the local DPS with the official provisioning SDK, DPS puts
 * it into the local IoT Hub with the twin the real webhook chose, and the device connects there with the official
 * device SDK (the sample device's `connect`): it reads the desired properties the webhook set, reports back, sends
 * telemetry the hub records, and follows a desired-property update pushed by the back end. An individual and a group
 * device. No name outside loopback is ever resolved and no socket leaves loopback (guards below).
 */
import { writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { createServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { Aedes } from 'aedes';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createSas } from '../../dps-emulator/protocol/sas.js';
import { generateLocalTls } from '../../dps-emulator/tls.js';
import { connect, type ConnectResult } from '../../sample-device/commands/connect.js';
import { SampleDeviceError } from '../../sample-device/errors.js';
import { guardDns, guardLoopback } from '../support/loopback-guard.js';
import { group, HUBS, individual, makeDevices, randomKey, startFlow, type Device, type Flow } from './fixture.js';

const individualKey = randomKey();
const groupKey = randomKey(64);
let flow: Flow;
let devices: Map<string, Device>;
let sockets: ReturnType<typeof guardLoopback>;
let names: ReturnType<typeof guardDns>;

beforeAll(async () => {
  sockets = guardLoopback();
  names = guardDns();
  flow = await startFlow();
  devices = await makeDevices(flow.work, flow.keysDir, ['hub-0042', 'line9-0001']);
  await flow.startDps({
    individualEnrollments: [individual('hub-0042', individualKey, flow.webhookUrl())],
    enrollmentGroups: [group('factory-line-9', groupKey, flow.webhookUrl())],
  });
});

afterAll(async () => {
  await flow?.close();
  names?.restore();
  sockets?.restore();
});

const CASES = [
  { title: 'individual device', id: 'hub-0042', transport: 'http' as const, key: { symmetricKey: individualKey } },
  { title: 'group device', id: 'line9-0001', transport: 'mqtt' as const, key: { groupKey } },
];

describe.each(CASES)('$title', ({ id, transport, key }) => {
  test('registers, connects to its hub, reads the twin the webhook set, reports, sends telemetry, follows a desired update', async () => {
    const { result, error, webhookReason } = await flow.register({ registrationId: id, privateKeyFile: devices.get(id)!.privateKeyFile, transport, ...key });
    expect(error).toBeUndefined();
    expect(webhookReason).toBe('assigned');
    const hub = result!.assignedHub;
    expect(HUBS).toContain(hub);
    const dps = flow.dps!;
    const record = dps.registrations().filter((r) => r.registrationId === id).at(-1)!;
    // The webhook's answer: the template's desired properties, its tags plus provisioning tags.
    const webhookTwin = record.initialTwin as { tags: Record<string, unknown>; properties: { desired: Record<string, unknown> } };
    expect(webhookTwin.properties.desired).toEqual({ telemetryInterval: 30 });

    const lines: string[] = [];
    let pushedVersion = 0;
    const pushes = setInterval(() => {
      // Once the first message is out, the back end lowers the interval until the device has seen the update.
      if (lines.some((l) => l.startsWith('telemetry 1/2')) && !lines.some((l) => l.startsWith('desired update'))) {
        pushedVersion = dps.hub.updateDesired(hub, result!.deviceId, { telemetryInterval: 1 });
      }
    }, 100);
    let connection: ConnectResult;
    try {
      connection = await connect({
        hub,
        deviceId: result!.deviceId,
        ...key,
        hubHost: dps.hub.host,
        caFile: dps.caFile,
        count: 2,
        print: (l) => lines.push(l),
      });
    } finally {
      clearInterval(pushes);
    }

    // The device read the desired properties exactly as the webhook put them in the initial twin.
    expect(connection.desired).toEqual({ ...webhookTwin.properties.desired, $version: 1 });
    expect(connection.telemetrySent).toBe(2);
    expect(connection.desiredUpdates).toBeGreaterThanOrEqual(1);
    expect(connection.telemetryIntervalSeconds).toBe(1);
    expect(lines).toContain(`desired properties: ${JSON.stringify({ telemetryInterval: 30, $version: 1 })}`);
    expect(lines.some((l) => l.startsWith(`desired update (version ${pushedVersion})`) || l.startsWith('desired update'))).toBe(true);

    // What the hub recorded.
    const seen = dps.hub.device(hub, result!.deviceId)!;
    expect(seen.twin.tags).toEqual(webhookTwin.tags);
    expect(seen.twin.properties.reported).toMatchObject({ telemetryInterval: 30, agent: 'dps-jwt-webhook sample-device' });
    expect(seen.telemetryCount).toBe(2);
    const sample = JSON.parse(seen.lastTelemetry!.body) as Record<string, unknown>;
    expect(sample).toMatchObject({ deviceId: result!.deviceId, seq: 2 });
    expect(seen.lastTelemetry!.properties).toMatchObject({ source: 'sample-device', '$.ct': 'application/json', '$.ce': 'utf-8' });
  });
});

describe('what the Python SDK sends without a payload ("payload": null), as docs/local-dps.md states', () => {
  test('the webhook answers token_missing and DPS fails the registration with 400207, without retrying', async () => {
    const dps = flow.dps!;
    const sas = createSas(dps.idScope, 'hub-0042', individualKey, Math.floor(Date.now() / 1000) + 300);
    const call = (method: string, path: string, body?: string) =>
      new Promise<{ status: number; body: any }>((resolve, reject) => {
        const req = request({ host: 'localhost', port: dps.httpsPort, method, path, ca: dps.caPem, headers: { authorization: sas, 'content-type': 'application/json' } }, (res) => {
          let text = '';
          res.on('data', (c) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
        });
        req.on('error', reject);
        req.end(body);
      });
    const seen = (await flow.webhookLog()).length;
    const put = await call('PUT', `/${dps.idScope}/registrations/hub-0042/register?api-version=2019-03-31`, JSON.stringify({ registrationId: 'hub-0042', payload: null }));
    expect(put.status).toBe(202);
    let got = put;
    for (let i = 0; i < 100 && got.status === 202; i++) {
      await new Promise((r) => setTimeout(r, 50));
      got = await call('GET', `/${dps.idScope}/registrations/hub-0042/operations/${put.body.operationId}?api-version=2019-03-31`);
    }
    expect(got.body).toMatchObject({ status: 'failed', registrationState: { errorCode: 400207 } });
    expect((await flow.webhookLog()).slice(seen).map((l) => l.code)).toEqual(['token_missing']);
  });
});

describe('failures a device owner can tell apart', () => {
  test('a wrong key is hub_unauthorized (exit 12); no hub listening is hub_unreachable (exit 11)', async () => {
    const dps = flow.dps!;
    await flow.register({ registrationId: 'hub-0042', privateKeyFile: devices.get('hub-0042')!.privateKeyFile, symmetricKey: individualKey });
    const hub = dps.hub.devices().find((d) => d.deviceId === 'hub-0042')!.hub;
    const wrong = await connect({ hub, deviceId: 'hub-0042', symmetricKey: randomKey(), hubHost: dps.hub.host, caFile: dps.caFile, count: 0 }).catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(SampleDeviceError);
    expect(wrong).toMatchObject({ code: 'hub_unauthorized', exitCode: 12 });
    const down = await connect({ hub, deviceId: 'hub-0042', symmetricKey: individualKey, hubHost: 'localhost:1', caFile: dps.caFile, count: 0 }).catch((e: unknown) => e);
    expect(down).toMatchObject({ code: 'hub_unreachable', exitCode: 11 });
    expect(String((down as Error).message)).not.toContain(individualKey);
  });

  test('a hub that accepts the device but never answers the twin request: twin_timeout (exit 13)', async () => {
    // A bare MQTT broker: it lets anyone in and routes nothing back, so $iothub/twin/GET gets no answer.
    const tls = await generateLocalTls();
    const broker = await Aedes.createBroker();
    const server = createServer({ cert: tls.cert, key: tls.key }, (socket) => broker.handle(socket));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const caFile = `${flow.work}/mute-hub-ca.pem`;
    await writeFile(caFile, tls.ca);
    try {
      const started = Date.now();
      const mute = await connect({
        hub: HUBS[0]!, deviceId: 'hub-0042', symmetricKey: individualKey, hubHost: `localhost:${(server.address() as AddressInfo).port}`, caFile, count: 1, twinTimeoutMs: 1000,
      }).catch((e: unknown) => e);
      expect(mute).toMatchObject({ code: 'twin_timeout', exitCode: 13 });
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await new Promise<void>((r) => broker.close(() => server.close(() => r())));
    }
  });

  test('nothing resolved or contacted a name outside loopback', () => {
    expect(names.resolved).toEqual([]);
    expect(sockets.blocked).toEqual([]);
  });
});
