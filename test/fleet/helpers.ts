/** Shared by the fleet tests: device keys, manifests, and the digest computed independently of the tool. */
import { createHash, createPublicKey } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exportJWK, exportPKCS8, exportSPKI, generateKeyPair, type CryptoKey } from 'jose';

export interface FleetDevice {
  readonly id: string;
  readonly privateKey: CryptoKey;
  readonly publicPem: string;
  readonly privatePem: string;
}

export async function fleetDevice(id: string, alg = 'ES256'): Promise<FleetDevice> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { id, privateKey, publicPem: await exportSPKI(publicKey), privatePem: await exportPKCS8(privateKey) };
}

export async function fleetDevices(prefix: string, count: number): Promise<FleetDevice[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => fleetDevice(`${prefix}-${i}`)));
}

export async function publicJwkOf(device: FleetDevice): Promise<Record<string, unknown>> {
  const { kty, crv, x, y } = await exportJWK(createPublicKey(device.publicPem));
  return { kty, crv, x, y };
}

/** CONTRACTS item 1, computed with node:crypto rather than the tool's own code: sha256 of the DER SPKI. */
export function expectedDigest(pem: string): string {
  const der = createPublicKey(pem).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex');
}

const csvField = (value: string): string => (/[",\n\r]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value);

const COLUMNS = ['registrationId', 'groupId', 'publicKey', 'publicKeyFile', 'tags', 'disabled'];
const csvRecord = (row: Record<string, string | undefined>): string => COLUMNS.map((c) => csvField(row[c] ?? '')).join(',');

/** The file line each row starts on (an inline PEM spans several lines): what the tool reports. */
export function csvLines(rows: Array<Record<string, string | undefined>>): number[] {
  let line = 2;
  return rows.map((row) => {
    const start = line;
    line += csvRecord(row).split('\n').length;
    return start;
  });
}

export async function writeCsv(dir: string, name: string, rows: Array<Record<string, string | undefined>>): Promise<string> {
  const lines = [COLUMNS.join(','), ...rows.map(csvRecord)];
  const file = join(dir, name);
  await writeFile(file, `${lines.join('\n')}\n`);
  return file;
}

export async function writeJsonl(dir: string, name: string, rows: unknown[]): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, `${rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n')}\n`);
  return file;
}

export interface Captured {
  code: number;
  stdout: string;
  stderr: string;
}
