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

/** A server certificate for localhost, 127.0.0.1 and ::1, and for `dnsNames` (a stand-in reached by a service's own name through a tunnel). */
export async function issueLocalhostCertificate(ca: TestCa, dnsNames: readonly string[] = []): Promise<{ certPem: string; keyPem: string }> {
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
      { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, ...dnsNames.map((value) => ({ type: 2 as const, value })), { type: 7, ip: '127.0.0.1' }, { type: 7, ip: '::1' }] },
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
  /** Secret writes allowed per window; default the documented 300 per 10 s. See "Listing and writing" below. */
  readonly writeLimit?: KeyVaultWriteLimit;
}

export interface KeyVaultStandin extends KeyVaultStandinWrites {
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
  /** When the version's properties were last updated (PATCH); absent = never, `created` stands. */
  readonly updated?: number;
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
        updated: stored.updated ?? stored.created,
        recoveryLevel: 'Recoverable+Purgeable',
        recoverableDays: 90,
      },
      tags: stored.tags,
    });
  };


  // -------------------------------------------------------------------------------------------------------------
  // Secret metadata route (the portal): update a version's properties. Listing is the write routes' (below).
  // REST shape from learn.microsoft.com/rest/api/keyvault/secrets/update-secret and the SDK's generated operations
  // (@azure/keyvault-secrets 4.12 dist/esm/api/operations.js):
  // - PATCH /secrets/{name}/{version} with `{ attributes?: { enabled? }, tags?, contentType? }`: fields left out stay
  //   as they were; `tags`, when given, replaces the whole set; answers the SecretBundle without `value`. An unknown
  //   version is 404 SecretNotFound; a disabled secret may be updated (that is how it is enabled again). More than
  //   15 tags or a tag name/value over 256 characters is 400 BadParameter (K9).
  const item = (name: string, stored: StoredVersion) => ({
    id: `${origin}/secrets/${name}/${stored.version}`,
    attributes: {
      enabled: stored.enabled,
      created: stored.created,
      updated: stored.updated ?? stored.created,
      recoveryLevel: 'Recoverable+Purgeable',
      recoverableDays: 90,
    },
  });

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
    const patch = req.method === 'PATCH' ? /^\/secrets\/([^/]+)\/([^/]+)\/?$/.exec(url.pathname) : null;
    if (patch === null) return false;
    if (!url.searchParams.has('api-version')) {
      json(res, 400, { error: { code: 'BadParameter', message: 'The api-version query parameter is required.' } });
      return true;
    }
    if (!authorizedForMetadata(req, res)) return true;
    const name = decodeURIComponent(patch[1] ?? '');
    const version = decodeURIComponent(patch[2] ?? '');
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
      // Whole seconds, as the vault's timestamps; +1 when within the same second so a change is always visible.
      const now = Math.floor(Date.now() / 1000);
      const previous = stored.updated ?? stored.created;
      const updated: StoredVersion = {
        ...stored, enabled, tags: { ...tags }, ...(contentType !== undefined && { contentType }), updated: now > previous ? now : previous + 1,
      };
      all[index] = updated;
      metadataUpdates += 1;
      const { id, attributes } = item(namesByKey.get(version) ?? name, updated);
      json(res, 200, { id, attributes, tags: updated.tags, ...(updated.contentType !== undefined && { contentType: updated.contentType }) });
    });
    return true;
  };
  /** Secret names as first set, by version id, so lists spell names as the vault keeps them. */
  const namesByKey = new Map<string, string>();
  let metadataUpdates = 0;

  const writeRoutes = createWriteRoutes({
    secrets,
    json,
    origin: () => origin,
    tenantId,
    acceptsToken: options.acceptsToken,
    limit: options.writeLimit ?? DOCUMENTED_WRITE_LIMIT,
    onChallenge: () => (challenges += 1),
    onRejectedToken: () => (rejectedTokens += 1),
  });

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', origin);
    if (writeRoutes.serves(req, url)) return writeRoutes.serve(req, res, url);
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
    ...writeRoutes.api,
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

// ---------------------------------------------------------------------------------------------------------------
// Listing and writing secrets (the fleet import, issue 16). Routes of their own, so the read path above is unchanged:
//
// - `GET /secrets?maxresults=N` lists secret properties a page at a time, `nextLink` to the next page; no values,
//   disabled secrets included [learn.microsoft.com/rest/api/keyvault/secrets/get-secrets; azure-cli-facts.md §3 K4].
// - `PUT /secrets/{name}` stores a new version every time, even with an identical value
//   [learn.microsoft.com/rest/api/keyvault/secrets/set-secret: "If the named secret already exists, Azure Key Vault
//   creates a new version of that secret"].
// - `GET /secrets/{name}/versions?maxresults=N` lists a secret's versions, paged the same way
//   [learn.microsoft.com/rest/api/keyvault/secrets/get-secret-versions].
// - Secret writes over the per-vault limit (default 300 per 10 s; a setting, so tests and the benchmark can scale the
//   window down) are answered 429 and not stored; a refused request does not count toward the limit; no Retry-After
//   is promised [learn.microsoft.com/azure/key-vault/general/service-limits; overview-throttling; facts §3 K7].
// - `failWrites` injects 5xx answers to writes, optionally after storing the version (an answer lost on the way back).

/** Secret writes allowed in any window of `windowMs` (a sliding window: the strictest reading of "per 10 seconds"). */
export interface KeyVaultWriteLimit {
  readonly writes: number;
  readonly windowMs: number;
}

/** Key Vault's documented limit: secret CREATE (with key/certificate import) 300 per 10 s per vault [K7]. */
export const DOCUMENTED_WRITE_LIMIT: KeyVaultWriteLimit = { writes: 300, windowMs: 10_000 };

/** Answer the next `count` writes (after `afterWrites` more have been accepted) with `status`. */
export interface KeyVaultWriteFault {
  readonly status: number;
  readonly count: number;
  readonly afterWrites?: number;
  /** true: the version is stored before the error is answered (the client cannot tell whether it was written). */
  readonly stored?: boolean;
}

export interface KeyVaultWriteCounts {
  /** Writes stored (each a new version). */
  readonly writes: number;
  /** Writes refused with 429 by the write limit. */
  readonly throttled: number;
  /** Writes answered with an injected fault. */
  readonly faulted: number;
  /** Writes refused with 400 (bad name, value, tags...). */
  readonly refused: number;
  /** Pages of `GET /secrets` answered. */
  readonly listCalls: number;
  /** Pages of `GET /secrets/{name}/versions` answered. */
  readonly versionListCalls: number;
  /** The most writes stored within any one window. */
  readonly peakWindowWrites: number;
}

export interface StandinVersionProperties {
  readonly version: string;
  readonly enabled: boolean;
  readonly tags: Readonly<Record<string, string>>;
  readonly contentType?: string;
  readonly value: string;
}

export interface KeyVaultStandinWrites {
  /** Replaces the write limit; undefined lifts it. */
  setWriteLimit(limit: KeyVaultWriteLimit | undefined): void;
  failWrites(fault: KeyVaultWriteFault): void;
  writeCounts(): KeyVaultWriteCounts;
  resetWriteCounts(): void;
  /** Every version of a secret, oldest first (empty when none). */
  versions(name: string): StandinVersionProperties[];
  /** Names of the stored secrets, lower-cased. */
  secretNames(): string[];
}

interface WriteRoutesContext {
  readonly secrets: Map<string, StoredVersion[]>;
  readonly json: (res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>) => void;
  readonly origin: () => string;
  readonly tenantId: string;
  readonly acceptsToken: (token: string) => boolean;
  readonly limit: KeyVaultWriteLimit;
  readonly onChallenge: () => void;
  readonly onRejectedToken: () => void;
}

const SECRETS_LIST_PATH = /^\/secrets\/?$/;
const VERSIONS_PATH = /^\/secrets\/([^/]+)\/versions\/?$/;
const SET_PATH = /^\/secrets\/([^/]+)\/?$/;
// Secret names: 1-127 of 0-9a-zA-Z- [set-secret: pattern ^[0-9a-zA-Z-]+$; about-secrets K9].
const VAULT_SECRET_NAME = /^[0-9a-zA-Z-]{1,127}$/;
// A page holds at most 25 items; the service refuses a larger maxresults with 400 BadParameter [get-secrets: "up to
// 25 results"; the 1-25 range is what the service enforces, as reported for every api-version].
const MAX_PAGE = 25;
// Secret value at most 25 KB, contentType at most 255 characters, at most 15 tags of name and value up to 256
// characters each [about-secrets K9, about-keys-secrets-certificates K10].
const MAX_VALUE_BYTES = 25 * 1024;
const MAX_CONTENT_TYPE = 255;
const MAX_TAGS = 15;
const MAX_TAG_CHARS = 256;
const MAX_BODY_BYTES = 256 * 1024;

function badParameter(message: string): { error: { code: string; message: string } } {
  return { error: { code: 'BadParameter', message } };
}

function createWriteRoutes(ctx: WriteRoutesContext): {
  serves(req: IncomingMessage, url: URL): boolean;
  serve(req: IncomingMessage, res: ServerResponse, url: URL): void;
  api: KeyVaultStandinWrites;
} {
  let limit: KeyVaultWriteLimit | undefined = ctx.limit;
  const accepted: number[] = []; // times of stored writes within the current window, oldest first
  let pendingFault: (KeyVaultWriteFault & { left: number; skip: number }) | undefined;
  const displayNames = new Map<string, string>();
  const counts = { writes: 0, throttled: 0, faulted: 0, refused: 0, listCalls: 0, versionListCalls: 0, peakWindowWrites: 0 };

  const challenge = { 'www-authenticate': `Bearer authorization="https://login.microsoftonline.com/${ctx.tenantId}", resource="https://vault.azure.net"` };

  /** The vault's order: api-version, then the bearer token (an unauthenticated request gets the challenge). */
  const authorized = (req: IncomingMessage, res: ServerResponse, url: URL): boolean => {
    if (!url.searchParams.has('api-version')) {
      ctx.json(res, 400, badParameter('The api-version query parameter is required.'));
      return false;
    }
    const authorization = req.headers.authorization;
    if (authorization === undefined) {
      ctx.onChallenge();
      ctx.json(res, 401, { error: errorBody(401) }, challenge);
      return false;
    }
    const token = /^Bearer (.+)$/.exec(authorization)?.[1];
    if (token === undefined || !ctx.acceptsToken(token)) {
      ctx.onRejectedToken();
      ctx.json(res, 401, { error: { code: 'Unauthorized', message: 'AKV10032: Invalid issuer.' } }, challenge);
      return false;
    }
    return true;
  };

  const pageSize = (url: URL): number | undefined => {
    const raw = url.searchParams.get('maxresults');
    if (raw === null) return MAX_PAGE;
    const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
    return n >= 1 && n <= MAX_PAGE ? n : undefined;
  };

  const nextLink = (path: string, url: URL, skipToken: string): string => {
    const next = new URL(path, ctx.origin());
    next.searchParams.set('api-version', url.searchParams.get('api-version') ?? '');
    next.searchParams.set('$skiptoken', skipToken);
    const max = url.searchParams.get('maxresults');
    if (max !== null) next.searchParams.set('maxresults', max);
    return next.href;
  };

  const attributes = (v: StoredVersion) => ({
    enabled: v.enabled,
    created: v.created,
    updated: v.updated ?? v.created,
    recoveryLevel: 'Recoverable+Purgeable',
    recoverableDays: 90,
  });

  const item = (id: string, v: StoredVersion) => ({
    id,
    attributes: attributes(v),
    ...(Object.keys(v.tags).length > 0 && { tags: v.tags }),
    ...(v.contentType !== undefined && { contentType: v.contentType }),
  });

  const listSecrets = (res: ServerResponse, url: URL): void => {
    const size = pageSize(url);
    if (size === undefined) return ctx.json(res, 400, badParameter('invalid maxresults'));
    counts.listCalls += 1;
    // The skip token is the last name of the previous page: paging stays correct while secrets are added.
    const after = url.searchParams.get('$skiptoken');
    const marker = after === null ? '' : Buffer.from(after, 'base64url').toString('utf8');
    const names = [...ctx.secrets.keys()].filter((k) => k > marker && (ctx.secrets.get(k)?.length ?? 0) > 0).sort();
    const page = names.slice(0, size);
    const value = page.map((key) => {
      const latest = ctx.secrets.get(key)!.at(-1)!;
      return item(`${ctx.origin()}/secrets/${displayNames.get(key) ?? key}`, latest);
    });
    const more = names.length > size;
    ctx.json(res, 200, { value, nextLink: more ? nextLink('/secrets', url, Buffer.from(page.at(-1)!, 'utf8').toString('base64url')) : null });
  };

  const listVersions = (res: ServerResponse, url: URL, name: string): void => {
    const size = pageSize(url);
    if (size === undefined) return ctx.json(res, 400, badParameter('invalid maxresults'));
    counts.versionListCalls += 1;
    const key = name.toLowerCase();
    const versions = ctx.secrets.get(key) ?? [];
    const offset = Number(url.searchParams.get('$skiptoken') ?? '0') || 0;
    const page = versions.slice(offset, offset + size);
    const shown = displayNames.get(key) ?? name;
    const value = page.map((v) => item(`${ctx.origin()}/secrets/${shown}/${v.version}`, v));
    const more = versions.length > offset + size;
    ctx.json(res, 200, { value, nextLink: more ? nextLink(`/secrets/${encodeURIComponent(name)}/versions`, url, String(offset + size)) : null });
  };

  /** The request's problem in the vault's words, or undefined when it is a valid set-secret body. */
  const invalidSet = (name: string, body: unknown): string | undefined => {
    if (!VAULT_SECRET_NAME.test(name)) return `Invalid secret name '${name.slice(0, 140)}': 1-127 characters of 0-9, a-z, A-Z and -.`;
    if (typeof body !== 'object' || body === null) return 'The request body must be a JSON object.';
    const { value, contentType, tags, attributes: attrs } = body as Record<string, unknown>;
    if (typeof value !== 'string') return 'Property value is required.';
    if (Buffer.byteLength(value, 'utf8') > MAX_VALUE_BYTES) return 'Secret value is too large: at most 25 KB.';
    if (contentType !== undefined && contentType !== null && (typeof contentType !== 'string' || contentType.length > MAX_CONTENT_TYPE)) {
      return 'contentType must be a string of at most 255 characters.';
    }
    if (tags !== undefined && tags !== null) {
      if (typeof tags !== 'object' || Array.isArray(tags)) return 'tags must be an object of string values.';
      const entries = Object.entries(tags as Record<string, unknown>);
      if (entries.length > MAX_TAGS) return `Too many tags: ${entries.length}; at most 15.`;
      for (const [k, v] of entries) {
        if (typeof v !== 'string') return `Tag '${k.slice(0, 40)}' must have a string value.`;
        if (k.length === 0 || k.length > MAX_TAG_CHARS) return 'A tag name must be 1-256 characters.';
        if (v.length > MAX_TAG_CHARS) return `The value of tag '${k.slice(0, 40)}' is over 256 characters.`;
      }
    }
    if (attrs !== undefined && attrs !== null && (typeof attrs !== 'object' || Array.isArray(attrs))) return 'attributes must be an object.';
    return undefined;
  };

  /** Whether one more write fits the limit now; forgets writes that left the window. */
  const fitsLimit = (now: number): boolean => {
    if (limit === undefined) return true;
    while (accepted.length > 0 && accepted[0]! <= now - limit.windowMs) accepted.shift();
    return accepted.length < limit.writes;
  };

  const store = (name: string, body: Record<string, unknown>, now: number): StoredVersion => {
    const key = name.toLowerCase();
    if (!displayNames.has(key)) displayNames.set(key, name);
    const attrs = (body.attributes ?? {}) as { enabled?: unknown };
    const stored: StoredVersion = {
      version: randomBytes(16).toString('hex'),
      value: body.value as string,
      enabled: attrs.enabled !== false,
      tags: { ...(body.tags as Record<string, string> | undefined) },
      ...(typeof body.contentType === 'string' && { contentType: body.contentType }),
      created: Math.floor(now / 1000),
    };
    const versions = ctx.secrets.get(key) ?? [];
    versions.push(stored);
    ctx.secrets.set(key, versions);
    counts.writes += 1;
    accepted.push(now);
    counts.peakWindowWrites = Math.max(counts.peakWindowWrites, accepted.length);
    return stored;
  };

  const setSecret = (req: IncomingMessage, res: ServerResponse, name: string): void => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => {
      if (size > MAX_BODY_BYTES) {
        counts.refused += 1;
        return ctx.json(res, 413, { error: { code: 'RequestEntityTooLarge', message: 'The request body is too large.' } });
      }
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        body = undefined;
      }
      const problem = invalidSet(name, body);
      if (problem !== undefined) {
        counts.refused += 1;
        return ctx.json(res, 400, badParameter(problem));
      }
      const now = Date.now();
      if (!fitsLimit(now)) {
        counts.throttled += 1;
        return ctx.json(res, 429, { error: errorBody(429) });
      }
      if (pendingFault !== undefined && pendingFault.skip === 0) {
        const fault = pendingFault;
        fault.left -= 1;
        if (fault.left <= 0) pendingFault = undefined;
        counts.faulted += 1;
        if (fault.stored === true) store(name, body as Record<string, unknown>, now);
        return ctx.json(res, fault.status, { error: errorBody(fault.status) });
      }
      const stored = store(name, body as Record<string, unknown>, now);
      if (pendingFault !== undefined && pendingFault.skip > 0) pendingFault.skip -= 1;
      ctx.json(res, 200, { value: stored.value, ...item(`${ctx.origin()}/secrets/${displayNames.get(name.toLowerCase()) ?? name}/${stored.version}`, stored) });
    });
  };

  return {
    serves(req, url) {
      if (req.method === 'PUT') return SET_PATH.test(url.pathname);
      return req.method === 'GET' && (SECRETS_LIST_PATH.test(url.pathname) || VERSIONS_PATH.test(url.pathname));
    },
    serve(req, res, url) {
      if (!authorized(req, res, url)) {
        req.resume();
        return;
      }
      if (req.method === 'PUT') return setSecret(req, res, decodeURIComponent(SET_PATH.exec(url.pathname)?.[1] ?? ''));
      const versions = VERSIONS_PATH.exec(url.pathname);
      if (versions !== null) return listVersions(res, url, decodeURIComponent(versions[1] ?? ''));
      return listSecrets(res, url);
    },
    api: {
      setWriteLimit(next) {
        limit = next;
        accepted.length = 0;
      },
      failWrites(fault) {
        pendingFault = { ...fault, left: fault.count, skip: fault.afterWrites ?? 0 };
      },
      writeCounts: () => ({ ...counts }),
      resetWriteCounts() {
        for (const k of Object.keys(counts) as (keyof typeof counts)[]) counts[k] = 0;
      },
      versions: (name) =>
        (ctx.secrets.get(name.toLowerCase()) ?? []).map((v) => ({
          version: v.version,
          enabled: v.enabled,
          tags: { ...v.tags },
          value: v.value,
          ...(v.contentType !== undefined && { contentType: v.contentType }),
        })),
      secretNames: () => [...ctx.secrets.keys()].filter((k) => (ctx.secrets.get(k)?.length ?? 0) > 0).sort(),
    },
  };
}
