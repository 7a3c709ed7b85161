/**
 * A local stand-in for the Azure IoT Hub Device Provisioning Service: the device API over HTTPS and MQTT, SAS
 * verification for symmetric-key enrollments, and custom allocation through a webhook on loopback.
 */
import { readFile } from 'node:fs/promises';
import { isIP, type AddressInfo } from 'node:net';
import { DPS_RETRY_SCHEDULE, type RetrySchedule } from './protocol/allocation.js';
import { EnrollmentsError, validateEnrollments, type EnrollmentsFile } from './protocol/enrollments.js';
import { RegistrationService, type RegistrationRecord } from './protocol/service.js';
import { HubRegistry, type HubDeviceView, type TelemetryMessage } from './hub/registry.js';
import { createHubMqttServer, type HubMqttServer } from './servers/hub-mqtt.js';
import { createHttpsDeviceServer } from './servers/https.js';
import { createMqttDeviceServer } from './servers/mqtt.js';
import { createMqttWebSocketServer, WEBSOCKET_PATH, type MqttWebSocketServer } from './servers/websocket.js';
import { generateLocalTls, writeCaFile, type TlsMaterial } from './tls.js';
import { postWebhook } from './webhook.js';

export type { EnrollmentsFile, IndividualEnrollment, EnrollmentGroup, TwinState } from './protocol/enrollments.js';
export { EnrollmentsError, validateEnrollments } from './protocol/enrollments.js';
export type { RegistrationRecord, RegistrationStatus } from './protocol/service.js';
export type { AllocationRequest } from './protocol/allocation.js';
export type { HubDeviceView, TelemetryMessage, TwinView } from './hub/registry.js';
export { createSas, deriveDeviceKey } from './protocol/sas.js';
export { generateLocalTls } from './tls.js';

export interface LocalDpsOptions {
  enrollments: EnrollmentsFile;
  /** Default '0ne00000000' (the shape of a real id scope). */
  idScope?: string;
  /** 0 = a free port. Defaults: 0 for both (the CLI defaults to 8443 / 8883). */
  httpsPort?: number;
  mqttPort?: number;
  /** The local IoT Hub's MQTT-over-TLS port (every linked hub answers here). Default 0 (the CLI defaults to 8884). */
  hubPort?: number;
  /**
   * MQTT over WebSockets (`wss://…/$iothub/websocket`) for the DPS, on `host`, and for the hub, on `hubListenHost`:
   * the same brokers as the MQTT ports, behind a WebSocket handshake. Off unless given; 0 = a free port. The SDKs'
   * WebSocket transports always connect to 443 (docs/local-dps.md, MQTT over WebSockets).
   */
  wsPort?: number;
  hubWsPort?: number;
  /** Most distinct registration ids (and hub devices) kept; a new one beyond is answered 429. Default 10,000. */
  maxRegistrations?: number;
  /** Interface to listen on. Default 127.0.0.1; the emulator is for this machine only. */
  host?: string;
  /**
   * Interface of the local IoT Hub alone. Default: `host`. Another loopback address lets the hub use 8883 too, next
   * to the DPS's MQTT port, which the Python SDK needs (it always connects to 8883; docs/local-dps.md).
   */
  hubListenHost?: string;
  /** PEM contents. Else a throwaway CA and a localhost certificate are generated. */
  tls?: { cert: string; key: string; ca: string; caFile?: string };
  /** DPS's schedule by default: 10 attempts, 1000 ms before the second, +9000 ms each further one. */
  webhookRetry?: { attempts: number; firstDelayMs: number; incrementMs: number };
  /** Per webhook call. Default 30000 (DPS does not document its own). */
  webhookTimeoutMs?: number;
  /** Retry-After given to polling devices: whole seconds, 1-3600. Default 3 (as DPS). */
  retryAfterSeconds?: number;
  /** One line per registration outcome. Never carries a SAS, key, JWT or function key. */
  log?: (line: string) => void;
}

/** The local IoT Hub: the devices DPS assigned, their twins and the telemetry they sent. */
export interface LocalHub {
  /** "localhost:PORT": what a device gives as GatewayHostName (or the sample device's --hub-host). */
  readonly host: string;
  readonly port: number;
  /** MQTT over WebSockets, when `hubWsPort` was given. */
  readonly websocket?: WebSocketEndpoint;
  /** Lower-cased names of every linked hub it answers for. */
  readonly hubNames: readonly string[];
  devices(): HubDeviceView[];
  device(hub: string, deviceId: string): HubDeviceView | undefined;
  /** Recent telemetry (the last 1000 messages), optionally of one device. */
  telemetry(filter?: { hub?: string; deviceId?: string }): TelemetryMessage[];
  /** A back-end twin update of desired properties; pushed to the device when it is connected and subscribed. */
  updateDesired(hub: string, deviceId: string, patch: Record<string, unknown>): number;
  /**
   * The device's connection string for this stand-in: HostName is the assigned hub (it names the device's SAS
   * resource and MQTT username), GatewayHostName is where the SDK connects (mqtt.ts: `mqtts://` + gatewayHostName).
   */
  connectionString(hub: string, deviceId: string, deviceKey: string): string;
}

/** Where MQTT over WebSockets is served. */
export interface WebSocketEndpoint {
  /** `wss://{address}:{port}/$iothub/websocket` */
  readonly url: string;
  /** The listening address as a URL host (IPv6 in brackets): the SDK's host when `port` is 443. */
  readonly address: string;
  readonly port: number;
}

export interface LocalDps {
  idScope: string;
  /** "localhost:PORT": the provisioning host to give an SDK. */
  httpsHost: string;
  mqttHost: string;
  httpsPort: number;
  mqttPort: number;
  /** MQTT over WebSockets, when `wsPort` was given. */
  websocket?: WebSocketEndpoint;
  caPem: string;
  /** A file holding caPem (for NODE_EXTRA_CA_CERTS or --ca); removed on close when the emulator wrote it. */
  caFile: string;
  registrations(): readonly RegistrationRecord[];
  readonly hub: LocalHub;
  close(): Promise<void>;
}

export const DEFAULT_ID_SCOPE = '0ne00000000';

export async function startLocalDps(options: LocalDpsOptions): Promise<LocalDps> {
  const enrollments = validateEnrollments(options.enrollments);
  const idScope = options.idScope ?? DEFAULT_ID_SCOPE;
  if (!/^[A-Za-z0-9]{1,64}$/.test(idScope)) throw new TypeError(`idScope must be alphanumeric, like "0ne00000000"`);
  const host = options.host ?? '127.0.0.1';
  const retry = checkRetry(options.webhookRetry ?? DPS_RETRY_SCHEDULE);
  const webhookTimeoutMs = positive('webhookTimeoutMs', options.webhookTimeoutMs ?? 30_000);
  const retryAfterSeconds = options.retryAfterSeconds ?? 3;
  const log = options.log ?? (() => {});

  // A generated certificate also names the addresses given to listen on (e.g. --hub-listen 127.0.0.2), so a device
  // connecting to that address, as the WebSocket transports must (port 443, no port of their own), trusts it.
  const listenIps = [host, options.hubListenHost ?? host].filter((a) => isIP(a) !== 0 && !['127.0.0.1', '::1', '0.0.0.0', '::'].includes(a));
  const tls: TlsMaterial = options.tls ?? (await generateLocalTls(new Date(), [...new Set(listenIps)]));
  const ca = options.tls?.caFile ? { path: options.tls.caFile, remove: async () => {} } : await writeCaFile(tls.ca);

  let hubServer: HubMqttServer | undefined;
  const linkedHubs = [...(enrollments.individualEnrollments ?? []), ...(enrollments.enrollmentGroups ?? [])].flatMap((e) => e.iotHubs);
  const registry = new HubRegistry(linkedHubs, {
    onDesiredUpdate: (u) => void hubServer?.pushDesired(u),
    onDeviceRemoved: (hub, deviceId) => hubServer?.disconnect(hub, deviceId),
    log,
  });
  const service = new RegistrationService({
    idScope, enrollments, retry, webhookTimeoutMs, retryAfterSeconds, postWebhook, log,
    onAssigned: (a) => registry.provision(a),
    ...(options.maxRegistrations !== undefined && { maxRegistrations: options.maxRegistrations }),
  });
  const https = createHttpsDeviceServer(service, tls);
  const mqtt = await createMqttDeviceServer(service, tls);
  hubServer = await createHubMqttServer(registry, tls, log);
  const hubMqtt = hubServer;
  const hubListen = options.hubListenHost ?? host;
  // The WebSocket servers only hand streams to the brokers above: one protocol implementation for both ports.
  const dpsWs = options.wsPort === undefined ? undefined : createMqttWebSocketServer(tls, mqtt.handle, (l) => log(`dps ${l}`));
  const hubWs = options.hubWsPort === undefined ? undefined : createMqttWebSocketServer(tls, hubMqtt.handle, (l) => log(`hub ${l}`));
  try {
    await listen(https, options.httpsPort ?? 0, host);
    await listen(mqtt.server, options.mqttPort ?? 0, host);
    await listen(hubMqtt.server, options.hubPort ?? 0, hubListen);
    if (dpsWs) await listen(dpsWs.server, options.wsPort!, host);
    if (hubWs) await listen(hubWs.server, options.hubWsPort!, hubListen);
  } catch (err) {
    https.close();
    await mqtt.close();
    await hubMqtt.close();
    await dpsWs?.close();
    await hubWs?.close();
    await ca.remove();
    throw err;
  }
  const httpsPort = (https.address() as AddressInfo).port;
  const mqttPort = (mqtt.server.address() as AddressInfo).port;
  const hubPort = (hubMqtt.server.address() as AddressInfo).port;
  // The name devices use for it: one the generated certificate covers (localhost, 127.0.0.1, ::1).
  const hubHost = hubListen === '::1' ? `[::1]:${hubPort}` : `${hubListen === '127.0.0.1' ? 'localhost' : hubListen}:${hubPort}`;
  const hub: LocalHub = {
    host: hubHost,
    port: hubPort,
    ...(hubWs && { websocket: endpoint(hubWs.server, hubListen) }),
    hubNames: registry.hubNames(),
    devices: () => registry.devicesList(),
    device: (h, id) => registry.device(h, id),
    telemetry: (filter) => registry.telemetry(filter),
    updateDesired: (h, id, patch) => registry.updateDesired(h, id, patch),
    connectionString: (h, id, key) => `HostName=${h};DeviceId=${id};SharedAccessKey=${key};GatewayHostName=${hubHost}`,
  };

  let closing: Promise<void> | undefined;
  return {
    idScope,
    httpsHost: `localhost:${httpsPort}`,
    mqttHost: `localhost:${mqttPort}`,
    httpsPort,
    mqttPort,
    ...(dpsWs && { websocket: endpoint(dpsWs.server, host) }),
    caPem: tls.ca,
    caFile: ca.path,
    registrations: () => service.registrations(),
    hub,
    close: () =>
      (closing ??= (async () => {
        await service.close();
        await Promise.all([
          new Promise<void>((resolve) => {
            https.close(() => resolve());
            https.closeAllConnections();
          }),
          mqtt.close(),
          hubMqtt.close(),
          dpsWs?.close(),
          hubWs?.close(),
        ]);
        await ca.remove();
      })()),
  };
}

/** Reads and validates an enrollments file; errors name the file and every bad field path. */
export async function loadEnrollments(path: string): Promise<EnrollmentsFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new EnrollmentsError([`cannot read the file (${(err as NodeJS.ErrnoException).code ?? 'error'})`], path);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new EnrollmentsError([`is not valid JSON (${(err as Error).message})`], path);
  }
  return validateEnrollments(doc, path);
}

function endpoint(server: MqttWebSocketServer['server'], listenHost: string): WebSocketEndpoint {
  const port = (server.address() as AddressInfo).port;
  const address = listenHost.includes(':') ? `[${listenHost}]` : listenHost;
  return { url: `wss://${address}:${port}${WEBSOCKET_PATH}`, address, port };
}

function listen(server: import('node:net').Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function positive(name: string, v: number): number {
  if (!Number.isFinite(v) || v <= 0) throw new TypeError(`${name} must be a positive number, got ${v}`);
  return v;
}

function checkRetry(r: RetrySchedule): RetrySchedule {
  if (!Number.isInteger(r.attempts) || r.attempts < 1) throw new TypeError(`webhookRetry.attempts must be an integer >= 1, got ${r.attempts}`);
  if (!Number.isFinite(r.firstDelayMs) || r.firstDelayMs < 0) throw new TypeError(`webhookRetry.firstDelayMs must be >= 0`);
  if (!Number.isFinite(r.incrementMs) || r.incrementMs < 0) throw new TypeError(`webhookRetry.incrementMs must be >= 0`);
  return r;
}
