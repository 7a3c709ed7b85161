/**
 * A loopback stand-in for the App Service managed identity endpoint (the one `IDENTITY_ENDPOINT` names in Azure
 * Functions): `GET {endpoint}?resource=...&api-version=2019-08-01` with header `X-IDENTITY-HEADER: {IDENTITY_HEADER}`
 * answers `{ access_token, expires_on, resource, token_type, client_id }`.
 *
 * Usage:
 *   const mi = await startManagedIdentityStandin();
 *   const restoreEnv = useManagedIdentityEnv(mi);   // before constructing any credential
 *   ... new DefaultAzureCredential() gets its tokens from mi; mi.isIssuedToken(t) checks a bearer token ...
 *   restoreEnv(); await mi.stop();
 *
 * Token shape: by default an opaque string (`mi-standin.<random>`), enough for the Key Vault stand-in, which only
 * asks `isIssuedToken`. With `tokenFormat: 'jwt'` it issues what Entra ID really gives a managed identity: a signed
 * JWT (RS256) with `aud` = the requested resource, `iss` = https://sts.windows.net/<tenant>/, `iat`/`nbf`/`exp`,
 * `oid`, `tid`, `appid`. Azurite's `--oauth basic` decodes exactly these and refuses a token that is not a JWT or
 * whose aud/iss/nbf/exp do not fit (azurite src/table/authentication/TableTokenAuthenticator.ts).
 *
 * Caveat: MSAL picks the managed identity source (and its endpoint URL) once per PROCESS, on the first token
 * request, and keeps its token cache process-wide too. Start one stand-in per test file (vitest runs each file in its
 * own process) and keep it for the whole file; use `fail()` rather than a second server to simulate an outage.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPair, SignJWT, type CryptoKey } from 'jose';

export interface ManagedIdentityStandinOptions {
  /**
   * Lifetime of issued tokens. Default 240 s: under MSAL's 5-minute renewal margin, so MSAL's process-wide cache never
   * serves them and every new credential really asks the endpoint (which makes `tokenRequests` countable per
   * credential), while the Key Vault client's token cycler still reuses one token for about two minutes.
   */
  readonly tokenLifetimeSeconds?: number;
  /** client_id reported in the answer. */
  readonly clientId?: string;
  /** 'opaque' (default) or 'jwt': an Entra-shaped signed access token, as storage services decode it. */
  readonly tokenFormat?: 'opaque' | 'jwt';
  /** Tenant id in a JWT's `iss` and `tid`. */
  readonly tenantId?: string;
}

export interface ManagedIdentityStandin {
  /** The value for IDENTITY_ENDPOINT: http://127.0.0.1:<port>/msi/token */
  readonly endpoint: string;
  /** The value for IDENTITY_HEADER; requests without it are refused with 400, as App Service does. */
  readonly identityHeader: string;
  /** Token requests answered or refused so far (every request that reached the endpoint path). */
  readonly tokenRequests: number;
  /** The `resource` of each token request, in order. */
  readonly resources: readonly string[];
  /** Whether `token` was issued by this stand-in (the Key Vault stand-in accepts only these). */
  isIssuedToken(token: string): boolean;
  /** From now on answer token requests with this status (e.g. 500, 503), or answer normally again with undefined. */
  fail(status: number | undefined): void;
  /** Forget issued tokens (the vault stand-in will then reject them with 401) and zero the counters. */
  reset(): void;
  stop(): Promise<void>;
}

export async function startManagedIdentityStandin(options: ManagedIdentityStandinOptions = {}): Promise<ManagedIdentityStandin> {
  const lifetime = options.tokenLifetimeSeconds ?? 240;
  const clientId = options.clientId ?? '00000000-0000-0000-0000-00000000c1d0';
  const identityHeader = randomBytes(16).toString('hex');
  const issued = new Set<string>();
  const resources: string[] = [];
  let requests = 0;
  let failStatus: number | undefined;
  const tenantId = options.tenantId ?? '00000000-0000-0000-0000-0000000071d0';
  const signingKey: CryptoKey | undefined = options.tokenFormat === 'jwt' ? (await generateKeyPair('RS256')).privateKey : undefined;

  /** What Entra ID issues a system-assigned identity (v1 access token claims). */
  const accessToken = async (resource: string, expiresOn: number): Promise<string> => {
    if (signingKey === undefined) return `mi-standin.${randomBytes(24).toString('base64url')}`;
    const issuedAt = Math.floor(Date.now() / 1000);
    return new SignJWT({ tid: tenantId, oid: '00000000-0000-0000-0000-0000000001d0', appid: clientId, idtyp: 'app', ver: '1.0' })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: 'mi-standin' })
      .setAudience(resource)
      .setIssuer(`https://sts.windows.net/${tenantId}/`)
      .setSubject('00000000-0000-0000-0000-0000000001d0')
      .setIssuedAt(issuedAt)
      .setNotBefore(issuedAt - 300)
      .setExpirationTime(expiresOn)
      .setJti(randomBytes(12).toString('base64url'))
      .sign(signingKey);
  };

  const send = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };

  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (req.method !== 'GET' || url.pathname !== '/msi/token') return send(res, 404, { error: 'not_found' });
    requests += 1;
    const resource = url.searchParams.get('resource') ?? '';
    resources.push(resource);
    if (req.headers['x-identity-header'] !== identityHeader) {
      return send(res, 400, { statusCode: 400, message: 'X-IDENTITY-HEADER is missing or wrong' });
    }
    if (url.searchParams.get('api-version') !== '2019-08-01' || resource === '') {
      return send(res, 400, { statusCode: 400, message: 'api-version 2019-08-01 and resource are required' });
    }
    if (failStatus !== undefined) {
      return send(res, failStatus, { statusCode: failStatus, message: 'managed identity stand-in told to fail' });
    }
    const expiresOn = Math.floor(Date.now() / 1000) + lifetime;
    const token = await accessToken(resource, expiresOn);
    issued.add(token);
    send(res, 200, {
      access_token: token,
      expires_on: String(expiresOn),
      resource,
      token_type: 'Bearer',
      client_id: clientId,
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}/msi/token`,
    identityHeader,
    get tokenRequests() {
      return requests;
    },
    get resources() {
      return resources;
    },
    isIssuedToken: (token) => issued.has(token),
    fail: (status) => {
      failStatus = status;
    },
    reset: () => {
      issued.clear();
      resources.length = 0;
      requests = 0;
      failStatus = undefined;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Environment variables that would make the Azure SDK pick another identity source or credential (IMDS on
 * 169.254.169.254, Service Fabric, Arc, Cloud Shell, a service principal, a user-assigned identity). Cleared so that
 * only the stand-in can answer.
 */
const COMPETING_ENV = [
  'MSI_ENDPOINT',
  'MSI_SECRET',
  'IDENTITY_SERVER_THUMBPRINT',
  'IMDS_ENDPOINT',
  'AZURE_POD_IDENTITY_AUTHORITY_HOST',
  'AZURE_CLIENT_ID',
  'AZURE_TENANT_ID',
  'AZURE_CLIENT_SECRET',
  'AZURE_CLIENT_CERTIFICATE_PATH',
  'AZURE_USERNAME',
  'AZURE_PASSWORD',
  'AZURE_FEDERATED_TOKEN_FILE',
] as const;

/**
 * Points the Azure SDK at the stand-in: sets IDENTITY_ENDPOINT / IDENTITY_HEADER, clears competing variables, and
 * sets AZURE_TOKEN_CREDENTIALS=prod so DefaultAzureCredential never falls through to developer tools (az, azd,
 * pwsh, VS Code), which could reach the internet. Returns a function that restores the previous environment.
 */
export function useManagedIdentityEnv(mi: Pick<ManagedIdentityStandin, 'endpoint' | 'identityHeader'>): () => void {
  const names = ['IDENTITY_ENDPOINT', 'IDENTITY_HEADER', 'AZURE_TOKEN_CREDENTIALS', ...COMPETING_ENV];
  const saved = new Map(names.map((name) => [name, process.env[name]]));
  for (const name of COMPETING_ENV) delete process.env[name];
  process.env.IDENTITY_ENDPOINT = mi.endpoint;
  process.env.IDENTITY_HEADER = mi.identityHeader;
  process.env.AZURE_TOKEN_CREDENTIALS = 'prod';
  return () => {
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
}
