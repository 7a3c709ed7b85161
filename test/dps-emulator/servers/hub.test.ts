/**
 * The local IoT Hub against the official device SDK (azure-iot-device + azure-iot-device-mqtt, unmodified) and, for
 * what the SDK never sends, a raw MQTT client: what a device sees after DPS assigned it.
 */
import mqtt from 'mqtt';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import iotCommon from 'azure-iot-common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalDps, type LocalDps } from '../../../dps-emulator/index.js';
import { deriveDeviceKey } from '../../../dps-emulator/protocol/sas.js';
import { registerWithSdk } from '../helpers.js';
import { guardDns, guardLoopback } from '../../support/loopback-guard.js';

const KEY = Buffer.alloc(32, 3).toString('base64');
const OTHER_KEY = Buffer.alloc(32, 4).toString('base64');
const GROUP_KEY = Buffer.alloc(64, 6).toString('base64');
const HUB = 'hub-eu.azure-devices.net';
const TWIN = { tags: { site: 'lyon' }, properties: { desired: { telemetryInterval: 5, mode: 'eco' } } };

let dps: LocalDps;
// The hub names are real-looking *.azure-devices.net names: nothing here may resolve or contact them.
const sockets = guardLoopback();
const names = guardDns();

beforeAll(async () => {
  dps = await startLocalDps({
    enrollments: {
      individualEnrollments: [
        { registrationId: 'hub-dev-1', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: KEY, secondaryKey: OTHER_KEY } }, allocationPolicy: 'static', iotHubs: [HUB], initialTwin: TWIN },
      ],
      enrollmentGroups: [
        { enrollmentGroupId: 'line-9', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: GROUP_KEY } }, allocationPolicy: 'static', iotHubs: [HUB], initialTwin: TWIN },
      ],
    },
    retryAfterSeconds: 1,
  });
  await registerWithSdk(dps, 'mqtt', 'hub-dev-1', KEY);
});
afterAll(async () => {
  await dps?.close();
  names.restore();
  sockets.restore();
  expect(names.resolved).toEqual([]);
  expect(sockets.blocked).toEqual([]);
});

type DeviceClient = InstanceType<typeof deviceSdk.Client>;

async function connect(deviceId: string, key: string, hub = HUB): Promise<DeviceClient> {
  const client = deviceSdk.Client.fromConnectionString(dps.hub.connectionString(hub, deviceId, key), deviceMqtt.Mqtt);
  client.setRetryPolicy(new iotCommon.NoRetry());
  await client.setOptions({ ca: dps.caPem });
  await client.open();
  return client;
}

function rawConnect(opts: { clientId: string; username: string; password: string }): Promise<{ client: mqtt.MqttClient; connack: Promise<number>; closed: Promise<void> }> {
  const client = mqtt.connect(`mqtts://${dps.hub.host}`, { ...opts, ca: dps.caPem, protocolVersion: 4, reconnectPeriod: 0, clean: true });
  const connack = new Promise<number>((resolve) => {
    client.once('connect', () => resolve(0));
    client.once('error', (err) => resolve((err as { code?: number }).code ?? -1));
  });
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
  return Promise.resolve({ client, connack, closed });
}

describe('local IoT Hub, official device SDK over MQTT', () => {
  it('DPS created the device with its initial twin; the SDK reads it, reports back and sends telemetry the hub records', async () => {
    const client = await connect('hub-dev-1', KEY);
    try {
      const twin = await client.getTwin();
      expect(twin.properties.desired).toMatchObject({ telemetryInterval: 5, mode: 'eco', $version: 1 });
      await new Promise<void>((resolve, reject) => twin.properties.reported.update({ firmware: '1.2.3' }, (err?: Error) => (err ? reject(err) : resolve())));
      const msg = new deviceSdk.Message(JSON.stringify({ temperature: 21.5 }));
      msg.properties.add('alert', 'none');
      msg.contentType = 'application/json';
      await client.sendEvent(msg);

      const seen = dps.hub.device(HUB, 'hub-dev-1')!;
      expect(seen.connected).toBe(true);
      expect(seen.twin.tags).toEqual({ site: 'lyon' });
      expect(seen.twin.properties.reported).toMatchObject({ firmware: '1.2.3', $version: 2 });
      expect(seen.telemetryCount).toBe(1);
      expect(seen.lastTelemetry).toMatchObject({ body: '{"temperature":21.5}', properties: { alert: 'none', '$.ct': 'application/json' } });
    } finally {
      await client.close();
    }
  });

  it('pushes a back-end desired-property update to the subscribed device', async () => {
    const client = await connect('hub-dev-1', OTHER_KEY); // the secondary key works too
    try {
      const twin = await client.getTwin();
      const pushed = new Promise<Record<string, unknown>>((resolve) => {
        twin.on('properties.desired', (delta: Record<string, unknown>) => {
          if (delta.telemetryInterval === 2) resolve(delta);
        });
      });
      // The SDK subscribes to desired updates when the first listener is added; until its SUBACK, IoT Hub pushes
      // nothing (notifications go only to connected, subscribed devices), so the back end updates until one arrives.
      let version = 0;
      let delta: Record<string, unknown> | undefined;
      for (let i = 0; i < 50 && delta === undefined; i++) {
        version = dps.hub.updateDesired(HUB, 'hub-dev-1', { telemetryInterval: 2, mode: null });
        delta = await Promise.race([pushed, new Promise<undefined>((r) => setTimeout(() => r(undefined), 100))]);
      }
      expect(delta).toMatchObject({ telemetryInterval: 2, $version: version });
      expect(twin.properties.desired.telemetryInterval).toBe(2);
      expect(dps.hub.device(HUB, 'hub-dev-1')!.twin.properties.desired).toEqual({ telemetryInterval: 2, $version: version });
    } finally {
      await client.close();
    }
  });

  it('a group device connects with the key derived from the group key', async () => {
    const deviceKey = deriveDeviceKey(GROUP_KEY, 'line9-001');
    await registerWithSdk(dps, 'http', 'line9-001', deviceKey);
    const client = await connect('line9-001', deviceKey);
    try {
      expect((await client.getTwin()).properties.desired.mode).toBe('eco');
    } finally {
      await client.close();
    }
  });

  it.each([
    ['a wrong key', 'hub-dev-1', Buffer.alloc(32, 9).toString('base64'), HUB],
    ['a device DPS never assigned', 'never-registered', KEY, HUB],
    ['a hub no enrollment links', 'hub-dev-1', KEY, 'elsewhere.azure-devices.net'],
  ])('refuses %s with CONNACK 5 (the SDK: "Connection refused: Not authorized")', async (_name, deviceId, key, hub) => {
    const err = await connect(deviceId, key, hub).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    // The SDK calls every first-connection failure UnauthorizedError; mqtt.js's CONNACK text tells return code 5.
    expect(err?.name).toBe('UnauthorizedError');
    expect(err?.message).toMatch(/Connection refused: Not authorized/);
  });
});

describe('local IoT Hub, on the wire', () => {
  const sasFor = (deviceId: string, key: string, se = Math.floor(Date.now() / 1000) + 600): string =>
    deviceSdk.SharedAccessSignature.create(HUB, deviceId, key, se).toString();

  it('refuses an expired SAS, a clientId other than the device, and a SAS for another device, with CONNACK 5', async () => {
    const cases = [
      { clientId: 'hub-dev-1', username: `${HUB}/hub-dev-1/?api-version=2021-04-12`, password: sasFor('hub-dev-1', KEY, Math.floor(Date.now() / 1000) - 5) },
      { clientId: 'someone-else', username: `${HUB}/hub-dev-1/?api-version=2021-04-12`, password: sasFor('hub-dev-1', KEY) },
      { clientId: 'hub-dev-1', username: `${HUB}/hub-dev-1/?api-version=2021-04-12`, password: sasFor('line9-001', KEY) },
    ];
    for (const c of cases) {
      const { client, connack } = await rawConnect(c);
      expect(await connack).toBe(5);
      client.end(true);
    }
  });

  it('closes the connection on a publish to a topic IoT Hub does not document, or to another device\'s telemetry', async () => {
    for (const topic of ['devices/hub-dev-1/anything', 'devices/line9-001/messages/events/', '$iothub/twin/res/200/?$rid=1']) {
      const { client, connack, closed } = await rawConnect({ clientId: 'hub-dev-1', username: `${HUB}/hub-dev-1/?api-version=2021-04-12`, password: sasFor('hub-dev-1', KEY) });
      expect(await connack).toBe(0);
      const before = dps.hub.device(HUB, 'line9-001')!.telemetryCount;
      client.publish(topic, '{}', { qos: 1 });
      await closed;
      expect(dps.hub.device(HUB, 'line9-001')!.telemetryCount).toBe(before);
    }
  });

  it('closes the connection on a subscription to an undocumented filter (no eavesdropping with #)', async () => {
    const { client, connack, closed } = await rawConnect({ clientId: 'hub-dev-1', username: `${HUB}/hub-dev-1/?api-version=2021-04-12`, password: sasFor('hub-dev-1', KEY) });
    expect(await connack).toBe(0);
    client.subscribe('#');
    await closed;
  });

  it('answers a malformed reported patch with 400 and changes nothing', async () => {
    const { client, connack } = await rawConnect({ clientId: 'hub-dev-1', username: `${HUB}/hub-dev-1/?api-version=2021-04-12`, password: sasFor('hub-dev-1', KEY) });
    expect(await connack).toBe(0);
    const before = dps.hub.device(HUB, 'hub-dev-1')!.twin.properties.reported;
    await new Promise<void>((resolve) => client.subscribe('$iothub/twin/res/#', () => resolve()));
    const answer = new Promise<string>((resolve) => client.on('message', (topic) => resolve(topic)));
    client.publish('$iothub/twin/PATCH/properties/reported/?$rid=77', 'not json');
    expect(await answer).toBe('$iothub/twin/res/400/?$rid=77');
    expect(dps.hub.device(HUB, 'hub-dev-1')!.twin.properties.reported).toEqual(before);
    client.end(true);
  });
});

describe('local IoT Hub on its own loopback address (how a Python device, always on 8883, gets one)', () => {
  it('listens on ::1 when asked, and the SDK reaches it through GatewayHostName=[::1]:port', async () => {
    const v6 = await startLocalDps({
      enrollments: { individualEnrollments: [{ registrationId: 'v6-dev', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: KEY } }, allocationPolicy: 'static', iotHubs: [HUB], initialTwin: TWIN }] },
      retryAfterSeconds: 1,
      hubListenHost: '::1',
    });
    try {
      expect(v6.hub.host).toMatch(/^\[::1\]:\d+$/);
      await registerWithSdk(v6, 'http', 'v6-dev', KEY);
      const client = deviceSdk.Client.fromConnectionString(v6.hub.connectionString(HUB, 'v6-dev', KEY), deviceMqtt.Mqtt);
      client.setRetryPolicy(new iotCommon.NoRetry());
      await client.setOptions({ ca: v6.caPem });
      await client.open();
      try {
        expect((await client.getTwin()).properties.desired.telemetryInterval).toBe(5);
      } finally {
        await client.close();
      }
    } finally {
      await v6.close();
    }
  });
});
