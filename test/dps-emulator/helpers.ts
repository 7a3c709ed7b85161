/**
 * Test fixtures: a loopback webhook that answers what each test scripts, and the unmodified Azure IoT SDK
 * registering over either transport against the local DPS.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { Agent } from 'node:https';
import type { AddressInfo } from 'node:net';
import provisioningDevice from 'azure-iot-provisioning-device';
import provisioningHttp from 'azure-iot-provisioning-device-http';
import provisioningMqtt from 'azure-iot-provisioning-device-mqtt';
import httpBase from 'azure-iot-http-base';
import mqttBase from 'azure-iot-mqtt-base';
import symmetricKey from 'azure-iot-security-symmetric-key';
import type { LocalDps } from '../../dps-emulator/index.js';

export type Transport = 'http' | 'mqtt';

export interface WebhookAnswer {
  status: number;
  body?: unknown;
}

export interface WebhookCall {
  url: string;
  headers: IncomingMessage['headers'];
  body: any;
}

/** A webhook on 127.0.0.1 that answers from a script (per registration id) and records each call. */
export interface FakeWebhook {
  url: string;
  calls: WebhookCall[];
  answer(registrationId: string, ...answers: WebhookAnswer[]): void;
  close(): Promise<void>;
}

export async function startWebhook(): Promise<FakeWebhook> {
  const scripts = new Map<string, WebhookAnswer[]>();
  const calls: WebhookCall[] = [];
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    calls.push({ url: req.url ?? '', headers: req.headers, body });
    const id: string = body?.deviceRuntimeContext?.registrationId ?? '';
    const script = scripts.get(id) ?? [];
    // The last scripted answer repeats: "503 forever" is one entry.
    const next = script.length > 1 ? script.shift()! : script[0] ?? { status: 500, body: { error: 'unscripted' } };
    res.writeHead(next.status, { 'content-type': 'application/json' });
    res.end(next.body === undefined ? '' : JSON.stringify(next.body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/api/validatejwt?code=SECRET-FUNCTION-KEY`,
    calls,
    answer: (id, ...answers) => void scripts.set(id, answers),
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/**
 * Registers with the official SDK, unmodified. HTTP: the SDK passes the host to https.request without a port, so
 * the port comes from an https.Agent's defaultPort (dps-protocol §5); trust comes from setOptions({ ca }) on the
 * transport's http/mqtt base.
 */
export async function registerWithSdk(
  dps: LocalDps,
  transport: Transport,
  registrationId: string,
  key: string,
  payload?: unknown,
): Promise<any> {
  let t: unknown;
  let agent: Agent | undefined;
  if (transport === 'http') {
    agent = new Agent({ keepAlive: false });
    // https.Agent's constructor sets defaultPort = 443 over any option given, so set it afterwards (a runtime
    // property @types/node does not declare).
    Object.assign(agent, { defaultPort: dps.httpsPort });
    const base = new httpBase.Http();
    base.setOptions({ ca: dps.caPem, http: { agent } });
    t = new provisioningHttp.Http(base);
  } else {
    const base = new mqttBase.MqttBase();
    base.setOptions({ ca: dps.caPem });
    t = new provisioningMqtt.Mqtt(base);
  }
  const host = transport === 'http' ? 'localhost' : dps.mqttHost;
  const security = new symmetricKey.SymmetricKeySecurityClient(registrationId, key);
  const client = provisioningDevice.ProvisioningDeviceClient.create(host, dps.idScope, t as any, security);
  if (payload !== undefined) (client as any).setProvisioningPayload(payload);
  try {
    return await client.register();
  } finally {
    agent?.destroy();
  }
}

export const TRANSPORTS: Transport[] = ['http', 'mqtt'];
