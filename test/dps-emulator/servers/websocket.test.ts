/**
 * MQTT over WebSockets against the local DPS and hub, with the official Node SDK's WebSocket transports, unmodified:
 * azure-iot-provisioning-device-mqtt `MqttWs` and azure-iot-device-mqtt `MqttWs`. Both build
 * `wss://<host>:443/$iothub/websocket` and take no port (`mqtt_ws.ts`), so the DPS and the hub each listen on 443 at
 * a loopback address of their own (127.x.y.z, random per run), named in the local CA's certificate. Binding 443
 * needs root (or net.ipv4.ip_unprivileged_port_start), as the suite runs; elsewhere these SDK tests are skipped, saying so.
 *
 * Then what the real front end refuses (HTTP 400, servers/websocket.ts cites the sources), with a raw `ws` client.
 */
import { request } from 'node:https';
import provisioningDevice from 'azure-iot-provisioning-device';
import provisioningMqtt from 'azure-iot-provisioning-device-mqtt';
import mqttBase from 'azure-iot-mqtt-base';
import symmetricKey from 'azure-iot-security-symmetric-key';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import iotCommon from 'azure-iot-common';
import mqtt from 'mqtt';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalDps, type LocalDps } from '../../../dps-emulator/index.js';
import { deriveDeviceKey } from '../../../dps-emulator/protocol/sas.js';
import { generateLocalTls } from '../../../dps-emulator/tls.js';
import { guardDns, guardLoopback } from '../../support/loopback-guard.js';
import { mayBind443, onOwnLoopbackAddresses, randomLoopback } from '../../support/ports.js';

const KEY = Buffer.alloc(32, 5).toString('base64');
const GROUP_KEY = Buffer.alloc(64, 8).toString('base64');
const HUB = 'hub-ws.azure-devices.net';
const TWIN = { tags: { site: 'porto' }, properties: { desired: { telemetryInterval: 15 } } };
const canBind443 = mayBind443();

let dps: LocalDps;
const lines: string[] = [];
const sockets = guardLoopback();
const names = guardDns();

beforeAll(async () => {
  if (!canBind443) return;
  const enrollments = {
    individualEnrollments: [
      { registrationId: 'ws-dev-1', attestation: { type: 'symmetricKey' as const, symmetricKey: { primaryKey: KEY } }, allocationPolicy: 'static' as const, iotHubs: [HUB], initialTwin: TWIN },
    ],
    enrollmentGroups: [
      { enrollmentGroupId: 'ws-line', attestation: { type: 'symmetricKey' as const, symmetricKey: { primaryKey: GROUP_KEY } }, allocationPolicy: 'static' as const, iotHubs: [HUB], initialTwin: TWIN },
    ],
  };
  // 443 on two loopback addresses of their own: MqttWs cannot be given a port.
  ({ started: dps } = await onOwnLoopbackAddresses(async (dpsAddress, hubAddress) => {
    const tls = await generateLocalTls(new Date(), [dpsAddress, hubAddress]);
    return startLocalDps({ enrollments, host: dpsAddress, wsPort: 443, hubListenHost: hubAddress, hubWsPort: 443, tls, retryAfterSeconds: 1, log: (l) => lines.push(l) });
  }));
});

afterAll(async () => {
  await dps?.close();
  names.restore();
  sockets.restore();
  expect(names.resolved).toEqual([]);
  expect(sockets.blocked).toEqual([]);
});

async function registerWs(registrationId: string, key: string): Promise<any> {
  const base = new mqttBase.MqttBase();
  base.setOptions({ ca: dps.caPem });
  const security = new symmetricKey.SymmetricKeySecurityClient(registrationId, key);
  // The provisioning host is the bare address: MqttWs appends ':443/$iothub/websocket' itself.
  const client = provisioningDevice.ProvisioningDeviceClient.create(dps.websocket!.address, dps.idScope, new provisioningMqtt.MqttWs(base) as any, security);
  return client.register();
}

type DeviceClient = InstanceType<typeof deviceSdk.Client>;

async function openHubWs(deviceId: string, key: string): Promise<DeviceClient> {
  // HostName names the hub (SAS resource, MQTT username); GatewayHostName is where MqttWs connects, on 443.
  const cs = `HostName=${HUB};DeviceId=${deviceId};SharedAccessKey=${key};GatewayHostName=${dps.hub.websocket!.address}`;
  const client = deviceSdk.Client.fromConnectionString(cs, deviceMqtt.MqttWs);
  client.setRetryPolicy(new iotCommon.NoRetry());
  await client.setOptions({ ca: dps.caPem });
  await client.open();
  return client;
}

const failure = async (p: Promise<unknown>): Promise<any> => {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('unexpectedly succeeded');
};

describe.skipIf(!canBind443)('the official Node SDK over MQTT over WebSockets (MqttWs), port 443', () => {
  it('serves wss on 443 at the DPS and the hub addresses, each at /$iothub/websocket', () => {
    expect(dps.websocket).toMatchObject({ port: 443, url: `wss://${dps.websocket!.address}:443/$iothub/websocket` });
    expect(dps.hub.websocket).toMatchObject({ port: 443, url: `wss://${dps.hub.websocket!.address}:443/$iothub/websocket` });
    expect(dps.hub.websocket!.address).not.toBe(dps.websocket!.address);
  });

  it('provisioning MqttWs registers (individual enrollment); the hub MqttWs reads the twin, follows a desired patch, sends telemetry', async () => {
    const state = await registerWs('ws-dev-1', KEY);
    expect(state).toMatchObject({ registrationId: 'ws-dev-1', assignedHub: HUB, deviceId: 'ws-dev-1', status: 'assigned' });
    // The same registration service as plain MQTT: the record says MQTT.
    expect(dps.registrations().filter((r) => r.registrationId === 'ws-dev-1').at(-1)).toMatchObject({ status: 'assigned', transport: 'mqtt' });

    const client = await openHubWs('ws-dev-1', KEY);
    try {
      expect(dps.hub.device(HUB, 'ws-dev-1')!.connected).toBe(true);
      const twin = await client.getTwin();
      expect(twin.properties.desired).toMatchObject({ telemetryInterval: 15, $version: 1 });
      // IoT Hub pushes patches only to a subscribed device: wait for the SDK's SUBACK before the back end updates.
      await new Promise<void>((resolve, reject) => twin.enableTwinDesiredPropertiesUpdates((err?: Error) => (err ? reject(err) : resolve())));
      const patched = new Promise<Record<string, unknown>>((resolve) => twin.on('properties.desired', (p: Record<string, unknown>) => p.$version === 2 && resolve(p)));
      expect(dps.hub.updateDesired(HUB, 'ws-dev-1', { telemetryInterval: 60 })).toBe(2);
      expect(await patched).toMatchObject({ telemetryInterval: 60, $version: 2 });
      const msg = new deviceSdk.Message(JSON.stringify({ over: 'wss' }));
      msg.contentType = 'application/json';
      await client.sendEvent(msg);
      const seen = dps.hub.device(HUB, 'ws-dev-1')!;
      expect(seen.telemetryCount).toBe(1);
      expect(JSON.parse(seen.lastTelemetry!.body)).toEqual({ over: 'wss' });
    } finally {
      await client.close();
    }
  });

  it('an enrollment group member registers over MqttWs with its derived key', async () => {
    const state = await registerWs('ws-member-7', deriveDeviceKey(GROUP_KEY, 'ws-member-7'));
    expect(state).toMatchObject({ assignedHub: HUB, deviceId: 'ws-member-7', status: 'assigned' });
  });

  it('the same SAS check as plain MQTT: a wrong key is refused by DPS (401) and by the hub (CONNACK 5, not authorized)', async () => {
    const wrong = Buffer.alloc(32, 6).toString('base64');
    // What the SDK raises for DPS's 401 answer on $dps/registrations/res/401/, its body passed on as `result`.
    const err = await failure(registerWs('ws-dev-1', wrong));
    expect(err).toBeInstanceOf(iotCommon.errors.UnauthorizedError);
    expect(err.result).toMatchObject({ errorCode: 401002 });
    expect(lines.some((l) => l.includes('ws-dev-1') && l.includes('401002'))).toBe(true);
    const hubErr = await failure(openHubWs('ws-dev-1', wrong));
    expect(hubErr).toBeInstanceOf(iotCommon.errors.UnauthorizedError);
    expect(lines.some((l) => l.includes('hub connect refused for client ws-dev-1'))).toBe(true);
  });
});

/** A raw WebSocket handshake: the status the server answered, or 101 when it upgraded (and the subprotocol chosen). */
function handshake(target: LocalDps, path: string, protocols: string[] | undefined): Promise<{ status: number; protocol?: string; body?: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${target.websocket!.port}${path}`, protocols, { ca: target.caPem });
    ws.on('open', () => {
      resolve({ status: 101, protocol: ws.protocol });
      ws.terminate();
    });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.on('error', reject);
  });
}

// On free ports (wsPort: 0), so these run without root too; the hub on a loopback address of its own, which the
// generated certificate names without being told.
describe('what the real WebSocket front end refuses, the local one refuses (HTTP 400)', () => {
  let local: LocalDps;
  const logged: string[] = [];
  beforeAll(async () => {
    local = await startLocalDps({
      enrollments: { individualEnrollments: [{ registrationId: 'ws-raw', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: KEY } }, allocationPolicy: 'static', iotHubs: [HUB] }] },
      wsPort: 0,
      hubListenHost: randomLoopback(),
      hubWsPort: 0,
      log: (l) => logged.push(l),
    });
  });
  afterAll(async () => {
    await local?.close();
  });

  it('the right path and subprotocol upgrade, answering subprotocol mqtt (also with more subprotocols offered)', async () => {
    expect(await handshake(local, '/$iothub/websocket', ['mqtt'])).toEqual({ status: 101, protocol: 'mqtt' });
    expect(await handshake(local, '/$iothub/websocket', ['wamp', 'mqtt'])).toEqual({ status: 101, protocol: 'mqtt' });
  });

  it('a wrong path: 400, naming the path, and logged', async () => {
    for (const path of ['/', '/mqtt', '/$iothub/websocket/extra', '/mqtt?sig=SECRET-IN-QUERY']) {
      const answer = await handshake(local, path, ['mqtt']);
      expect(answer.status).toBe(400);
      expect(answer.body).toContain('path must be /$iothub/websocket');
    }
    expect(logged.some((l) => l.startsWith('dps websocket upgrade refused (400) for /mqtt: path must be /$iothub/websocket'))).toBe(true);
    expect(logged.join('\n')).not.toContain('SECRET-IN-QUERY');
  });

  it('no subprotocol, or not mqtt: 400', async () => {
    for (const protocols of [undefined, ['mqttv3.1'], ['wamp']]) {
      const answer = await handshake(local, '/$iothub/websocket', protocols);
      expect(answer.status).toBe(400);
      expect(answer.body).toContain('Sec-WebSocket-Protocol must offer "mqtt"');
    }
  });

  it("a plain HTTPS request (no upgrade): 400, not an API; the certificate is valid for the hub's own address", async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ host: local.hub.websocket!.address, port: local.hub.websocket!.port, path: '/$iothub/websocket', ca: local.caPem }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(400);
  });

  it("behind an accepted upgrade is the hub's own MQTT handler: a device DPS never assigned gets CONNACK 5", async () => {
    const client = mqtt.connect(local.hub.websocket!.url, {
      clientId: 'ws-raw',
      username: `${HUB}/ws-raw/?api-version=2021-04-12`,
      password: 'SharedAccessSignature sr=x&sig=y&se=1',
      ca: local.caPem,
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    const code = await new Promise<number>((resolve) => {
      client.once('connect', () => resolve(0));
      client.once('error', (err) => resolve((err as { code?: number }).code ?? -1));
    });
    client.end(true);
    expect(code).toBe(5);
    expect(logged.some((l) => l.startsWith('hub connect refused for client ws-raw'))).toBe(true);
  });
});

if (!canBind443) it.skip('the SDKs over MqttWs need port 443 on loopback, which needs root here (they take no other port)', () => {});

describe('closing with devices still connected over WebSockets', () => {
  it('close() ends their connections and returns; the device sees its connection close', async () => {
    const local = await startLocalDps({
      enrollments: { individualEnrollments: [{ registrationId: 'ws-open', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: KEY } }, allocationPolicy: 'static', iotHubs: [HUB] }] },
      wsPort: 0,
    });
    // DPS accepts a CONNECT of the right shape and checks the SAS per request (servers/mqtt.ts), so this one stays.
    const client = mqtt.connect(local.websocket!.url, {
      clientId: 'ws-open',
      username: `${local.idScope}/registrations/ws-open/api-version=2019-03-31`,
      password: 'SharedAccessSignature sr=x&sig=y&se=1',
      ca: local.caPem,
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    await local.close();
    await closed;
    client.end(true);
  });
});
