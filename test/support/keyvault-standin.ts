/**
 * A local HTTPS stand-in for the Azure Key Vault secrets REST API, close enough for the real `SecretClient`:
 *
 * - `GET /secrets/{name}?api-version=...`, `/secrets/{name}/` and `/secrets/{name}/{version}` answer the documented
 *   secret bundle `{ value, id, attributes, tags, contentType }`; names compare case-insensitively, as in the vault.
 * - A request without `Authorization` gets the vault's challenge: 401 with
 *   `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>", resource="https://vault.azure.net"`.
 *   The SDK takes only the tenant id out of `authorization` and asks its credential for `<resource>/.default`; a
 *   managed identity credential never contacts the authority, so nothing leaves loopback.
 * - A bearer token is accepted only when `acceptsToken` says so (pass the managed identity stand-in's `isIssuedToken`).
 * - Missing secret: 404 `SecretNotFound`. Disabled secret: 403 `Forbidden` / innererror `SecretDisabled`, as the vault.
 * - Faults per secret name or for every secret: an HTTP status (403 no role, 429 + Retry-After, 500, 503...), a delay,
 *   a hang, a connection reset.
 * - For the portal: list secrets and versions (paged), PATCH a version's properties (see the section below).
 * - Counters: authenticated reads per secret, reads in flight and their peak, challenges, rejected tokens.
 *
 * TLS: the server certificate (localhost, 127.0.0.1, ::1) is issued by a test CA. By default that is the CA the
 * process already trusts through NODE_EXTRA_CA_CERTS (written by test/support/global-setup.ts, found through
 * TEST_CA_CERT_FILE / TEST_CA_KEY_FILE); without it a fresh CA is made and the caller must arrange trust for `caPem`
 * (e.g. start a child process with NODE_EXTRA_CA_CERTS). Nothing here turns certificate checking off.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { generate } from 'selfsigned';

// ---------------------------------------------------------------------------------------------------------------
// Test CA

export interface TestCa {
  readonly certPem: string;
  readonly keyPem: string;
}

/** A throwaway CA (P-256, valid for a day): trust its `certPem`, sign server certificates with it. */
export async function createTestCa(): Promise<TestCa> {
  const now = Date.now();
  const pems = await generate([{ name: 'commonName', value: 'dps-jwt-webhook throwaway test CA' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(now - 60_000),
    notAfterDate: new Date(now + 24 * 3600_000),
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  return { certPem: pems.cert, keyPem: pems.private };
}

/** The CA this process trusts through NODE_EXTRA_CA_CERTS, as left by global-setup.ts; undefined when absent. */
export function processTrustedCa(): TestCa | undefined {
  const certFile = process.env.TEST_CA_CERT_FILE;
  const keyFile = process.env.TEST_CA_KEY_FILE;
  if (certFile === undefined || keyFile === undefined || process.env.NODE_EXTRA_CA_CERTS === undefined) return undefined;
  return { certPem: readFileSync(certFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8') };
}

/** A server certificate for localhost / 127.0.0.1 / ::1 signed by `ca`. */
export async function issueLocalhostCertificate(ca: TestCa): Promise<{ certPem: string; keyPem: string }> {
  const now = Date.now();
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(now - 60_000),
    notAfterDate: new Date(now + 24 * 3600_000),
    ca: { cert: ca.certPem, key: ca.keyPem },
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }, { type: 7, ip: '::1' }] },
    ],
  });
  return { certPem: pems.cert, keyPem: pems.private };
}

// ---------------------------------------------------------------------------------------------------------------
// Key Vault stand-in

export interface StandinSecretOptions {
  /** false: stored but disabled; GET answers 403 SecretDisabled. Default true. */
  readonly enabled?: boolean;
  readonly tags?: Readonly<Record<string, string>>;
  readonly contentType?: string;
}

/** What the vault does with a read, instead of answering it normally. */
export type KeyVaultFault =
  /** Answer with this status and the vault's error body for it (403 no role, 429 throttled, 500, 503, ...). */
  | { readonly kind: 'status'; readonly status: number; readonly retryAfterSeconds?: number }
  /** Answer normally, after a delay (a slow vault). */
  | { readonly kind: 'delay'; readonly ms: number }
  /** Never answer (until stop). */
  | { readonly kind: 'hang' }
  /** Drop the TCP connection without answering (a network error). */
  | { readonly kind: 'reset' };

export interface KeyVaultStandinOptions {
  /** Decides whether a bearer token is valid; pass the managed identity stand-in's `isIssuedToken`. */
  readonly acceptsToken: (token: string) => boolean;
  /** The CA that issues the server certificate; default `processTrustedCa()`, else a fresh CA. */
  readonly ca?: TestCa;
  /** Tenant id put in the challenge's authorization URL. */
  readonly tenantId?: string;
  /** Host name in `url` and in secret ids. Default localhost. */
  readonly host?: string;
}

export interface KeyVaultStandin {
  /** The vault URL for SecretClient, e.g. https://localhost:12345 */
  readonly url: string;
  /** PEM of the CA that issued the server certificate. */
  readonly caPem: string;
  /** Stores a new version of a secret and returns the version id. */
  setSecret(name: string, value: string, options?: StandinSecretOptions): string;
  deleteSecret(name: string): void;
  /** Sets (or, with undefined, clears) the fault for one secret name, or for every secret when `name` is omitted. */
  setFault(fault: KeyVaultFault | undefined, name?: string): void;
  /** Clears every fault. */
  clearFaults(): void;
  /** Authenticated reads (requests that got past the token check) of one secret, or of all when `name` is omitted. */
  reads(name?: string): number;
  /** Authenticated reads being answered right now, and the most there ever were at once. */
  readonly concurrentReads: number;
  readonly peakConcurrentReads: number;
  /** Requests without a token, answered with the 401 challenge. */
  readonly challenges: number;
  /** Requests whose bearer token `acceptsToken` refused. */
  readonly rejectedTokens: number;
  /** PATCH updates of secret properties answered 200 (the portal's writes). */
  readonly metadataUpdates: number;
  /** Zeroes every counter (secrets and faults stay). */
  resetCounters(): void;
  /** Closes the server, dropping hung and delayed requests. */
  stop(): Promise<void>;
}

interface StoredVersion {
  readonly version: string;
  readonly value: string;
  readonly enabled: boolean;
  readonly tags: Record<string, string>;
  readonly contentType?: string;
  readonly created: number;
}

const SECRET_PATH = /^\/secrets\/([^/]+)(?:\/([^/]*))?\/?$/;

function errorBody(status: number): { code: string; message: string; innererror?: { code: string } } {
  switch (status) {
    case 401:
      return { code: 'Unauthorized', message: 'AKV10000: Request is missing a Bearer or PoP token.' };
    case 403:
      return {
        code: 'Forbidden',
        message: 'Caller is not authorized to perform action on resource. Action: Microsoft.KeyVault/vaults/secrets/getSecret/action',
        innererror: { code: 'ForbiddenByRbac' },
      };
    case 404:
      return { code: 'NotFound', message: 'The requested resource was not found.' };
    case 429:
      return { code: 'Throttled', message: 'Request was not allowed because application has exceeded the maximum number of requests.' };
    case 500:
      return { code: 'InternalServerError', message: 'An internal error occurred.' };
    case 503:
      return { code: 'ServiceUnavailable', message: 'The service is temporarily unavailable.' };
    default:
      return { code: `Http${status}`, message: `Stand-in fault ${status}.` };
  }
}

export async function startKeyVaultStandin(options: KeyVaultStandinOptions): Promise<KeyVaultStandin> {
  const ca = options.ca ?? processTrustedCa() ?? (await createTestCa());
  const serverCert = await issueLocalhostCertificate(ca);
  const tenantId = options.tenantId ?? '72f988bf-86f1-41af-91ab-2d7cd011db47';
  const host = options.host ?? 'localhost';

  const secrets = new Map<string, StoredVersion[]>();
  const faults = new Map<string, KeyVaultFault>();
  let globalFault: KeyVaultFault | undefined;
  const readCounts = new Map<string, number>();
  let concurrent = 0;
  let peak = 0;
  let challenges = 0;
  let rejectedTokens = 0;
  const timers = new Set<NodeJS.Timeout>();
  const inFlight = new WeakMap<ServerResponse, () => void>();
  let origin = '';

  const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    inFlight.get(res)?.();
    if (res.destroyed) return;
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'x-ms-keyvault-service-version': '1.9.0.0', ...headers });
    res.end(JSON.stringify(body));
  };

  const answer = (res: ServerResponse, name: string, versionId: string | undefined): void => {
    const versions = secrets.get(name.toLowerCase());
    const stored = versionId === undefined || versionId === '' ? versions?.at(-1) : versions?.find((v) => v.version === versionId);
    if (stored === undefined) {
      const message = `A secret with (name/id) ${name}${versionId ? `/${versionId}` : ''} was not found in this key vault.`;
      return json(res, 404, { error: { code: 'SecretNotFound', message } });
    }
    if (!stored.enabled) {
      return json(res, 403, {
        error: { code: 'Forbidden', message: 'Operation get is not allowed on a disabled secret.', innererror: { code: 'SecretDisabled' } },
      });
    }
    json(res, 200, {
      value: stored.value,
      ...(stored.contentType !== undefined && { contentType: stored.contentType }),
      id: `${origin}/secrets/${name}/${stored.version}`,
      attributes: {
        enabled: true,
        created: stored.created,
        updated: stored.created,
        recoveryLevel: 'Recoverable+Purgeable',
        recoverableDays: 90,
      },
      tags: stored.tags,
    });
  };


  // -------------------------------------------------------------------------------------------------------------
  // Secret metadata routes (the portal): list secrets, list one secret's versions, update a version's properties.
  // REST shapes from learn.microsoft.com/rest/api/keyvault/secrets (get-secrets, get-secret-versions, update-secret)
  // and the SDK's generated operations (@azure/keyvault-secrets 4.12 dist/esm/api/operations.js):
  // - GET /secrets?maxresults=N and GET /secrets/{name}/versions?maxresults=N answer
  //   `{ value: SecretItem[], nextLink: string | null }`; a SecretItem is `{ id, attributes, tags, contentType }`,
  //   never the value; disabled secrets are listed (azure-cli-facts §3, K4). maxresults is 1-25 (default 25); a
  //   secret with no versions lists none (unconfirmed on the real vault whether that is 200 [] or 404: the portal
  //   takes both as "no such device").
  // - PATCH /secrets/{name}/{version} with `{ attributes?: { enabled? }, tags?, contentType? }`: fields left out stay
  //   as they were; `tags`, when given, replaces the whole set; answers the SecretBundle without `value`. An unknown
  //   version is 404 SecretNotFound; a disabled secret may be updated (that is how it is enabled again). More than
  //   15 tags or a tag name/value over 256 characters is 400 BadParameter (K9).
  const propertiesUpdatedAt = new Map<string, number>();

  const item = (name: string, stored: StoredVersion, withVersion: boolean) => ({
    id: `${origin}/secrets/${name}${withVersion ? `/${stored.version}` : ''}`,
    attributes: {
      enabled: stored.enabled,
      created: stored.created,
      updated: propertiesUpdatedAt.get(stored.version) ?? stored.created,
      recoveryLevel: 'Recoverable+Purgeable',
      recoverableDays: 90,
    },
    tags: stored.tags,
    ...(stored.contentType !== undefined && { contentType: stored.contentType }),
  });

  const page = (res: ServerResponse, url: URL, items: unknown[]): void => {
    const maxText = url.searchParams.get('maxresults');
    const max = maxText === null ? 25 : Number(maxText);
    if (!Number.isInteger(max) || max < 1 || max > 25) {
      return json(res, 400, { error: { code: 'BadParameter', message: 'maxresults must be an integer from 1 to 25.' } });
    }
    const skip = Number(url.searchParams.get('$skiptoken') ?? '0') || 0;
    const next = skip + max < items.length ? new URL(url.pathname, origin) : undefined;
    if (next !== undefined) {
      next.searchParams.set('api-version', url.searchParams.get('api-version') ?? '');
      next.searchParams.set('$skiptoken', String(skip + max));
      next.searchParams.set('maxresults', String(max));
    }
    json(res, 200, { value: items.slice(skip, skip + max), nextLink: next?.toString() ?? null });
  };

  const authorizedForMetadata = (req: IncomingMessage, res: ServerResponse): boolean => {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (req.headers.authorization === undefined) challenges += 1;
    else if (token === undefined || !options.acceptsToken(token)) rejectedTokens += 1;
    else return true;
    json(res, 401, { error: errorBody(401) }, {
      'www-authenticate': `Bearer authorization="https://login.microsoftonline.com/${tenantId}", resource="https://vault.azure.net"`,
    });
    return false;
  };

  /** Answers the metadata routes; false for anything else (left to the GET handler below). */
  const handleMetadataRoutes = (req: IncomingMessage, res: ServerResponse, url: URL): boolean => {
    const list = req.method === 'GET' && /^\/secrets\/?$/.test(url.pathname);
    const versions = req.method === 'GET' ? /^\/secrets\/([^/]+)\/versions\/?$/.exec(url.pathname) : null;
    const patch = req.method === 'PATCH' ? /^\/secrets\/([^/]+)\/([^/]+)\/?$/.exec(url.pathname) : null;
    if (!list && versions === null && patch === null) return false;
    if (!url.searchParams.has('api-version')) {
      json(res, 400, { error: { code: 'BadParameter', message: 'The api-version query parameter is required.' } });
      return true;
    }
    if (!authorizedForMetadata(req, res)) return true;
    if (list) {
      const items = [...secrets.entries()].flatMap(([, all]) => {
        const current = all.at(-1);
        return current === undefined ? [] : [item(namesByKey.get(current.version) ?? '', current, false)];
      });
      page(res, url, items);
      return true;
    }
    if (versions !== null) {
      const name = decodeURIComponent(versions[1] ?? '');
      page(res, url, (secrets.get(name.toLowerCase()) ?? []).map((v) => item(namesByKey.get(v.version) ?? name, v, true)));
      return true;
    }
    const name = decodeURIComponent(patch?.[1] ?? '');
    const version = decodeURIComponent(patch?.[2] ?? '');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: { attributes?: { enabled?: unknown }; tags?: unknown; contentType?: unknown };
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as typeof body;
      } catch {
        return json(res, 400, { error: { code: 'BadParameter', message: 'The request body is not valid JSON.' } });
      }
      const all = secrets.get(name.toLowerCase());
      const index = all?.findIndex((v) => v.version === version) ?? -1;
      const stored = index >= 0 ? all?.[index] : undefined;
      if (all === undefined || stored === undefined) {
        return json(res, 404, { error: { code: 'SecretNotFound', message: `A secret with (name/id) ${name}/${version} was not found in this key vault.` } });
      }
      const tags = body.tags === undefined ? stored.tags : (body.tags as Record<string, string>);
      const tagEntries = Object.entries(tags ?? {});
      if (tagEntries.length > 15 || tagEntries.some(([k, v]) => k.length > 256 || typeof v !== 'string' || v.length > 256)) {
        return json(res, 400, { error: { code: 'BadParameter', message: 'Tags: at most 15, names and values at most 256 characters.' } });
      }
      const enabled = typeof body.attributes?.enabled === 'boolean' ? body.attributes.enabled : stored.enabled;
      const contentType = typeof body.contentType === 'string' ? body.contentType : stored.contentType;
      const updated: StoredVersion = { ...stored, enabled, tags: { ...tags }, ...(contentType !== undefined && { contentType }) };
      all[index] = updated;
      // Whole seconds, as the vault's timestamps; +1 when within the same second so a change is always visible.
      const now = Math.floor(Date.now() / 1000);
      const previous = propertiesUpdatedAt.get(version) ?? stored.created;
      propertiesUpdatedAt.set(version, now > previous ? now : previous + 1);
      metadataUpdates += 1;
      const { id, attributes } = item(namesByKey.get(version) ?? name, updated, true);
      json(res, 200, { id, attributes, tags: updated.tags, ...(updated.contentType !== undefined && { contentType: updated.contentType }) });
    });
    return true;
  };
  /** Secret names as first set, by version id, so lists spell names as the vault keeps them. */
  const namesByKey = new Map<string, string>();
  let metadataUpdates = 0;

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', origin);
    if (handleMetadataRoutes(req, res, url)) return;
    const match = SECRET_PATH.exec(url.pathname);
    if (req.method !== 'GET' || match === null) {
      return json(res, 400, { error: { code: 'BadParameter', message: 'The stand-in serves GET /secrets/{name}[/{version}] only.' } });
    }
    if (!url.searchParams.has('api-version')) {
      return json(res, 400, { error: { code: 'BadParameter', message: 'The api-version query parameter is required.' } });
    }
    const authorization = req.headers.authorization;
    if (authorization === undefined) {
      challenges += 1;
      return json(res, 401, { error: errorBody(401) }, {
        'www-authenticate': `Bearer authorization="https://login.microsoftonline.com/${tenantId}", resource="https://vault.azure.net"`,
      });
    }
    const token = /^Bearer (.+)$/.exec(authorization)?.[1];
    if (token === undefined || !options.acceptsToken(token)) {
      rejectedTokens += 1;
      return json(res, 401, { error: { code: 'Unauthorized', message: 'AKV10032: Invalid issuer.' } }, {
        'www-authenticate': `Bearer authorization="https://login.microsoftonline.com/${tenantId}", resource="https://vault.azure.net"`,
      });
    }

    const name = decodeURIComponent(match[1] ?? '');
    const key = name.toLowerCase();
    readCounts.set(key, (readCounts.get(key) ?? 0) + 1);
    concurrent += 1;
    peak = Math.max(peak, concurrent);
    let counted = true;
    const done = (): void => {
      if (counted) concurrent -= 1;
      counted = false;
    };
    // Counted out synchronously as the answer is written (a loopback client can see it before 'finish' fires), or
    // when the connection drops unanswered.
    inFlight.set(res, done);
    res.once('close', done);

    const fault = faults.get(key) ?? globalFault;
    switch (fault?.kind) {
      case undefined:
        return answer(res, name, match[2]);
      case 'status': {
        const headers: Record<string, string> = fault.retryAfterSeconds !== undefined ? { 'retry-after': String(fault.retryAfterSeconds) } : {};
        return json(res, fault.status, { error: errorBody(fault.status) }, headers);
      }
      case 'delay': {
        const timer = setTimeout(() => {
          timers.delete(timer);
          answer(res, name, match[2]);
        }, fault.ms);
        timers.add(timer);
        return;
      }
      case 'hang':
        return;
      case 'reset':
        req.socket.destroy();
        return;
    }
  };

  const server: Server = createServer({ cert: serverCert.certPem, key: serverCert.keyPem }, handle);
  const sockets = new Set<Socket>();
  server.on('secureConnection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  origin = `https://${host}:${port}`;

  return {
    url: origin,
    caPem: ca.certPem,
    setSecret(name, value, secretOptions = {}) {
      const version = randomBytes(16).toString('hex');
      const key = name.toLowerCase();
      const versions = secrets.get(key) ?? [];
      versions.push({
        version,
        value,
        enabled: secretOptions.enabled ?? true,
        tags: { ...secretOptions.tags },
        ...(secretOptions.contentType !== undefined && { contentType: secretOptions.contentType }),
        created: Math.floor(Date.now() / 1000),
      });
      secrets.set(key, versions);
      namesByKey.set(version, name);
      return version;
    },
    deleteSecret(name) {
      secrets.delete(name.toLowerCase());
    },
    setFault(fault, name) {
      if (name === undefined) globalFault = fault;
      else if (fault === undefined) faults.delete(name.toLowerCase());
      else faults.set(name.toLowerCase(), fault);
    },
    clearFaults() {
      faults.clear();
      globalFault = undefined;
    },
    reads(name) {
      if (name !== undefined) return readCounts.get(name.toLowerCase()) ?? 0;
      let total = 0;
      for (const count of readCounts.values()) total += count;
      return total;
    },
    get concurrentReads() {
      return concurrent;
    },
    get peakConcurrentReads() {
      return peak;
    },
    get challenges() {
      return challenges;
    },
    get rejectedTokens() {
      return rejectedTokens;
    },
    get metadataUpdates() {
      return metadataUpdates;
    },
    resetCounters() {
      readCounts.clear();
      peak = concurrent;
      challenges = 0;
      rejectedTokens = 0;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
