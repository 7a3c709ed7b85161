/**
 * A loopback HTTPS stand-in for the Application Insights ingestion endpoint (Breeze), close enough for the real
 * @azure/monitor-opentelemetry-exporter (1.0.0-beta.47, the version in package-lock.json). Each rule below names
 * where it comes from; "exporter" means that package's source (sdk/monitor/monitor-opentelemetry-exporter/src in
 * Azure/azure-sdk-for-js; the same files are under node_modules/@azure/monitor-opentelemetry-exporter/dist/esm).
 *
 * Request
 * - `POST {IngestionEndpoint}/v2.1/track`: the generated client joins host, `v2.1` and `/track`
 *   (exporter generated/api/applicationInsightsContext.ts, generated/api/operations.ts `_trackSend`). `/v2/track` is
 *   the older path the exporter also treats as ingestion (platform/nodejs/gzipHttpClient.ts `isIngestionUrl`).
 *   Another path: 404; another method: 405.
 * - Body: a JSON array of envelopes `{ ver, name, time, sampleRate, seq, iKey, tags, data: { baseType, baseData } }`
 *   (generated/models/models.ts `telemetryItemSerializer`), sent as application/json, gzip-compressed with
 *   `Content-Encoding: gzip` to Azure hosts (gzipHttpClient.ts; to this loopback host it goes uncompressed). Both are
 *   accepted; a body that is not gzip when it says so, not JSON or not an array: 400 for the whole batch.
 * - Per envelope: `name`, `time` (ISO 8601) and `data.baseType` are required (the Track API's TelemetryItem model,
 *   generated/models/models.ts; `time` and `name` are the model's required fields); `iKey` must be the component's
 *   instrumentation key, else that item's error is 400 "Invalid instrumentation key" (the message the exporter looks
 *   for, platform/nodejs/baseSender.ts).
 *
 * Answer (generated/models/models.ts `trackResponseDeserializer`): `{ itemsReceived, itemsAccepted, errors: [{ index,
 * statusCode, message }] }`. 200 when every item is accepted; 206 when some are (the exporter retries only items whose
 * statusCode is retriable, utils/breezeUtils.ts `isRetriable`); 400 when none is.
 *
 * Entra ID (Learn: azure-monitor/app/azure-ad-authentication, "Troubleshooting: ingestion HTTP errors"), for a
 * component with local authentication disabled (`entraOnly`):
 * - no `Authorization` header: 400 "Authentication not supported" (the SDK is not configured for Entra);
 * - a bearer token that is not valid (not issued by the identity stand-in, or for another audience than
 *   https://monitor.azure.com, the scope the exporter asks for: platform/nodejs/httpSender.ts
 *   `applicationInsightsResource`): 401 "Authorization required";
 * - a valid token of an identity without Monitoring Metrics Publisher on the component (`publishers`): 403.
 * A component with local authentication on takes an envelope by its instrumentation key alone, with or without a token.
 *
 * Faults (`setFault`): any status with an optional Retry-After (429 throttled, 439 daily quota, 500, 503: retriable
 * per breezeUtils.ts; 402 over the daily cap), for the next N requests or all.
 *
 * Egress trap (`egressProxy`): an http proxy URL that answers every CONNECT with 403 and records its target. The
 * exporter polls https://settings.sdk.monitor.azure.com on its own, 5-15 s after start (_configuration/
 * configurationWorker.ts, no setting turns it off) through @azure/core-rest-pipeline's proxyPolicy, which honours
 * HTTPS_PROXY / NO_PROXY: a process given HTTPS_PROXY=<egressProxy> and NO_PROXY=127.0.0.1,localhost keeps it on
 * loopback.
 *
 * Ingestion by its Azure name (`azureConnectionString`): the trap tunnels a CONNECT to AZURE_INGESTION_HOST:443, and
 * only that, to this stand-in, whose certificate also names that host. The exporter gzips a batch only when the URL is
 * an Azure ingestion host (gzipHttpClient.ts `isIngestionUrl`: https, /v2/track or /v2.1/track, a host ending in
 * one of Declarations/Constants.ts ALLOWED_REDIRECT_DOMAIN_SUFFIX_GROUPS, such as .applicationinsights.azure.com),
 * so this is the way it sends in Azure: compressed, and compressing costs CPU. The name is never looked up: through a
 * proxy the client hands it to the proxy in the CONNECT line.
 *
 * Or directly (`directConnectionString`): the same Azure name with this stand-in's port, for a process that resolves
 * that name to 127.0.0.1 itself (bench/loopback-names.ts) and leaves it out of its proxy (NO_PROXY). Its client then
 * keeps one connection for every batch, as in Azure; through the tunnel it opens a new one per batch. `connections`
 * counts the TLS sessions either way.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import { connect as connectTcp, type AddressInfo, type Socket } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { createTestCa, issueLocalhostCertificate, processTrustedCa, type TestCa } from './keyvault-standin.js';

export interface Envelope {
  readonly ver?: number;
  readonly name: string;
  readonly time: string;
  readonly iKey?: string;
  readonly sampleRate?: number;
  readonly tags?: Record<string, string>;
  readonly data?: { readonly baseType?: string; readonly baseData?: Record<string, unknown> };
}

export interface TrackRequest {
  readonly path: string;
  readonly gzip: boolean;
  readonly authorization?: string;
  readonly status: number;
  readonly envelopes: readonly Envelope[];
}

export interface IngestionStandinOptions {
  /** The component's instrumentation key; default a fixed test GUID. */
  readonly instrumentationKey?: string;
  /** Local authentication disabled: only Entra ID tokens are taken. */
  readonly entraOnly?: boolean;
  /** Whether a bearer token is genuine (pass the managed identity stand-in's isIssuedToken). */
  readonly acceptsToken?: (token: string) => boolean;
  /** Client ids (appid claim) holding Monitoring Metrics Publisher; undefined = every genuine token. */
  readonly publishers?: readonly string[];
  readonly ca?: TestCa;
  /** false: count accepted envelopes without keeping them (a benchmark's thousands); default true. */
  readonly retain?: boolean;
}

export interface IngestionStandin {
  /** https://127.0.0.1:<port> */
  readonly origin: string;
  readonly instrumentationKey: string;
  /** A connection string naming this stand-in as IngestionEndpoint. */
  readonly connectionString: string;
  /** A connection string naming AZURE_INGESTION_HOST, reached through `egressProxy`'s tunnel (see the header). */
  readonly azureConnectionString: string;
  /** AZURE_INGESTION_HOST with this stand-in's port, for a client that resolves that name to loopback (see the header). */
  readonly directConnectionString: string;
  /** TLS sessions the stand-in has accepted, tunnelled or direct. */
  readonly connections: number;
  /** http://127.0.0.1:<port> of the egress trap (see the header). */
  readonly egressProxy: string;
  /** Every envelope accepted so far, in arrival order (none kept with `retain: false`). */
  readonly accepted: readonly Envelope[];
  /** How many envelopes were accepted so far. */
  readonly acceptedCount: number;
  readonly requests: readonly TrackRequest[];
  /** CONNECT targets the egress trap tunnelled to this stand-in (AZURE_INGESTION_HOST:443). */
  readonly tunnelled: readonly string[];
  /** CONNECT targets the egress trap refused. */
  readonly refusedEgress: readonly string[];
  /** Resolves once `predicate` holds for the accepted envelopes (checked on every arrival). */
  waitFor(predicate: (accepted: readonly Envelope[]) => boolean): Promise<void>;
  setFault(fault: { status: number; retryAfterSeconds?: number; times?: number } | undefined): void;
  stop(): Promise<void>;
}

const DEFAULT_IKEY = '00000000-0000-4000-8000-0000000a1b2c';
/** A regional ingestion host as the portal's connection strings name them (Learn: azure-monitor/app/connection-strings). */
export const AZURE_INGESTION_HOST = 'westeurope-5.in.applicationinsights.azure.com';
const MONITOR_AUDIENCES = new Set(['https://monitor.azure.com', 'https://monitor.azure.com/']);

function claimsOf(token: string): { aud?: string; appid?: string } | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    return JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as { aud?: string; appid?: string };
  } catch {
    return undefined;
  }
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
  res.end(JSON.stringify(body));
}

export async function startIngestionStandin(options: IngestionStandinOptions = {}): Promise<IngestionStandin> {
  const ikey = options.instrumentationKey ?? DEFAULT_IKEY;
  const ca = options.ca ?? processTrustedCa() ?? (await createTestCa());
  const cert = await issueLocalhostCertificate(ca, [AZURE_INGESTION_HOST]);
  const accepted: Envelope[] = [];
  const tunnelled: string[] = [];
  const requests: TrackRequest[] = [];
  const refusedEgress: string[] = [];
  const waiters: Array<{ predicate: (a: readonly Envelope[]) => boolean; resolve: () => void }> = [];
  let fault: { status: number; retryAfterSeconds?: number; times?: number } | undefined;
  let acceptedCount = 0;
  let connections = 0;

  const notify = () => {
    for (const waiter of [...waiters]) {
      if (waiter.predicate(accepted)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  };

  /** The Entra ID rule for this request: undefined when it may go on, else the refusal. */
  const entraRefusal = (authorization: string | undefined): { status: number; message: string } | undefined => {
    if (authorization === undefined) {
      return options.entraOnly === true ? { status: 400, message: 'Authentication not supported' } : undefined;
    }
    const token = /^Bearer (\S+)$/.exec(authorization)?.[1];
    const claims = token === undefined ? undefined : claimsOf(token);
    const genuine = token !== undefined && (options.acceptsToken?.(token) ?? false) && claims !== undefined && MONITOR_AUDIENCES.has(claims.aud ?? '');
    if (!genuine) return { status: 401, message: 'Authorization required' };
    if (options.publishers !== undefined && !options.publishers.includes(claims.appid ?? '')) return { status: 403, message: 'Unauthorized' };
    return undefined;
  };

  const handle = (req: IncomingMessage, res: ServerResponse, raw: Buffer) => {
    const path = new URL(req.url ?? '/', 'https://localhost').pathname;
    if (path !== '/v2.1/track' && path !== '/v2/track') return send(res, 404, { message: 'Not found' });
    if (req.method !== 'POST') return send(res, 405, { message: 'Method not allowed' });
    const authorization = req.headers.authorization;
    const gzip = (req.headers['content-encoding'] ?? '').toLowerCase() === 'gzip';
    const record = (status: number, envelopes: readonly Envelope[]) =>
      requests.push({ path, gzip, ...(authorization !== undefined && { authorization }), status, envelopes });
    if (fault !== undefined) {
      const { status, retryAfterSeconds } = fault;
      if (fault.times !== undefined && --fault.times <= 0) fault = undefined;
      record(status, []);
      return send(res, status, { itemsReceived: 0, itemsAccepted: 0, errors: [] }, retryAfterSeconds !== undefined ? { 'retry-after': String(retryAfterSeconds) } : {});
    }
    const refused = entraRefusal(authorization);
    if (refused !== undefined) {
      record(refused.status, []);
      return send(res, refused.status, { itemsReceived: 0, itemsAccepted: 0, errors: [{ index: 0, statusCode: refused.status, message: refused.message }] });
    }
    let items: unknown;
    try {
      items = JSON.parse((gzip ? gunzipSync(raw) : raw).toString('utf8'));
    } catch {
      record(400, []);
      return send(res, 400, { itemsReceived: 0, itemsAccepted: 0, errors: [{ index: 0, statusCode: 400, message: 'Invalid request body: not (gzipped) JSON' }] });
    }
    if (!Array.isArray(items)) {
      record(400, []);
      return send(res, 400, { itemsReceived: 0, itemsAccepted: 0, errors: [{ index: 0, statusCode: 400, message: 'Invalid request body: expected an array of envelopes' }] });
    }
    const errors: Array<{ index: number; statusCode: number; message: string }> = [];
    const taken: Envelope[] = [];
    items.forEach((item: unknown, index) => {
      const e = item as Partial<Envelope> | null;
      const problem =
        e === null || typeof e !== 'object' ? 'envelope is not an object'
        : typeof e.name !== 'string' || e.name === '' ? "Field 'name' on type 'Envelope' is required"
        : typeof e.time !== 'string' || Number.isNaN(Date.parse(e.time)) ? "Field 'time' on type 'Envelope' is required"
        : e.iKey !== ikey ? 'Invalid instrumentation key'
        : typeof e.data?.baseType !== 'string' ? "Field 'baseType' on type 'Data' is required"
        : undefined;
      if (problem !== undefined) errors.push({ index, statusCode: 400, message: problem });
      else taken.push(e as Envelope);
    });
    const status = errors.length === 0 ? 200 : taken.length > 0 ? 206 : 400;
    acceptedCount += taken.length;
    const keep = options.retain !== false;
    record(status, keep ? taken : []);
    if (keep) accepted.push(...taken);
    send(res, status, { itemsReceived: items.length, itemsAccepted: taken.length, errors });
    notify();
  };

  const server: Server = createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handle(req, res, Buffer.concat(chunks)));
  });
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => (sockets.add(s), s.once('close', () => sockets.delete(s))));
  server.on('secureConnection', () => (connections += 1));
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const port = (server.address() as AddressInfo).port;

  const trap: HttpServer = createHttpServer((_req, res) => send(res, 403, { message: 'egress refused (loopback only)' }));
  trap.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    if (req.url?.toLowerCase() !== `${AZURE_INGESTION_HOST}:443`) {
      refusedEgress.push(req.url ?? '');
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    tunnelled.push(req.url);
    const upstream = connectTcp(port, '127.0.0.1', () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      socket.pipe(upstream).pipe(socket);
    });
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    const drop = () => (socket.destroy(), upstream.destroy());
    socket.once('error', drop);
    upstream.once('error', drop);
  });
  await new Promise<void>((ok) => trap.listen(0, '127.0.0.1', ok));
  const trapPort = (trap.address() as AddressInfo).port;

  const origin = `https://127.0.0.1:${port}`;
  return {
    origin,
    instrumentationKey: ikey,
    connectionString: `InstrumentationKey=${ikey};IngestionEndpoint=${origin}/;LiveEndpoint=${origin}/`,
    azureConnectionString: `InstrumentationKey=${ikey};IngestionEndpoint=https://${AZURE_INGESTION_HOST}/;LiveEndpoint=https://${AZURE_INGESTION_HOST}/`,
    directConnectionString: `InstrumentationKey=${ikey};IngestionEndpoint=https://${AZURE_INGESTION_HOST}:${port}/;LiveEndpoint=https://${AZURE_INGESTION_HOST}:${port}/`,
    get connections() {
      return connections;
    },
    egressProxy: `http://127.0.0.1:${trapPort}`,
    tunnelled,
    accepted,
    get acceptedCount() {
      return acceptedCount;
    },
    requests,
    refusedEgress,
    waitFor: (predicate) => (predicate(accepted) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ predicate, resolve }))),
    setFault: (f) => {
      fault = f === undefined ? undefined : { ...f };
    },
    stop: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all([new Promise((ok) => server.close(ok)), new Promise((ok) => trap.close(ok))]);
    },
  };
}
