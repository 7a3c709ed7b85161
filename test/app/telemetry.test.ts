/**
 * Telemetry in Azure Monitor, end to end through the real exporter (@azure/monitor-opentelemetry-exporter) and the
 * real OpenTelemetry SDK: the webhook as composed for Azure (createWebhook / startWebhook with the app settings),
 * the managed identity stand-in for Entra ID tokens, and the ingestion stand-in (test/support/ingestion-standin.ts),
 * which takes and refuses what the real ingestion endpoint does. Assertions are on the envelopes it accepted.
 * Loopback only: every other connection is refused and recorded; the exporter's own settings poll goes to the
 * stand-in's egress trap (HTTPS_PROXY), never off the machine.
 */
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWebhook, startWebhook, type Webhook } from '../../functions/app/compose.js';
import { ConfigError, loadConfig, loadTelemetryConfig } from '../../functions/config.js';
import { deviceSecretName } from '../../functions/keys/names.js';
import { allocationRequest, deviceClaims, ID_SCOPE, keysDir, makeDevice, signToken, type TestDevice } from '../support/devices.js';
import { startBundledFunction } from '../support/bundle-host.js';
import { AZURE_INGESTION_HOST, startIngestionStandin, type Envelope, type IngestionStandin } from '../support/ingestion-standin.js';
import { startKeyVaultStandin, type KeyVaultStandin } from '../support/keyvault-standin.js';
import { guardLoopback } from '../support/loopback-guard.js';
import { startManagedIdentityStandin, useManagedIdentityEnv, type ManagedIdentityStandin } from '../support/managed-identity-standin.js';

let guard: ReturnType<typeof guardLoopback>;
let mi: ManagedIdentityStandin;
let restoreEnv: () => void;
let ingestion: IngestionStandin;
let vault: KeyVaultStandin;
let devices: TestDevice[];
let dir: string;
const saved = { HTTPS_PROXY: process.env.HTTPS_PROXY, NO_PROXY: process.env.NO_PROXY, APPLICATION_INSIGHTS_NO_STATSBEAT: process.env.APPLICATION_INSIGHTS_NO_STATSBEAT };
const now = () => Math.floor(Date.now() / 1000);
const webhooks: Webhook[] = [];

const CLIENT_ID = '00000000-0000-0000-0000-00000000c1d0';

beforeAll(async () => {
  guard = guardLoopback();
  mi = await startManagedIdentityStandin({ tokenFormat: 'jwt', clientId: CLIENT_ID });
  restoreEnv = useManagedIdentityEnv(mi);
  ingestion = await startIngestionStandin({ entraOnly: true, acceptsToken: mi.isIssuedToken, publishers: [CLIENT_ID] });
  // Before any Azure pipeline exists: proxyPolicy reads these once (see the stand-in's header).
  process.env.HTTPS_PROXY = ingestion.egressProxy;
  process.env.NO_PROXY = '127.0.0.1,localhost';
  // Statsbeat, the exporter's own health telemetry to Microsoft, probes the VM metadata address (169.254.169.254)
  // when it runs outside Azure (export/statsbeat/statsbeatMetrics.ts); its documented off switch.
  process.env.APPLICATION_INSIGHTS_NO_STATSBEAT = 'true';
  vault = await startKeyVaultStandin({ acceptsToken: mi.isIssuedToken });
  devices = await Promise.all(['tm-device-1', 'tm-device-2', 'tm-vault-1', 'tm-vault-throttled'].map((id) => makeDevice(id)));
  dir = await keysDir(devices.slice(0, 2));
});

afterAll(async () => {
  for (const w of webhooks) await w.close();
  for (const [name, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  restoreEnv?.();
  guard?.restore();
  await vault?.stop();
  await ingestion?.stop();
  await mi?.stop();
});

const telemetryEnv = (standin: IngestionStandin, role = 'dps-webhook-test-fn') => ({
  APPLICATIONINSIGHTS_CONNECTION_STRING: standin.connectionString,
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD',
  // cloud_RoleName: each test's webhook has its own, so its metrics are told apart from an earlier test's.
  WEBSITE_SITE_NAME: role,
  // Metrics are sent by flush() in these tests, not by the timer.
  TELEMETRY_METRIC_INTERVAL_SECONDS: '3600',
});

async function webhookWith(env: Record<string, string>): Promise<Webhook> {
  const webhook = await createWebhook(loadConfig({ DPS_ID_SCOPE: ID_SCOPE, ...env }));
  webhooks.push(webhook);
  return webhook;
}

const body = async (device: TestDevice, key = device.privateKey) =>
  JSON.stringify(allocationRequest({ registrationId: device.id, token: await signToken(key, deviceClaims(device, now())) }));

const decisionsOf = (accepted: readonly Envelope[]) =>
  accepted.filter((e) => e.data?.baseType === 'RemoteDependencyData' && e.data.baseData?.name === 'validatejwt decision');
const propertiesOf = (e: Envelope) => (e.data?.baseData?.properties ?? {}) as Record<string, string>;
const metricsOf = (accepted: readonly Envelope[], name: string, role?: string) =>
  accepted
    .filter((e) => e.data?.baseType === 'MetricData' && (role === undefined || e.tags?.['ai.cloud.role'] === role))
    .flatMap((e) => ((e.data?.baseData?.metrics ?? []) as Array<{ name: string; value: number; count?: number }>).map((m) => ({ ...m, properties: propertiesOf(e) })))
    .filter((m) => m.name === name);

describe('each decision, as Azure Monitor receives it', () => {
  it('is one trace with the decision attributes, joined to the invocation; `decisions` counts by code and status; no token, key or function key anywhere', async () => {
    const webhook = await webhookWith({ DEVICE_KEYS_DIR: dir, ...telemetryEnv(ingestion) });
    expect(webhook.telemetry).toBeDefined();
    const [one, two] = devices as [TestDevice, TestDevice];
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parentId = '00f067aa0ba902b7';
    const bodies = [await body(one), await body(one), await body(two, one.privateKey), '{"not":"a request"}'];
    const answers = [];
    for (const [i, b] of bodies.entries()) {
      answers.push(await webhook.handle({ body: b, contentType: 'application/json', ...(i === 0 && { traceParent: `00-${traceId}-${parentId}-01` }) }));
    }
    expect(answers.map((a) => a.status)).toEqual([200, 200, 403, 400]);
    await webhook.telemetry!.flush();
    await ingestion.waitFor((a) => decisionsOf(a).length >= 4 && metricsOf(a, 'decisions').length >= 3);

    const spans = decisionsOf(ingestion.accepted);
    const first = spans.find((s) => s.tags?.['ai.operation.id'] === traceId)!;
    expect(first, 'the decision handed a traceparent joins that trace').toBeDefined();
    expect(first.tags?.['ai.operation.parentId']).toBe(parentId);
    expect(first.tags?.['ai.cloud.role']).toBe('dps-webhook-test-fn');
    expect(propertiesOf(first)).toMatchObject({
      'dps.registration_id': one.id,
      'dps.code': 'assigned',
      'dps.status': '200',
      'dps.outcome': 'assigned',
      'dps.enrollment.kind': 'individual',
      'dps.key.lookup': 'store',
      'dps.hub': expect.stringMatching(/azure-devices\.net$/),
      'dps.key.source': expect.any(String),
    });
    expect(Number(propertiesOf(first)['dps.duration_ms'])).toBeGreaterThanOrEqual(0);
    // The webhook's first decision is its cold start; later ones are not marked.
    expect(propertiesOf(first)['dps.cold_start']).toBe('true');
    expect(Number(propertiesOf(first)['dps.since_process_start_ms'])).toBeGreaterThan(0);
    expect(spans.filter((s) => s.tags?.['ai.cloud.role'] === 'dps-webhook-test-fn' && propertiesOf(s)['dps.cold_start'] === 'true')).toHaveLength(1);
    const byCode = (code: string) => spans.filter((s) => propertiesOf(s)['dps.code'] === code);
    expect(byCode('assigned').map((s) => propertiesOf(s)['dps.key.lookup']).sort()).toEqual(['cache', 'store']);
    const refused = byCode('token_signature_invalid')[0] ?? spans.find((s) => propertiesOf(s)['dps.status'] === '403');
    expect(refused, 'the refusal is a trace too').toBeDefined();
    expect(propertiesOf(refused!)['dps.registration_id']).toBe(two.id);
    expect(spans.some((s) => propertiesOf(s)['dps.status'] === '400')).toBe(true);

    const counted = metricsOf(ingestion.accepted, 'decisions', 'dps-webhook-test-fn');
    const count = (code: string, status: string) => counted.filter((m) => m.properties.code === code && m.properties.status === status).reduce((n, m) => n + m.value, 0);
    expect(count('assigned', '200')).toBe(2);
    expect(counted.filter((m) => m.properties.status === '403').reduce((n, m) => n + m.value, 0)).toBe(1);
    expect(metricsOf(ingestion.accepted, 'key_cache_hits', 'dps-webhook-test-fn').reduce((n, m) => n + m.value, 0)).toBe(1);

    // Entra ID ingestion: every track request carried a managed identity token for Azure Monitor.
    const tracks = ingestion.requests.filter((r) => r.status === 200);
    expect(tracks.length).toBeGreaterThan(0);
    expect(tracks.every((r) => r.authorization?.startsWith('Bearer ') === true)).toBe(true);
    expect(mi.resources.some((r) => /^https:\/\/monitor\.azure\.com\/?$/.test(r))).toBe(true);

    // Nothing secret in what was sent: not the tokens, not the device's private key, not the bearer token.
    const sent = JSON.stringify(ingestion.accepted);
    const tokenPart = (b: string) => /"(eyJ[^"]+)"/.exec(b)?.[1];
    for (const b of bodies.slice(0, 3)) expect(sent).not.toContain(tokenPart(b)!.split('.')[2]!);
    expect(sent).not.toMatch(/PRIVATE KEY|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.|code=|x-functions-key/i);
    expect(guard.blocked).toEqual([]);
  });

  it('sent to ingestion by its Azure name, the batch goes gzip-compressed, as in Azure, and is taken whole', async () => {
    const webhook = await webhookWith({ DEVICE_KEYS_DIR: dir, ...telemetryEnv(ingestion, 'azure-name-fn'), APPLICATIONINSIGHTS_CONNECTION_STRING: ingestion.azureConnectionString });
    const [one] = devices as [TestDevice];
    expect((await webhook.handle({ body: await body(one), contentType: 'application/json' })).status).toBe(200);
    await webhook.telemetry!.flush();
    await ingestion.waitFor((a) => decisionsOf(a).some((s) => s.tags?.['ai.cloud.role'] === 'azure-name-fn'));
    const ofRole = (r: (typeof ingestion.requests)[number]) => r.envelopes.some((e) => e.tags?.['ai.cloud.role'] === 'azure-name-fn');
    const track = ingestion.requests.find((r) => ofRole(r) && decisionsOf(r.envelopes).length > 0)!;
    expect(track).toMatchObject({ status: 200, gzip: true, authorization: expect.stringMatching(/^Bearer /) });
    expect(ingestion.tunnelled).toContain(`${AZURE_INGESTION_HOST}:443`);
    // Sent to the loopback address instead, the exporter does not compress: the other tests' batches.
    expect(ingestion.requests.filter((r) => r.status === 200 && !ofRole(r) && r.envelopes.length > 0).every((r) => !r.gzip)).toBe(true);
    expect(guard.blocked).toEqual([]);
  });

  it('vault reads and a throttled vault (429) are metrics by outcome and HTTP status; the throttled decision is a 503 trace', async () => {
    const [, , vaultDevice, throttled] = devices as [TestDevice, TestDevice, TestDevice, TestDevice];
    vault.setSecret(deviceSecretName(vaultDevice.id), vaultDevice.publicPem);
    vault.setSecret(deviceSecretName(throttled.id), throttled.publicPem);
    vault.setFault({ kind: 'status', status: 429, retryAfterSeconds: 1 }, deviceSecretName(throttled.id));
    const webhook = await webhookWith({
      KEY_VAULT_URL: vault.url,
      KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION: 'true',
      ...telemetryEnv(ingestion, 'vault-test-fn'),
    });
    const admitted = await webhook.handle({ body: await body(vaultDevice), contentType: 'application/json' });
    const refused = await webhook.handle({ body: await body(throttled), contentType: 'application/json' });
    expect([admitted.status, refused.status]).toEqual([200, 503]);
    await webhook.telemetry!.flush();
    await ingestion.waitFor((a) => metricsOf(a, 'key_store_reads', 'vault-test-fn').some((m) => m.properties.http_status === '429'));
    const reads = metricsOf(ingestion.accepted, 'key_store_reads', 'vault-test-fn');
    expect(reads.find((m) => m.properties.outcome === 'found')?.value).toBe(1);
    expect(reads.find((m) => m.properties.http_status === '429')).toMatchObject({ value: 1, properties: { outcome: 'key_store_unavailable' } });
    expect(metricsOf(ingestion.accepted, 'key_store_read_ms', 'vault-test-fn').length).toBeGreaterThan(0);
    const throttledSpan = decisionsOf(ingestion.accepted).find((s) => propertiesOf(s)['dps.registration_id'] === throttled.id);
    expect(propertiesOf(throttledSpan!)).toMatchObject({ 'dps.code': 'key_store_unavailable', 'dps.status': '503' });
    expect(guard.blocked).toEqual([]);
  });

  it('replay-store claims are metrics by outcome: a replayed token counts as replayed', async () => {
    const webhook = await webhookWith({ DEVICE_KEYS_DIR: dir, REPLAY_STORE: 'memory', ...telemetryEnv(ingestion, 'replay-test-fn') });
    const [one] = devices as [TestDevice];
    const b = JSON.stringify(allocationRequest({ registrationId: one.id, token: await signToken(one.privateKey, deviceClaims(one, now(), { jti: 'telemetry-jti-1' })) }));
    expect((await webhook.handle({ body: b, contentType: 'application/json' })).status).toBe(200);
    expect((await webhook.handle({ body: b, contentType: 'application/json' })).status).toBe(403);
    await webhook.telemetry!.flush();
    await ingestion.waitFor((a) => metricsOf(a, 'replay_claims', 'replay-test-fn').some((m) => m.properties.outcome === 'replayed'));
    const claims = metricsOf(ingestion.accepted, 'replay_claims', 'replay-test-fn');
    expect(claims.find((m) => m.properties.outcome === 'first')?.value).toBe(1);
    expect(claims.find((m) => m.properties.outcome === 'replayed')?.value).toBe(1);
    expect(metricsOf(ingestion.accepted, 'replay_claim_ms', 'replay-test-fn').length).toBeGreaterThan(0);
    expect(decisionsOf(ingestion.accepted).some((s) => propertiesOf(s)['dps.code'] === 'token_replayed')).toBe(true);
  });

  it('a start fault still reports every 503 webhook_misconfigured answer, naming the setting', async () => {
    const reports: string[] = [];
    // DPS_ID_SCOPE missing: the webhook cannot start, the telemetry settings work.
    const handler = await startWebhook({ DEVICE_KEYS_DIR: dir, ...telemetryEnv(ingestion) }, { report: (l) => reports.push(l) });
    const answer = await handler.handle({ body: '{}', contentType: 'application/json', traceParent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' });
    expect(answer.status).toBe(503);
    expect(reports).toHaveLength(1);
    await ingestion.waitFor((a) => decisionsOf(a).some((s) => s.tags?.['ai.operation.id'] === '0af7651916cd43dd8448eb211c80319c'));
    const span = decisionsOf(ingestion.accepted).find((s) => s.tags?.['ai.operation.id'] === '0af7651916cd43dd8448eb211c80319c')!;
    expect(propertiesOf(span)).toMatchObject({ 'dps.code': 'webhook_misconfigured', 'dps.setting': 'DPS_ID_SCOPE', 'dps.status': '503' });
  });
});

describe('the deploy bundle', () => {
  it('loads the exporter chunk when the connection string is set and sends the decision trace (what deploys, not the tsc output)', async () => {
    const lines: string[] = [];
    const fn = await startBundledFunction({
      env: {
        DEVICE_KEYS_DIR: dir,
        DPS_ID_SCOPE: ID_SCOPE,
        ...telemetryEnv(ingestion, 'bundle-test-fn'),
        IDENTITY_ENDPOINT: mi.endpoint,
        IDENTITY_HEADER: mi.identityHeader,
        NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS ?? '',
        HTTPS_PROXY: ingestion.egressProxy,
        NO_PROXY: '127.0.0.1,localhost',
        APPLICATION_INSIGHTS_NO_STATSBEAT: 'true',
      },
      functionKey: 'bundle-test-key',
      log: (l) => lines.push(l),
    });
    try {
      const res = await fetch(fn.url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-functions-key': 'bundle-test-key' }, body: await body(devices[1]!) });
      expect(res.status).toBe(200);
      // The span processor sends within its 5 s batch delay; wait for the item, not for a time.
      await ingestion.waitFor((a) => decisionsOf(a).some((s) => s.tags?.['ai.cloud.role'] === 'bundle-test-fn'));
      const span = decisionsOf(ingestion.accepted).find((s) => s.tags?.['ai.cloud.role'] === 'bundle-test-fn')!;
      expect(propertiesOf(span)).toMatchObject({ 'dps.registration_id': devices[1]!.id, 'dps.code': 'assigned' });
      expect(JSON.stringify(ingestion.accepted)).not.toContain('bundle-test-key');
    } finally {
      await fn.close();
    }
  });
});

describe('ingestion refuses what it should, and a decision never waits for it', () => {
  it('an identity without Monitoring Metrics Publisher: ingestion answers 403, nothing is stored, and devices are still admitted', async () => {
    const strict = await startIngestionStandin({ entraOnly: true, acceptsToken: mi.isIssuedToken, publishers: ['11111111-1111-1111-1111-111111111111'] });
    try {
      const webhook = await webhookWith({ DEVICE_KEYS_DIR: dir, ...telemetryEnv(strict) });
      const answer = await webhook.handle({ body: await body(devices[0]!), contentType: 'application/json' });
      expect(answer.status).toBe(200);
      await webhook.telemetry!.flush();
      expect(strict.requests.length).toBeGreaterThan(0);
      expect(strict.requests.every((r) => r.status === 403)).toBe(true);
      expect(strict.accepted).toEqual([]);
    } finally {
      await strict.stop();
    }
  });

  it('throttled ingestion (429 + Retry-After): the decision is answered as usual and nothing is stored', async () => {
    const busy = await startIngestionStandin({ entraOnly: true, acceptsToken: mi.isIssuedToken });
    busy.setFault({ status: 429, retryAfterSeconds: 1 });
    try {
      const webhook = await webhookWith({ DEVICE_KEYS_DIR: dir, ...telemetryEnv(busy) });
      expect((await webhook.handle({ body: await body(devices[0]!), contentType: 'application/json' })).status).toBe(200);
      await webhook.telemetry!.flush();
      expect(busy.requests.map((r) => r.status)).toContain(429);
      expect(busy.accepted).toEqual([]);
    } finally {
      await busy.stop();
    }
  });

  it('the stand-in refuses as the service does: no token 400, a foreign token 401, wrong key or fields per item (206 / 400), bad body 400, wrong path 404', async () => {
    const url = `${ingestion.origin}/v2.1/track`;
    const good = (i = 0): Envelope => ({
      name: 'Microsoft.ApplicationInsights.Event',
      time: new Date().toISOString(),
      iKey: ingestion.instrumentationKey,
      data: { baseType: 'EventData', baseData: { ver: 2, name: `standin-check-${i}` } },
    });
    const token = await (await fetch(`${mi.endpoint}?resource=${encodeURIComponent('https://monitor.azure.com/')}&api-version=2019-08-01`, { headers: { 'x-identity-header': mi.identityHeader } })).json() as { access_token: string };
    const vaultToken = await (await fetch(`${mi.endpoint}?resource=${encodeURIComponent('https://vault.azure.net')}&api-version=2019-08-01`, { headers: { 'x-identity-header': mi.identityHeader } })).json() as { access_token: string };
    const post = async (payload: string | Buffer, headers: Record<string, string> = {}, target = url) => {
      const res = await fetch(target, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: payload });
      return { status: res.status, body: (await res.json()) as { itemsReceived: number; itemsAccepted: number; errors: Array<{ index: number; statusCode: number; message: string }> } };
    };
    const bearer = { authorization: `Bearer ${token.access_token}` };

    expect((await post(JSON.stringify([good()]))).status).toBe(400);
    expect((await post(JSON.stringify([good()]))).body.errors[0]?.message).toBe('Authentication not supported');
    expect((await post(JSON.stringify([good()]), { authorization: 'Bearer not-issued' })).status).toBe(401);
    expect((await post(JSON.stringify([good()]), { authorization: `Bearer ${vaultToken.access_token}` })).status).toBe(401);

    const mixed = await post(JSON.stringify([good(1), { ...good(2), iKey: '99999999-9999-4999-8999-999999999999' }, { ...good(3), time: undefined }]), bearer);
    expect(mixed.status).toBe(206);
    expect(mixed.body).toMatchObject({ itemsReceived: 3, itemsAccepted: 1 });
    expect(mixed.body.errors).toEqual([
      { index: 1, statusCode: 400, message: 'Invalid instrumentation key' },
      { index: 2, statusCode: 400, message: "Field 'time' on type 'Envelope' is required" },
    ]);
    expect((await post(JSON.stringify([{ ...good(), iKey: undefined }]), bearer)).status).toBe(400);
    expect((await post('not json', bearer)).status).toBe(400);
    expect((await post(JSON.stringify(good()), bearer)).status).toBe(400);
    expect((await post(Buffer.from('not gzip'), { ...bearer, 'content-encoding': 'gzip' })).status).toBe(400);
    expect((await post(gzipSync(JSON.stringify([good(4)])), { ...bearer, 'content-encoding': 'gzip' })).status).toBe(200);
    expect((await post(JSON.stringify([good()]), bearer, `${ingestion.origin}/v2.1/other`)).status).toBe(404);
    expect((await fetch(url, { headers: bearer })).status).toBe(405);
  });

  it('the egress trap tunnels only the Azure ingestion host, to the stand-in; any other CONNECT is 403 and recorded', async () => {
    const proxy = new URL(ingestion.egressProxy);
    const connectTo = (target: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(Number(proxy.port), proxy.hostname, () => socket.write(`CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n\r\n`));
        socket.once('data', (chunk: Buffer) => {
          resolve(chunk.toString('latin1').split('\r\n')[0]!);
          socket.destroy();
        });
        socket.once('error', reject);
      });
    expect(await connectTo('settings.sdk.monitor.azure.com:443')).toBe('HTTP/1.1 403 Forbidden');
    expect(await connectTo(`${AZURE_INGESTION_HOST}:80`)).toBe('HTTP/1.1 403 Forbidden');
    expect(ingestion.refusedEgress).toEqual(expect.arrayContaining(['settings.sdk.monitor.azure.com:443', `${AZURE_INGESTION_HOST}:80`]));
    expect(await connectTo(`${AZURE_INGESTION_HOST}:443`)).toBe('HTTP/1.1 200 Connection Established');
  });
});

describe('telemetry settings', () => {
  it('is off without a connection string: no exporter, no item sent', async () => {
    expect(loadTelemetryConfig({})).toEqual({ kind: 'off' });
    const before = ingestion.requests.length;
    const webhook = await webhookWith({ DEVICE_KEYS_DIR: dir });
    expect(webhook.telemetry).toBeUndefined();
    expect((await webhook.handle({ body: await body(devices[0]!), contentType: 'application/json' })).status).toBe(200);
    expect(ingestion.requests.length).toBe(before);
  });

  it.each([
    [{ APPLICATIONINSIGHTS_CONNECTION_STRING: 'IngestionEndpoint=https://x.in.applicationinsights.azure.com/' }, 'APPLICATIONINSIGHTS_CONNECTION_STRING', /InstrumentationKey/],
    [{ APPLICATIONINSIGHTS_CONNECTION_STRING: 'InstrumentationKey=not-a-guid' }, 'APPLICATIONINSIGHTS_CONNECTION_STRING', /GUID/],
    [{ APPLICATIONINSIGHTS_CONNECTION_STRING: 'InstrumentationKey=00000000-0000-4000-8000-0000000a1b2c;IngestionEndpoint=http://x.in.applicationinsights.azure.com/' }, 'APPLICATIONINSIGHTS_CONNECTION_STRING', /https/],
    [{ APPLICATIONINSIGHTS_CONNECTION_STRING: 'secret-looking-garbage' }, 'APPLICATIONINSIGHTS_CONNECTION_STRING', /Name=value/],
    [{ APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD' }, 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', /CONNECTION_STRING is not/],
    [{ APPLICATIONINSIGHTS_CONNECTION_STRING: 'InstrumentationKey=00000000-0000-4000-8000-0000000a1b2c', APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=Key' }, 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', /Authorization=AAD/],
    [{ APPLICATIONINSIGHTS_CONNECTION_STRING: 'InstrumentationKey=00000000-0000-4000-8000-0000000a1b2c', APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=me;Authorization=AAD' }, 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', /GUID/],
  ])('refuses %j, naming %s and never quoting the value', (env, setting, why) => {
    let error: unknown;
    try {
      loadTelemetryConfig(env);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).setting).toBe(setting);
    expect((error as ConfigError).message).toMatch(why);
    expect((error as ConfigError).message).not.toContain('secret-looking-garbage');
    expect((error as ConfigError).message).not.toContain('0000000a1b2c');
  });

  it('reads a user-assigned identity from ClientId', () => {
    expect(loadTelemetryConfig({
      APPLICATIONINSIGHTS_CONNECTION_STRING: 'InstrumentationKey=00000000-0000-4000-8000-0000000a1b2c;IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/',
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=22222222-2222-2222-2222-222222222222;Authorization=AAD',
    })).toMatchObject({ kind: 'azure-monitor', ingestionOrigin: 'https://westeurope-5.in.applicationinsights.azure.com', entra: { clientId: '22222222-2222-2222-2222-222222222222' } });
  });
});
