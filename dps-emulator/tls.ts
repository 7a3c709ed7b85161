/**
 * TLS material for the local DPS. Devices (and the official SDK) only speak TLS to DPS, so the emulator needs a
 * server certificate they trust: by default a throwaway CA and a `localhost`/127.0.0.1/::1 certificate it signed,
 * made at start and gone when the process ends; or files the user gives.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate } from 'selfsigned';

export interface TlsMaterial {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
}

/**
 * A CA and a server certificate it signed, both EC P-256, valid for a week (a dev session, not a deployment).
 * `extraIps` adds loopback addresses to the certificate: a Python SDK device always connects to port 8883, so its DPS
 * and hub each need an address of their own (docs/local-dps.md, Python devices).
 */
export async function generateLocalTls(now = new Date(), extraIps: readonly string[] = []): Promise<TlsMaterial> {
  const notBeforeDate = new Date(now.getTime() - 60_000); // tolerate a little clock skew
  const notAfterDate = new Date(now.getTime() + 7 * 24 * 3600_000);
  const ca = await generate([{ name: 'commonName', value: 'dps-jwt-webhook local DPS throwaway CA' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ],
  });
  const server = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    ca: { key: ca.private, cert: ca.cert },
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
          { type: 7, ip: '::1' },
          ...extraIps.map((ip) => ({ type: 7 as const, ip })),
        ],
      },
    ],
  });
  return { cert: server.cert, key: server.private, ca: ca.cert };
}

/** Reads PEM files given on the command line; names the flag of a missing or non-PEM file. */
export async function readTlsFiles(paths: { cert: string; key: string; ca: string }): Promise<TlsMaterial> {
  const read = async (flag: string, path: string, marker: string): Promise<string> => {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      throw new TypeError(`--${flag} ${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (!text.includes(marker)) throw new TypeError(`--${flag} ${path}: not a PEM file (no "${marker}")`);
    return text;
  };
  const [cert, key, ca] = await Promise.all([
    read('cert', paths.cert, '-----BEGIN CERTIFICATE-----'),
    read('key', paths.key, 'PRIVATE KEY-----'),
    read('ca', paths.ca, '-----BEGIN CERTIFICATE-----'),
  ]);
  return { cert, key, ca };
}

/** Writes the CA to a fresh temp folder so devices can be pointed at a file (NODE_EXTRA_CA_CERTS, --ca). */
export async function writeCaFile(caPem: string): Promise<{ path: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'local-dps-'));
  const path = join(dir, 'local-dps-ca.pem');
  await writeFile(path, caPem, { mode: 0o644 });
  return { path, remove: () => rm(dir, { recursive: true, force: true }) };
}
