import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWTPayload } from 'jose';

export const HUBS = ['hub-eu.azure-devices.net', 'hub-us.azure-devices.net'];
export const ID_SCOPE = '0ne00ABC123';

export interface TestDevice {
  readonly id: string;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  readonly publicPem: string;
}

export async function makeDevice(id: string, alg = 'ES256'): Promise<TestDevice> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { id, privateKey, publicKey, publicPem: await exportSPKI(publicKey) };
}

export async function publicJwk(device: TestDevice, extra: Record<string, unknown> = {}) {
  return { ...(await exportJWK(device.publicKey)), ...extra };
}

/** A token as a well-behaved device signs it (the Python sample's claims plus sub/aud/jti), at `nowSeconds`. */
export function deviceClaims(device: TestDevice, nowSeconds: number, overrides: JWTPayload = {}): JWTPayload {
  return {
    registration_id: device.id,
    sub: device.id,
    id_scope: ID_SCOPE,
    aud: ID_SCOPE,
    provisioning_host: 'global.azure-devices-provisioning.net',
    iat: nowSeconds,
    exp: nowSeconds + 300,
    jti: `${device.id}-${nowSeconds}-${Math.random().toString(36).slice(2)}`,
    ...overrides,
  };
}

export async function signToken(
  key: CryptoKey,
  claims: JWTPayload,
  header: Record<string, unknown> = {},
  alg = 'ES256',
): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT', ...header }).sign(key);
}

export async function deviceToken(device: TestDevice, nowSeconds: number, overrides: JWTPayload = {}, header: Record<string, unknown> = {}) {
  return signToken(device.privateKey, deviceClaims(device, nowSeconds, overrides), header);
}

/** The dps-protocol §1 example, for `registrationId`, carrying `token` (omit it for no payload). */
export function allocationRequest(options: {
  registrationId: string;
  token?: unknown;
  group?: string;
  linkedHubs?: unknown;
  currentHub?: string;
  payload?: unknown;
}): Record<string, unknown> {
  const enrollment = options.group !== undefined
    ? {
        enrollmentGroup: {
          enrollmentGroupId: options.group,
          attestation: { type: 'symmetricKey' },
          capabilities: { iotEdge: false },
          provisioningStatus: 'enabled',
          allocationPolicy: 'custom',
          iotHubs: HUBS,
          customAllocationDefinition: { webhookUrl: 'https://app.azurewebsites.net/api/validatejwt?****', apiVersion: '2021-10-01' },
        },
      }
    : {
        individualEnrollment: {
          registrationId: options.registrationId,
          attestation: { type: 'symmetricKey' },
          provisioningStatus: 'enabled',
          allocationPolicy: 'custom',
          iotHubs: HUBS,
        },
      };
  const payload = 'payload' in options ? options.payload : options.token === undefined ? undefined : { jwt: options.token };
  return {
    ...enrollment,
    deviceRuntimeContext: {
      registrationId: options.registrationId,
      ...(options.currentHub !== undefined && { currentIotHubHostName: options.currentHub, currentDeviceId: options.registrationId }),
      symmetricKey: {},
      ...(payload !== undefined && { payload }),
    },
    linkedHubs: options.linkedHubs ?? HUBS,
  };
}

/** A DEVICE_KEYS_DIR with each device's public key as `<id>.pem`. */
export async function keysDir(devices: readonly TestDevice[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'device-keys-'));
  // Owner-writable only, whatever the umask: the webhook refuses a key folder others can write (config.ts).
  await Promise.all(devices.map((d) => writeFile(join(dir, `${d.id}.pem`), d.publicPem, { mode: 0o644 })));
  return dir;
}
