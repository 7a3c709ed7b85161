/**
 * Builds the official SDK transports for a DPS host given as `host` or `host:port`, with an optional extra CA.
 *
 * - MQTT connects to `mqtts://` + host, so `localhost:8884` works as given (dps-protocol §5). The CA goes to the
 *   transport's MqttBase through its `setOptions({ ca })`; the MqttBase is loaded from the transport's own
 *   dependency tree so it is the same copy the transport would have created.
 * - HTTP hands the host to `https.request` as `host` only, and the provisioning transport has no `setOptions`. So we
 *   give it its own `azure-iot-http-base` `Http` (again from the transport's own tree) whose options carry an `https.Agent` with `defaultPort` = the port
 *   (Node's ClientRequest falls back to `agent.defaultPort` when no port is given) and the CA, and give the client
 *   the bare host name.
 */
import { createRequire } from 'node:module';
import { Agent } from 'node:https';
import provisioningHttp from 'azure-iot-provisioning-device-http';
import provisioningMqtt from 'azure-iot-provisioning-device-mqtt';
import type { SymmetricKeyProvisioningTransport } from 'azure-iot-provisioning-device';
import { usageError } from './errors.js';

export type TransportKind = 'http' | 'mqtt';
export const TRANSPORTS: readonly TransportKind[] = ['http', 'mqtt'];
export const DEFAULT_DPS_HOST = 'global.azure-devices-provisioning.net';

export interface DpsEndpoint {
  /** As the user gave it: `host` or `host:port`. */
  readonly host: string;
  /** The host name alone, IPv6 brackets removed. */
  readonly hostname: string;
  readonly port?: number;
}

export function parseDpsHost(value: string, flag = '--host'): DpsEndpoint {
  const host = value.trim();
  let url: URL;
  try {
    url = new URL(`https://${host}`);
  } catch {
    throw usageError(flag, 'must be a host name, optionally with :port (e.g. localhost:8443)');
  }
  if (host === '' || url.username !== '' || url.password !== '' || url.pathname !== '/' || url.search !== '' || url.hash !== '' || host.includes('/')) {
    throw usageError(flag, 'must be a host name, optionally with :port (e.g. localhost:8443), without scheme or path');
  }
  const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1');
  // URL drops a port equal to the scheme default (443); keep what the user wrote.
  const portText = /:(\d+)$/.exec(host)?.[1];
  if (portText === undefined) return { host, hostname };
  const port = Number(portText);
  if (port < 1 || port > 65_535) throw usageError(flag, 'port must be 1-65535');
  return { host, hostname, port };
}

export interface TransportSetup {
  readonly transport: SymmetricKeyProvisioningTransport;
  /** The host to give `ProvisioningDeviceClient.create`. */
  readonly provisioningHost: string;
}

interface BaseLike {
  setOptions(options: { ca?: string; http?: { agent: Agent } }): void;
}

/**
 * Loads `azure-iot-http-base` / `azure-iot-mqtt-base` as the transport package itself resolves it: npm may nest a
 * different copy under the transport (it does for -http today), and the transport should get the copy it was built with.
 */
function loadBase<T extends 'Http' | 'MqttBase'>(transportPackage: string, basePackage: string, exportName: T): new () => BaseLike {
  const require = createRequire(import.meta.url);
  const requireFromTransport = createRequire(require.resolve(transportPackage));
  return (requireFromTransport(basePackage) as Record<T, new () => BaseLike>)[exportName];
}

export function createTransport(kind: TransportKind, endpoint: DpsEndpoint, ca?: string): TransportSetup {
  if (kind === 'mqtt') {
    const MqttBase = loadBase('azure-iot-provisioning-device-mqtt', 'azure-iot-mqtt-base', 'MqttBase');
    const base = new MqttBase();
    if (ca !== undefined) base.setOptions({ ca });
    const transport = new provisioningMqtt.Mqtt(base as never) as unknown as SymmetricKeyProvisioningTransport;
    return { transport, provisioningHost: endpoint.host };
  }
  const HttpBase = loadBase('azure-iot-provisioning-device-http', 'azure-iot-http-base', 'Http');
  const base = new HttpBase();
  const agent = new Agent({ keepAlive: false });
  // https.Agent's constructor resets defaultPort to 443 whatever the options say, so set it afterwards.
  if (endpoint.port !== undefined) (agent as Agent & { defaultPort: number }).defaultPort = endpoint.port;
  base.setOptions({ http: { agent }, ...(ca !== undefined && { ca }) });
  const transport = new provisioningHttp.Http(base as never) as unknown as SymmetricKeyProvisioningTransport;
  return { transport, provisioningHost: endpoint.hostname };
}
