/**
 * The DPS device API over MQTT 3.1.1 on TLS (dps-protocol §4), on the `aedes` broker. The broker does the MQTT;
 * we only check CONNECT, allow the two request topics, and answer each request to the requesting client alone on
 * `$dps/registrations/res/{status}/?$rid={rid}`. Nothing is routed between devices.
 *
 * CONNECT checks the shape (clientId = registration id named in the username, a password present); the SAS itself
 * is verified on each request and a bad one answered on res/401, as the real DPS does (devices connect with a bad
 * key and get 401 on their register publish).
 */
import type { Duplex } from 'node:stream';
import { createServer, type Server } from 'node:tls';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import { errorBody } from '../protocol/errors.js';
import { INVALID_JSON, type DpsAnswer, type RegistrationService } from '../protocol/service.js';
import type { TlsMaterial } from '../tls.js';

const REGISTER_TOPIC = '$dps/registrations/PUT/iotdps-register/';
const STATUS_TOPIC = '$dps/registrations/GET/iotdps-get-operationstatus/';
const RESPONSE_PREFIX = '$dps/registrations/res/';
/** `{idScope}/registrations/{registrationId}/api-version={v}` and, from the Node SDK, `&ClientVersion=...`. */
const USERNAME = /^([^/]+)\/registrations\/([^/]+)\/api-version=([^&]+)(?:&.*)?$/;
/** As the HTTPS API: a register body is an id and a small payload (a record keeps it, so it must stay bounded). */
const MAX_BODY_BYTES = 64 * 1024;
/** Request ids are echoed into a topic: keep them to characters that cannot change its meaning. */
const RID = /^[A-Za-z0-9._~-]{1,128}$/;

// aedes' AuthErrorCode is a const enum in its .d.ts; isolatedModules cannot read it, so the values are spelled out.
const BAD_USERNAME_OR_PASSWORD = 4;

interface Session {
  readonly idScope: string;
  readonly registrationId: string;
  readonly sas: string;
}

export interface MqttDeviceServer {
  readonly server: Server;
  /** Serves one MQTT connection on any byte stream: how MQTT over WebSockets reaches the same broker (websocket.ts). */
  handle(stream: Duplex): void;
  close(): Promise<void>;
}

export async function createMqttDeviceServer(service: RegistrationService, tls: TlsMaterial): Promise<MqttDeviceServer> {
  const sessions = new WeakMap<Client, Session>();

  const broker = await Aedes.createBroker({
    authenticate(client, username, password, done) {
      const m = username ? USERNAME.exec(username) : null;
      const refuse = (message: string): void => {
        const err = new Error(message) as AuthenticateError;
        err.returnCode = BAD_USERNAME_OR_PASSWORD as AuthenticateError['returnCode'];
        done(err, false);
      };
      if (!m) return refuse('username must be {idScope}/registrations/{registrationId}/api-version=...');
      const registrationId = safeDecode(m[2]!);
      if (registrationId === undefined || client.id !== registrationId) {
        return refuse('clientId must be the registration id named in the username');
      }
      if (!password || password.length === 0) return refuse('password must be the SharedAccessSignature');
      sessions.set(client, { idScope: safeDecode(m[1]!) ?? m[1]!, registrationId, sas: password.toString('utf8') });
      done(null, true);
    },
    authorizeSubscribe(_client, sub, done) {
      // Only the response topics; anything else is refused (SUBACK 0x80), not an error that drops the device.
      done(null, sub.topic.startsWith(RESPONSE_PREFIX) ? sub : null);
    },
    authorizePublish(client, packet, done) {
      const session = client ? sessions.get(client) : undefined;
      const request = session ? parseRequestTopic(packet.topic) : undefined;
      if (!client || !session || !request) return done(new Error('devices may publish only DPS requests'));
      done(null);
      const deviceRequest = { transport: 'mqtt' as const, ...session };
      if (packet.payload.length > MAX_BODY_BYTES) {
        return respond(client, request.rid, { status: 413, body: errorBody('tooLarge', `The request body is over ${MAX_BODY_BYTES} bytes.`) });
      }
      const answer =
        request.kind === 'register'
          ? service.register(deviceRequest, parseJson(packet.payload))
          : service.operationStatus(deviceRequest, request.operationId);
      respond(client, request.rid, answer);
    },
    // Requests stop at the broker: no client ever receives another's publish.
    authorizeForward(_client, packet) {
      return packet.topic.startsWith(RESPONSE_PREFIX) ? packet : null;
    },
  });

  const server = createServer({ cert: tls.cert, key: tls.key }, (socket) => {
    broker.handle(socket);
  });
  // A device dropping mid-handshake is not our problem; do not let it crash the emulator.
  server.on('tlsClientError', () => {});

  return {
    server,
    handle: (stream) => void broker.handle(stream),
    close: () =>
      new Promise<void>((resolve) => {
        broker.close(() => server.close(() => resolve()));
      }),
  };
}

type RequestTopic = { kind: 'register'; rid: string } | { kind: 'status'; rid: string; operationId: string };

function parseRequestTopic(topic: string): RequestTopic | undefined {
  const q = topic.indexOf('?');
  if (q < 0) return undefined;
  const base = topic.slice(0, q);
  const params = new URLSearchParams(topic.slice(q + 1));
  const rid = params.get('$rid');
  if (!rid || !RID.test(rid)) return undefined;
  if (base === REGISTER_TOPIC) return { kind: 'register', rid };
  if (base === STATUS_TOPIC) {
    const operationId = params.get('operationId');
    return operationId ? { kind: 'status', rid, operationId } : undefined;
  }
  return undefined;
}

function parseJson(payload: Buffer | string): unknown {
  const text = typeof payload === 'string' ? payload : payload.toString('utf8');
  if (text.trim().length === 0) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return INVALID_JSON;
  }
}

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

function respond(client: Client, rid: string, answer: DpsAnswer): void {
  const retry = answer.retryAfterSeconds !== undefined ? `&retry-after=${answer.retryAfterSeconds}` : '';
  client.publish(
    {
      cmd: 'publish',
      topic: `${RESPONSE_PREFIX}${answer.status}/?$rid=${rid}${retry}`,
      payload: Buffer.from(JSON.stringify(answer.body)),
      qos: 0,
      retain: false,
      dup: false,
    },
    () => {},
  );
}
