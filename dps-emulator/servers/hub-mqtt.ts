/**
 * The local IoT Hub's device endpoint: MQTT 3.1.1 on TLS (iot-mqtt-connect-to-iot-hub), on the `aedes` broker, for
 * every hub the enrollments link. aedes does the MQTT; this file checks CONNECT, allows only the documented topics, and
 * answers each twin request to the requesting device alone. Nothing is routed between devices. Every rule below cites
 * its source; docs/local-dps.md collects them.
 */
import type { Duplex } from 'node:stream';
import { createServer, type Server } from 'node:tls';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import { HubAuthError, MAX_D2C_MESSAGE_BYTES, TwinOperationError, type DesiredUpdate, type HubRegistry } from '../hub/registry.js';
import type { TlsMaterial } from '../tls.js';

/**
 * `{hub}/{deviceId}/?api-version=...` (docs; the Node SDK appends `&DeviceClientType=...`, mqtt.ts
 * `_getBaseTransportConfig`). A module identity (`{hub}/{device}/{module}/...`) has one more segment: not supported.
 */
const USERNAME = /^([^/]+)\/([^/]+)\/(?:\?(.*))?$/;
/** Request ids are echoed into a response topic: keep them to characters that cannot change its meaning. */
const RID = /^[A-Za-z0-9._~-]{1,128}$/;
const TWIN_RESPONSE = '$iothub/twin/res/';
const DESIRED_PUSH = '$iothub/twin/PATCH/properties/desired/';
const DESIRED_FILTER = '$iothub/twin/PATCH/properties/desired/#';

// aedes' AuthErrorCode is a const enum in its .d.ts; isolatedModules cannot read it, so the value is spelled out.
/** IoT Hub refuses bad credentials with CONNACK 5 "not authorized" (SDK traces in Azure/azure-iot-sdk-c#373, #928). */
const NOT_AUTHORIZED = 5;

interface Session {
  readonly hub: string;
  readonly deviceId: string;
}

export interface HubMqttServer {
  readonly server: Server;
  /** Serves one MQTT connection on any byte stream: how MQTT over WebSockets reaches the same broker (websocket.ts). */
  handle(stream: Duplex): void;
  /** Closes the live connection of a device (it was moved to another hub). */
  disconnect(hub: string, deviceId: string): void;
  /** Pushes a desired-properties patch to the device if it is connected and subscribed. */
  pushDesired(update: DesiredUpdate): boolean;
  close(): Promise<void>;
}

export async function createHubMqttServer(registry: HubRegistry, tls: TlsMaterial, log: (line: string) => void): Promise<HubMqttServer> {
  const sessions = new WeakMap<Client, Session>();
  const live = new Map<string, Client>();
  const liveKey = (hub: string, deviceId: string): string => `${hub.toLowerCase()}/${deviceId}`;

  const broker = await Aedes.createBroker({
    authenticate(client, username, password, done) {
      const refuse = (why: string): void => {
        log(`hub connect refused for client ${printable(client.id)}: ${why}`);
        const err = new Error('not authorized') as AuthenticateError;
        err.returnCode = NOT_AUTHORIZED as AuthenticateError['returnCode'];
        done(err, false);
      };
      // IoT Hub speaks MQTT 3.1.1 only (docs: "MQTT v3.1.1 on TCP port 8883").
      if (client.version !== 4) return refuse('not MQTT 3.1.1');
      const m = username ? USERNAME.exec(username) : null;
      if (!m) return refuse('username is not {hub}/{deviceId}/?api-version=...');
      const hub = m[1]!;
      const deviceId = safeDecode(m[2]!);
      // docs: "For the ClientId field, use the deviceId".
      if (deviceId === undefined || client.id !== deviceId) return refuse('clientId is not the device id named in the username');
      try {
        registry.authenticate(hub, deviceId, password?.toString('utf8'));
      } catch (err) {
        if (err instanceof HubAuthError) return refuse(`${err.reason} (${hub}/${printable(deviceId)})`);
        throw err;
      }
      sessions.set(client, { hub: hub.toLowerCase(), deviceId });
      done(null, true);
    },
    authorizeSubscribe(client, sub, done) {
      const session = client ? sessions.get(client) : undefined;
      // docs: IoT Hub "only supports the documented topic names and topic filters", and over MQTT refuses by closing
      // the connection ("AMQP returns errors for many conditions, while MQTT terminates the connection").
      if (!session || !allowedFilter(sub.topic, session.deviceId)) return done(new Error('topic filter not supported by IoT Hub'), null);
      // docs: "When a device app subscribes to a topic with QoS 2, IoT Hub grants maximum QoS level 1".
      done(null, { ...sub, qos: Math.min(sub.qos, 1) as 0 | 1 });
    },
    authorizePublish(client, packet, done) {
      const session = client ? sessions.get(client) : undefined;
      if (!client || !session) return done(new Error('not connected'));
      // docs: "If a device app publishes a message with QoS 2, IoT Hub closes the network connection."
      if (packet.qos === 2) return done(new Error('QoS 2 is not supported by IoT Hub'));
      const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
      const topic = packet.topic;
      const telemetryPrefix = `devices/${session.deviceId}/messages/events/`;
      if (topic.startsWith(telemetryPrefix)) {
        if (payload.length > MAX_D2C_MESSAGE_BYTES) return done(new Error('message over 256 KB'));
        const properties = parsePropertyBag(topic.slice(telemetryPrefix.length));
        if (!properties) return done(new Error('malformed property bag'));
        try {
          registry.recordTelemetry(session.hub, session.deviceId, properties, payload);
        } catch {
          return done(new Error('device no longer on this hub')); // moved by a re-provisioning meanwhile
        }
        return done(null);
      }
      const twin = parseTwinRequest(topic);
      if (!twin) return done(new Error('topic not supported by IoT Hub'));
      done(null);
      try {
        if (twin.kind === 'get') {
          respond(client, `${TWIN_RESPONSE}200/?$rid=${twin.rid}`, JSON.stringify(registry.twinProperties(session.hub, session.deviceId)));
        } else {
          const version = registry.patchReported(session.hub, session.deviceId, payload.toString('utf8'));
          // docs: success is `$iothub/twin/res/204/?$rid={rid}&$version={new version}`, no body.
          respond(client, `${TWIN_RESPONSE}204/?$rid=${twin.rid}&$version=${version}`, '');
        }
      } catch (err) {
        if (!(err instanceof TwinOperationError)) throw err;
        // The Node SDK ignores the status and fails a request whose body carries errorCode (mqtt_twin_client.ts).
        const body = JSON.stringify({ errorCode: err.status * 1000 + 4, message: err.message });
        respond(client, `${TWIN_RESPONSE}${err.status}/?$rid=${twin.rid}`, body);
      }
    },
    // Only our own answers reach a device: a device's publish is never forwarded to another.
    authorizeForward(_client, packet) {
      return packet.topic.startsWith(TWIN_RESPONSE) || packet.topic.startsWith(DESIRED_PUSH) ? packet : null;
    },
  });

  broker.on('clientReady', (client) => {
    const s = sessions.get(client);
    if (!s) return;
    live.set(liveKey(s.hub, s.deviceId), client);
    registry.setConnected(s.hub, s.deviceId, true);
  });
  broker.on('clientDisconnect', (client) => {
    const s = sessions.get(client);
    if (!s) return;
    const k = liveKey(s.hub, s.deviceId);
    if (live.get(k) === client) {
      live.delete(k);
      registry.setConnected(s.hub, s.deviceId, false);
    }
  });

  const server = createServer({ cert: tls.cert, key: tls.key }, (socket) => {
    broker.handle(socket);
  });
  server.on('tlsClientError', () => {});

  return {
    server,
    handle: (stream) => void broker.handle(stream),
    disconnect(hub, deviceId) {
      live.get(liveKey(hub, deviceId))?.close();
    },
    pushDesired(update) {
      const client = live.get(liveKey(update.hub, update.deviceId));
      // aedes keeps a client's live subscriptions in `subscriptions` (lib/client.js); its .d.ts does not declare it.
      const subscribed = (client as unknown as { subscriptions?: Record<string, unknown> } | undefined)?.subscriptions?.[DESIRED_FILTER];
      if (!client || !subscribed) return false;
      // docs: notifications go to `$iothub/twin/PATCH/properties/desired/?$version={new-version}`, body the patch
      // with `$version`, and only while the device is connected.
      respond(client, `${DESIRED_PUSH}?$version=${update.patch.$version}`, JSON.stringify(update.patch));
      return true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        broker.close(() => server.close(() => resolve()));
      }),
  };
}

/** The topic filters IoT Hub documents for a device (docs: twin, methods, cloud-to-device). */
function allowedFilter(filter: string, deviceId: string): boolean {
  return (
    filter === '$iothub/twin/res/#' ||
    filter === DESIRED_FILTER ||
    filter === '$iothub/methods/POST/#' ||
    filter === `devices/${deviceId}/messages/devicebound/#`
  );
}

type TwinRequest = { kind: 'get'; rid: string } | { kind: 'patch-reported'; rid: string };

/** `$iothub/twin/GET/?$rid={rid}` and `$iothub/twin/PATCH/properties/reported/?$rid={rid}` (docs). */
function parseTwinRequest(topic: string): TwinRequest | undefined {
  const q = topic.indexOf('?');
  if (q < 0) return undefined;
  const base = topic.slice(0, q);
  const rid = new URLSearchParams(topic.slice(q + 1)).get('$rid');
  if (!rid || !RID.test(rid)) return undefined;
  if (base === '$iothub/twin/GET/') return { kind: 'get', rid };
  if (base === '$iothub/twin/PATCH/properties/reported/') return { kind: 'patch-reported', rid };
  return undefined;
}

/**
 * The `{property-bag}` of a telemetry topic: `k=v&k2=v2`, RFC 2396-encoded, a key alone meaning null (docs). System
 * properties keep their `$.` names (`$.ct`, `$.ce`, `$.mid`, ...).
 */
export function parsePropertyBag(bag: string): Record<string, string | null> | undefined {
  const out: Record<string, string | null> = {};
  if (bag === '') return out;
  for (const part of bag.replace(/^\?/, '').split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const k = safeDecode(eq < 0 ? part : part.slice(0, eq));
    const v = eq < 0 ? null : safeDecode(part.slice(eq + 1));
    if (k === undefined || k === '' || v === undefined) return undefined;
    out[k] = v;
  }
  return out;
}

function respond(client: Client, topic: string, body: string): void {
  client.publish({ cmd: 'publish', topic, payload: Buffer.from(body), qos: 0, retain: false, dup: false }, () => {});
}

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/** A client id for a log line: short and without control characters. */
function printable(s: string | undefined): string {
  return (s ?? '').replace(/[^\x20-\x7e]/g, '?').slice(0, 64);
}
