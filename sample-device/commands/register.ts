import provisioningDevice from 'azure-iot-provisioning-device';
import symmetricKeySecurity from 'azure-iot-security-symmetric-key';
import { SampleDeviceError, usageError } from '../errors.js';
import { explainRegistrationError } from '../dps-errors.js';
import { loadCaFile, loadPrivateKeyFile } from '../key-file.js';
import { assertLifetime, assertRegistrationId, decodeSymmetricKey, deriveDeviceKey, privateKeyThumbprint, signDeviceToken } from '../jwt.js';
import { createTransport, DEFAULT_DPS_HOST, parseDpsHost, TRANSPORTS, type TransportKind } from '../transport.js';

const { ProvisioningDeviceClient } = provisioningDevice;
const { SymmetricKeySecurityClient } = symmetricKeySecurity;

export const DEFAULT_TIMEOUT_MS = 120_000;

export interface RegisterOptions {
  readonly registrationId: string;
  readonly idScope: string;
  readonly privateKeyFile: string;
  /** The individual enrollment's primary or secondary key. Exactly one of this and `groupKey`. */
  readonly symmetricKey?: string;
  /** The enrollment group's key; the device key is derived from it and the registration id. */
  readonly groupKey?: string;
  /** `host` or `host:port`; default the global DPS endpoint. */
  readonly host?: string;
  /** Default `http` (port 443 passes most firewalls; MQTT needs 8883). */
  readonly transport?: TransportKind;
  /** A PEM file of CA certificates to trust in addition to the system ones (e.g. a local DPS's CA). */
  readonly caFile?: string;
  readonly lifetimeSeconds?: number;
  readonly kid?: string;
  /** Give up (and cancel the SDK's polling) after this long. Default 120 s. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  /**
   * Demo and tests only, not reachable from the CLI: replaces the signed token before it is sent, to show what the
   * webhook does with a tampered token or with another device's token.
   */
  readonly replaceToken?: (signed: string) => string | Promise<string>;
}

export interface RegisterResult {
  readonly registrationId: string;
  readonly deviceId: string;
  readonly assignedHub: string;
  readonly status: string;
  readonly substatus?: string;
  /** What the webhook returned as `payload`, handed on by DPS. */
  readonly payload?: unknown;
  readonly createdDateTimeUtc?: string;
  readonly lastUpdatedDateTimeUtc?: string;
  readonly transport: TransportKind;
  readonly host: string;
  readonly attestation: 'symmetric-key' | 'group-key';
  /** Thumbprint of the device key that signed the token (public information, a good kid). */
  readonly keyThumbprint: string;
  /** When the token sent expires, ISO 8601. */
  readonly tokenExpiresAt: string;
}

const ID_SCOPE = /^[A-Za-z0-9._-]{1,64}$/;

function pickKey(options: RegisterOptions): { deviceKey: string; attestation: RegisterResult['attestation'] } {
  const { symmetricKey, groupKey } = options;
  if (symmetricKey !== undefined && groupKey !== undefined) {
    throw usageError('--symmetric-key', 'and --group-key exclude each other (also via DEVICE_SYMMETRIC_KEY / DEVICE_GROUP_KEY); give one');
  }
  if (symmetricKey !== undefined) {
    decodeSymmetricKey(symmetricKey, '--symmetric-key');
    return { deviceKey: symmetricKey.trim(), attestation: 'symmetric-key' };
  }
  if (groupKey !== undefined) {
    return { deviceKey: deriveDeviceKey(groupKey, options.registrationId), attestation: 'group-key' };
  }
  throw usageError('--symmetric-key', 'or --group-key is required (or set DEVICE_SYMMETRIC_KEY / DEVICE_GROUP_KEY)');
}

interface Cancellable {
  cancel(callback: (err?: Error) => void): void;
}

/**
 * Stops the SDK's registration. `client.cancel()` only reaches the transport, which for HTTP does nothing while the
 * polling state machine keeps its timer; cancelling the machine (an SDK internal, used only if present) clears it.
 */
function cancelRegistration(client: object): void {
  const machine = (client as { _pollingStateMachine?: Partial<Cancellable> })._pollingStateMachine;
  const target: Partial<Cancellable> = typeof machine?.cancel === 'function' ? machine : (client as Partial<Cancellable>);
  try {
    target.cancel?.(() => undefined);
  } catch {
    // Best effort: we have already given up on this registration.
  }
}

/**
 * Registers the device with DPS through the official SDK, sending `{ jwt }` as the provisioning payload for the
 * custom-allocation webhook. Resolves with the registration state; throws a `SampleDeviceError` explaining any failure.
 * Never puts the symmetric key, the SAS token or the JWT into a result or an error.
 */
export async function register(options: RegisterOptions): Promise<RegisterResult> {
  assertRegistrationId(options.registrationId);
  if (!ID_SCOPE.test(options.idScope)) throw usageError('--id-scope', 'must be the DPS ID scope, e.g. 0ne00A1B2C3');
  const endpoint = parseDpsHost(options.host ?? DEFAULT_DPS_HOST);
  const transportKind = options.transport ?? 'http';
  if (!TRANSPORTS.includes(transportKind)) throw usageError('--transport', `must be one of ${TRANSPORTS.join(', ')}`);
  const lifetimeSeconds = options.lifetimeSeconds ?? 300;
  assertLifetime(lifetimeSeconds);
  if (options.kid !== undefined && options.kid.trim() === '') throw usageError('--kid', 'must not be empty');
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw usageError('--timeout', 'must be a positive number of seconds');
  const { deviceKey, attestation } = pickKey(options);

  const privateKey = await loadPrivateKeyFile(options.privateKeyFile);
  const ca = options.caFile === undefined ? undefined : await loadCaFile(options.caFile);

  const now = Math.floor(Date.now() / 1000);
  let jwt = await signDeviceToken({
    privateKey,
    registrationId: options.registrationId,
    idScope: options.idScope,
    provisioningHost: endpoint.host,
    lifetimeSeconds,
    now,
    ...(options.kid !== undefined && { kid: options.kid }),
  });
  if (options.replaceToken !== undefined) jwt = await options.replaceToken(jwt);

  const { transport, provisioningHost } = createTransport(transportKind, endpoint, ca);
  // Cast: npm nests separate copies of azure-iot-common under these packages; the SDK only duck-types the client.
  const security = new SymmetricKeySecurityClient(options.registrationId, deviceKey) as unknown as Parameters<typeof ProvisioningDeviceClient.create>[3];
  const client = ProvisioningDeviceClient.create(provisioningHost, options.idScope, transport, security);
  client.setProvisioningPayload({ jwt });

  const context = { registrationId: options.registrationId, host: endpoint.host, transport: transportKind };
  const state = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let settled = false;
    const finish = (error: unknown, value?: Record<string, unknown>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      if (error !== undefined) reject(error);
      else resolve(value ?? {});
    };
    const giveUp = (error: SampleDeviceError): void => {
      finish(error);
      cancelRegistration(client);
    };
    const timer = setTimeout(() => {
      giveUp(new SampleDeviceError('timeout', `registration of ${options.registrationId} did not finish within ${Math.round(timeoutMs / 1000)} s (${endpoint.host} over ${transportKind})`, {
        hint: 'DPS may still be retrying an unavailable webhook; raise --timeout or check the webhook.',
      }));
    }, timeoutMs);
    const onAbort = (): void => giveUp(new SampleDeviceError('interrupted', `registration of ${options.registrationId} was interrupted`));
    if (options.signal?.aborted) {
      onAbort();
      return;
    }
    options.signal?.addEventListener('abort', onAbort, { once: true });
    // The SDK's promise may reject after we gave up (cancellation); `finish` ignores it then.
    (client.register() as Promise<Record<string, unknown>>).then(
      (result) => finish(undefined, result),
      (error: unknown) => finish(explainRegistrationError(error, context)),
    );
  });

  const text = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);
  const substatus = text(state.substatus);
  const createdDateTimeUtc = text(state.createdDateTimeUtc);
  const lastUpdatedDateTimeUtc = text(state.lastUpdatedDateTimeUtc);
  return {
    registrationId: text(state.registrationId) ?? options.registrationId,
    deviceId: text(state.deviceId) ?? '',
    assignedHub: text(state.assignedHub) ?? '',
    status: text(state.status) ?? 'assigned',
    ...(substatus !== undefined && { substatus }),
    ...(state.payload !== undefined && state.payload !== null && { payload: state.payload }),
    ...(createdDateTimeUtc !== undefined && { createdDateTimeUtc }),
    ...(lastUpdatedDateTimeUtc !== undefined && { lastUpdatedDateTimeUtc }),
    transport: transportKind,
    host: endpoint.host,
    attestation,
    keyThumbprint: await privateKeyThumbprint(privateKey),
    tokenExpiresAt: new Date((now + lifetimeSeconds) * 1000).toISOString(),
  };
}
