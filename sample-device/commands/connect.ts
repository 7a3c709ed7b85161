/**
 * `connect`: the device's life after DPS assigned it, with the official SDK (azure-iot-device + azure-iot-device-mqtt):
 * connect to the assigned hub with the device's key, read the twin's desired properties, report a property back,
 * and send telemetry every desired `telemetryInterval` seconds (following updates) for `count` messages or until
 * the signal aborts. Throws SampleDeviceError (hub_unreachable, hub_unauthorized, twin_timeout, ...); never puts the
 * key, the connection string or a SAS into a result, a line or an error.
 */
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import iotCommon from 'azure-iot-common';
import { SampleDeviceError, usageError } from '../errors.js';
import { loadCaFile } from '../key-file.js';
import { decodeSymmetricKey, deriveDeviceKey } from '../jwt.js';
import { parseDpsHost } from '../transport.js';

export const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
export const DEFAULT_TWIN_TIMEOUT_MS = 30_000;
/** When the twin has no usable desired telemetryInterval. */
export const DEFAULT_TELEMETRY_INTERVAL_SECONDS = 30;
const MAX_TELEMETRY_INTERVAL_SECONDS = 24 * 3600;
/** An IoT Hub device id: up to 128 of letters, digits and `- . + % _ # * ? ! ( ) , : = @ $ '` (iot-hub-devguide-identity-registry). */
const DEVICE_ID = /^[A-Za-z0-9\-.+%_#*?!(),:=@$']{1,128}$/;
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export interface ConnectOptions {
  /** The assigned hub's host name, as DPS returned it (it names the device's SAS resource and MQTT username). */
  readonly hub: string;
  readonly deviceId: string;
  /** The device's key: an individual enrollment's key, or (with groupKey) derived from the group's. */
  readonly symmetricKey?: string;
  readonly groupKey?: string;
  /**
   * `host[:port]` to connect to instead of the hub's own name: the connection string's GatewayHostName, which the
   * SDK's MQTT transport connects to (`mqtts://` + gatewayHostName). The local hub stand-in: `localhost:8884`.
   */
  readonly hubHost?: string;
  readonly caFile?: string;
  /** Telemetry messages to send; undefined = until the signal aborts. */
  readonly count?: number;
  readonly connectTimeoutMs?: number;
  readonly twinTimeoutMs?: number;
  readonly signal?: AbortSignal;
  /** One line per event (desired properties, reported, each message sent). Never a secret. */
  readonly print?: (line: string) => void;
}

export interface ConnectResult {
  readonly hub: string;
  readonly deviceId: string;
  readonly via: string;
  /** The desired properties as first read (with `$version`). */
  readonly desired: Record<string, unknown>;
  /** The property reported back. */
  readonly reported: Record<string, unknown>;
  readonly telemetrySent: number;
  /** The telemetryInterval used last, in seconds. */
  readonly telemetryIntervalSeconds: number;
  readonly desiredUpdates: number;
}

type Client = InstanceType<typeof deviceSdk.Client>;
type Twin = Awaited<ReturnType<Client['getTwin']>>;

/** Races `p` against a deadline and the signal; the loser's rejection is swallowed. */
function within<T>(p: Promise<T>, ms: number, onTimeout: () => SampleDeviceError, signal?: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => done(onTimeout()), ms);
    const onAbort = (): void => done(new SampleDeviceError('interrupted', 'interrupted'));
    signal?.addEventListener('abort', onAbort, { once: true });
    let settled = false;
    function done(err: unknown, value?: T): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (err !== undefined) reject(err);
      else resolve(value as T);
    }
    if (signal?.aborted) return onAbort();
    p.then((v) => done(undefined, v), (e: unknown) => done(e ?? new Error('failed')));
  });
}

function intervalFrom(desired: Record<string, unknown>, fallback: number): number {
  const v = desired.telemetryInterval;
  return typeof v === 'number' && Number.isFinite(v) && v >= 1 && v <= MAX_TELEMETRY_INTERVAL_SECONDS ? v : fallback;
}

/** Desired properties without the SDK's bookkeeping. */
function plainDesired(twin: Twin): Record<string, unknown> {
  const d = twin.properties.desired as Record<string, unknown>;
  return Object.fromEntries(Object.entries(d).filter(([k, v]) => k !== '$metadata' && typeof v !== 'function'));
}

export async function connect(options: ConnectOptions): Promise<ConnectResult> {
  const print = options.print ?? (() => {});
  if (!HOST_NAME.test(options.hub)) throw usageError('--hub', 'must be the assigned hub\'s host name, e.g. hub-eu.azure-devices.net');
  if (!DEVICE_ID.test(options.deviceId)) throw usageError('--device-id', 'must be an IoT Hub device id (1-128 characters)');
  if (options.count !== undefined && (!Number.isInteger(options.count) || options.count < 0)) throw usageError('--count', 'must be a whole number >= 0');
  const via = options.hubHost !== undefined ? parseDpsHost(options.hubHost, '--hub-host').host : options.hub;
  const { symmetricKey, groupKey } = options;
  if (symmetricKey !== undefined && groupKey !== undefined) throw usageError('--symmetric-key', 'and --group-key exclude each other; give one');
  let deviceKey: string;
  if (symmetricKey !== undefined) {
    decodeSymmetricKey(symmetricKey, '--symmetric-key');
    deviceKey = symmetricKey.trim();
  } else if (groupKey !== undefined) {
    deviceKey = deriveDeviceKey(groupKey, options.deviceId); // a group device's id is its registration id
  } else {
    throw usageError('--symmetric-key', 'or --group-key is required (or set DEVICE_SYMMETRIC_KEY / DEVICE_GROUP_KEY)');
  }
  const ca = options.caFile === undefined ? undefined : await loadCaFile(options.caFile);

  // HostName names the hub (SAS resource, MQTT username); GatewayHostName is where the SDK's socket goes.
  const connectionString = `HostName=${options.hub};DeviceId=${options.deviceId};SharedAccessKey=${deviceKey}${options.hubHost !== undefined ? `;GatewayHostName=${via}` : ''}`;
  const client = deviceSdk.Client.fromConnectionString(connectionString, deviceMqtt.Mqtt);
  // No retries while connecting, so a wrong key or an unreachable hub is reported at once, with its own exit code.
  client.setRetryPolicy(new iotCommon.NoRetry());
  if (ca !== undefined) await client.setOptions({ ca });
  client.on('error', () => {}); // reported through the awaited calls below, never printed raw

  const where = `${options.deviceId} on ${options.hub}${via !== options.hub ? ` via ${via}` : ''}`;
  try {
    try {
      await within(client.open(), options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, () =>
        new SampleDeviceError('hub_unreachable', `no connection to ${where} within ${Math.round((options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS) / 1000)} s`), options.signal);
    } catch (error) {
      throw explainConnectError(error, where);
    }
    client.setRetryPolicy(new iotCommon.ExponentialBackOffWithJitter());
    print(`connected: ${where} (MQTT over TLS)`);

    const twinTimeoutMs = options.twinTimeoutMs ?? DEFAULT_TWIN_TIMEOUT_MS;
    const twin = await within(client.getTwin(), twinTimeoutMs, () =>
      new SampleDeviceError('twin_timeout', `${where}: no twin within ${Math.round(twinTimeoutMs / 1000)} s`), options.signal).catch((error: unknown) => {
      throw error instanceof SampleDeviceError ? error : new SampleDeviceError('twin_timeout', `${where}: the twin could not be read (${(error as Error)?.name ?? 'error'})`);
    });
    const desired = plainDesired(twin);
    print(`desired properties: ${JSON.stringify(desired)}`);

    let interval = intervalFrom(desired, DEFAULT_TELEMETRY_INTERVAL_SECONDS);
    let desiredUpdates = 0;
    let wake: (() => void) | undefined;
    twin.on('properties.desired', (delta: Record<string, unknown>) => {
      if (delta.$version === desired.$version) return; // the SDK replays the full desired set once on subscribe
      desiredUpdates += 1;
      const next = intervalFrom(twin.properties.desired as Record<string, unknown>, interval);
      print(`desired update (version ${String(delta.$version)}): ${JSON.stringify(Object.fromEntries(Object.entries(delta).filter(([k]) => k !== '$version')))}`);
      if (next !== interval) {
        interval = next;
        print(`telemetry interval now ${interval} s`);
        wake?.();
      }
    });

    const reported = { telemetryInterval: interval, startedAtUtc: new Date().toISOString(), agent: 'dps-jwt-webhook sample-device' };
    await within(
      new Promise<void>((resolve, reject) => twin.properties.reported.update(reported, (err?: Error) => (err ? reject(err) : resolve()))),
      twinTimeoutMs,
      () => new SampleDeviceError('twin_timeout', `${where}: the reported properties were not acknowledged within ${Math.round(twinTimeoutMs / 1000)} s`),
      options.signal,
    ).catch((error: unknown) => {
      throw error instanceof SampleDeviceError ? error : new SampleDeviceError('twin_timeout', `${where}: reporting properties failed (${(error as Error)?.name ?? 'error'})`);
    });
    print(`reported: ${JSON.stringify(reported)}`);

    let sent = 0;
    const total = options.count;
    while (total === undefined || sent < total) {
      if (options.signal?.aborted) break;
      if (sent > 0) {
        // Sleep for the interval; a changed interval restarts the wait with the new value, Ctrl-C ends it.
        await new Promise<void>((resolve) => {
          let t = setTimeout(finish, interval * 1000);
          const onAbort = (): void => finish();
          options.signal?.addEventListener('abort', onAbort, { once: true });
          wake = () => {
            clearTimeout(t);
            t = setTimeout(finish, interval * 1000);
          };
          function finish(): void {
            clearTimeout(t);
            options.signal?.removeEventListener('abort', onAbort);
            wake = undefined;
            resolve();
          }
        });
        if (options.signal?.aborted) break;
      }
      const body = { deviceId: options.deviceId, seq: sent + 1, sentAtUtc: new Date().toISOString() };
      const message = new deviceSdk.Message(JSON.stringify(body));
      message.contentType = 'application/json';
      message.contentEncoding = 'utf-8';
      message.properties.add('source', 'sample-device');
      try {
        await within(client.sendEvent(message), DEFAULT_CONNECT_TIMEOUT_MS, () => new SampleDeviceError('hub_unreachable', `${where}: telemetry not acknowledged within 30 s`), options.signal);
      } catch (error) {
        if (error instanceof SampleDeviceError && error.code === 'interrupted') break;
        throw error instanceof SampleDeviceError ? error : explainConnectError(error, where);
      }
      sent += 1;
      print(`telemetry ${sent}${total !== undefined ? `/${total}` : ''} sent: ${JSON.stringify(body)}`);
    }
    return { hub: options.hub, deviceId: options.deviceId, via, desired, reported, telemetrySent: sent, telemetryIntervalSeconds: interval, desiredUpdates };
  } finally {
    await client.close().catch(() => undefined);
  }
}

/**
 * Maps the SDK's connect errors to our codes. On a first connection the Node SDK wraps every failure as
 * `UnauthorizedError('Failure on first connection (Not authorized): <cause>')` (azure-iot-device-mqtt mqtt.ts,
 * SRS_NODE_DEVICE_MQTT_41_006), a refused TCP connection included, so the cause decides: mqtt.js's CONNACK text
 * ("Connection refused: Not authorized", return code 5) means the hub refused the device. Only a short cause (an
 * errno code or "TLS certificate not trusted") is shown, never the SDK's message.
 */
function explainConnectError(error: unknown, where: string): SampleDeviceError {
  if (error instanceof SampleDeviceError) return error;
  const text = `${(error as Error | undefined)?.message ?? ''} ${(error as { transportError?: Error } | undefined)?.transportError?.message ?? ''}`;
  if (/Connection refused: (Not authorized|Bad username or password)/i.test(text)) {
    return new SampleDeviceError('hub_unauthorized', `the hub refused ${where}: not authorized (CONNACK 5)`, {
      hint: 'the key is not this device\'s, or the device does not exist on that hub (registered through DPS first?)',
    });
  }
  const errno = /\b(E[A-Z]{3,})\b/.exec(text)?.[1];
  const cause = errno ?? (/certificate|self.signed/i.test(text) ? 'TLS certificate not trusted' : (error as Error | undefined)?.name ?? 'error');
  return new SampleDeviceError('hub_unreachable', `cannot reach ${where} (${cause})`, {
    hint: 'is the hub (or the local one: npm run dps) running, and --hub-host right? An untrusted certificate needs --ca.',
  });
}
