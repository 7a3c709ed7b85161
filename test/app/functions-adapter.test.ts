import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { HttpRequest, InvocationContext, type HttpResponseInit } from '@azure/functions';
import { afterEach, beforeAll, describe, expect, test } from 'vitest';
import { createWebhook, startWebhook } from '../../functions/app/compose.js';
import { toFunctionsHandler } from '../../functions/app/functions-adapter.js';
import { loadConfig } from '../../functions/config.js';
import { MAX_REQUEST_BYTES } from '../../functions/core/policy.js';
import { allocationRequest, deviceToken, HUBS, ID_SCOPE, keysDir, makeDevice, type TestDevice } from '../support/devices.js';

const URL_ = 'http://localhost:7071/api/validatejwt';
type Handler = ReturnType<typeof toFunctionsHandler>;

// The bundle is what ships (package.json main, dist/app.zip): its handler runs the same tests as the source's.
// It reads its settings from process.env when loaded, as in the Functions host.
const BUNDLE = resolve(import.meta.dirname, '..', '..', 'dist', 'bundle', 'validatejwt.js');

async function bundledHandler(env: Record<string, string>): Promise<Handler> {
  if (!existsSync(BUNDLE)) throw new Error('dist/bundle/validatejwt.js is missing: run `npm run build` first (npm test does)');
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    return ((await import(pathToFileURL(BUNDLE).href)) as { validateJwt: Handler }).validateJwt;
  } finally {
    for (const name of Object.keys(env)) if (!(name in saved)) delete process.env[name];
    Object.assign(process.env, saved);
  }
}

let device: TestDevice;
let dir: string;
const handlers: Record<'source' | 'bundle', Handler | undefined> = { source: undefined, bundle: undefined };

beforeAll(async () => {
  device = await makeDevice('sensor-7');
  dir = await keysDir([device]);
  const env = { DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: ID_SCOPE };
  handlers.source = toFunctionsHandler(createWebhook(loadConfig(env)));
  handlers.bundle = await bundledHandler(env);
});

function context(lines: Array<{ level: string; text: string }>) {
  return new InvocationContext({
    functionName: 'validatejwt',
    logHandler: (level, ...args) => lines.push({ level, text: args.map(String).join(' ') }),
  });
}

function invokeWith(using: Handler, body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) {
  const lines: Array<{ level: string; text: string }> = [];
  const request = new HttpRequest({ method: 'POST', url: URL_, headers, body: { string: body } });
  return using(request, context(lines)).then((response) => ({ response, lines }));
}

const json = (response: HttpResponseInit) => JSON.parse(String(response.body)) as Record<string, unknown>;

/**
 * A request whose body is a stream, as the library builds it when HTTP streams are on (createStreamRequest in
 * src/http/HttpRequest.ts: a fetch Request over the proxied body, duplex 'half'). The public HttpRequestInit has only
 * string and bytes bodies, so the same internal `nativeRequest` init is used here.
 */
function streamedRequest(stream: ReadableStream<Uint8Array>, headers: Record<string, string> = { 'content-type': 'application/json' }): HttpRequest {
  const nativeRequest = new Request(URL_, { method: 'POST', headers, body: stream, duplex: 'half' } as RequestInit);
  return new HttpRequest({ nativeRequest } as never);
}

describe.each(['source', 'bundle'] as const)('the v4 trigger adapter (%s)', (build) => {
  const invoke = (body: string, headers?: Record<string, string>) => invokeWith(handlers[build]!, body, headers);

  test('answers 200 with the DPS shape and logs one structured line without the token', async () => {
    const token = await deviceToken(device, Math.floor(Date.now() / 1000));
    const { response, lines } = await invoke(JSON.stringify(allocationRequest({ registrationId: device.id, token })));
    expect(response.status).toBe(200);
    expect(response.headers).toMatchObject({ 'content-type': 'application/json; charset=utf-8' });
    expect(HUBS).toContain(json(response).iotHubHostName);
    expect(lines).toHaveLength(1);
    expect(lines[0]!.level).toBe('information');
    expect(JSON.parse(lines[0]!.text)).toMatchObject({ event: 'validatejwt', registrationId: device.id, outcome: 'assigned', status: 200 });
    for (const segment of token.split('.')) expect(lines[0]!.text).not.toContain(segment);
  });

  test('a refusal is a 403 logged as a warning with its code', async () => {
    const { response, lines } = await invoke(JSON.stringify(allocationRequest({ registrationId: device.id, token: 'e30.e30.AAAA' })));
    expect(response.status).toBe(403);
    expect(json(response)).toMatchObject({ code: 'token_algorithm_not_allowed' });
    expect(lines.map((l) => l.level)).toEqual(['warning']);
  });

  test('a body over the limit is refused with 413 by its declared length', async () => {
    const { response } = await invoke('{}', { 'content-type': 'application/json', 'content-length': String(1024 * 1024) });
    expect(response.status).toBe(413);
    expect(json(response)).toMatchObject({ code: 'request_too_large' });
  });

  test('a body over the limit without a declared length is cut off at the limit', async () => {
    const { response } = await invoke(' '.repeat(70 * 1024) + '{}');
    expect(response.status).toBe(413);
  });
});

describe.each(['source', 'bundle'] as const)('a streamed body (HTTP streams on, issue 11 item 5; %s)', (build) => {
  const handler: Handler = (request, ctx) => handlers[build]!(request, ctx);
  test('an endless stream is read only up to the limit, then cancelled and answered 413', async () => {
    let pulled = 0;
    let cancelled = false;
    const chunk = new Uint8Array(16 * 1024).fill(0x20);
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled += chunk.byteLength;
        controller.enqueue(chunk);
      },
      cancel() {
        cancelled = true;
      },
    }, { highWaterMark: 0 });
    const lines: Array<{ level: string; text: string }> = [];
    const response = await handler(streamedRequest(stream), context(lines));
    expect(response.status).toBe(413);
    expect(json(response)).toMatchObject({ code: 'request_too_large' });
    expect(cancelled).toBe(true);
    expect(pulled).toBeLessThanOrEqual(MAX_REQUEST_BYTES + 2 * chunk.byteLength);
    expect(JSON.parse(lines[0]!.text)).toMatchObject({ code: 'request_too_large', status: 413 });
  });

  test('a valid request streamed in small pieces is assigned', async () => {
    const token = await deviceToken(device, Math.floor(Date.now() / 1000));
    const bytes = new TextEncoder().encode(JSON.stringify(allocationRequest({ registrationId: device.id, token })));
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 100) controller.enqueue(bytes.slice(i, i + 100));
        controller.close();
      },
    });
    const response = await handler(streamedRequest(stream), context([]));
    expect(response.status).toBe(200);
  });

  test('a stream that breaks mid-body (the caller went away) is request_incomplete, not a 500', async () => {
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"deviceRuntimeContext":'));
        setTimeout(() => controller.error(new Error('aborted')), 10);
      },
    });
    const lines: Array<{ level: string; text: string }> = [];
    const response = await handler(streamedRequest(stream), context(lines));
    expect(response.status).toBe(400);
    expect(json(response)).toMatchObject({ code: 'request_incomplete' });
    expect(lines.map((l) => l.level)).toEqual(['warning']);
  });
});

describe('a fault at start (issue 11 item 5)', () => {
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown) => rejections.push(reason);
  process.on('unhandledRejection', onRejection);
  afterEach(() => expect(rejections).toEqual([]));

  async function started(env: Record<string, string>) {
    const reports: string[] = [];
    const started = toFunctionsHandler(startWebhook(env, { report: (line) => reports.push(line) }));
    return { handler: started, reports };
  }

  test('a ConfigError: one line names the setting; every request is 503 webhook_misconfigured, logged as an error', async () => {
    const { handler: misconfigured, reports } = await started({ DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: ID_SCOPE, JWT_ALGORITHMS: 'HS256' });
    const token = await deviceToken(device, Math.floor(Date.now() / 1000));
    for (let i = 0; i < 3; i++) {
      const { response, lines } = await invokeWith(misconfigured, JSON.stringify(allocationRequest({ registrationId: device.id, token })));
      expect(response.status).toBe(503);
      expect(response.headers).toMatchObject({ 'retry-after': '30' });
      expect(json(response)).toEqual({ code: 'webhook_misconfigured', message: "A setting of the webhook cannot work; its log names the setting." });
      expect(lines).toHaveLength(1);
      expect(lines[0]!.level).toBe('error');
      expect(JSON.parse(lines[0]!.text)).toMatchObject({ code: 'webhook_misconfigured', status: 503, setting: 'JWT_ALGORITHMS' });
    }
    expect(reports).toHaveLength(1);
    expect(JSON.parse(reports[0]!)).toMatchObject({ code: 'webhook_misconfigured', setting: 'JWT_ALGORITHMS' });
    expect(reports[0]).toContain('HS256');
  });

  test('a setting that parses but cannot work (a replay table connection string the SDK refuses) names it, never quoting it', async () => {
    const secretish = 'AccountName=devstoreaccount1;AccountKey=bm90LWEtcmVhbC1rZXktYnV0LWxvb2tzLWxpa2Utb25l;Garbage';
    const { handler: misconfigured, reports } = await started({ DEVICE_KEYS_DIR: dir, DPS_ID_SCOPE: ID_SCOPE, REPLAY_STORE: 'table', REPLAY_TABLE_CONNECTION: secretish });
    const { response, lines } = await invokeWith(misconfigured, '{}');
    expect(response.status).toBe(503);
    expect(JSON.parse(lines[0]!.text)).toMatchObject({ code: 'webhook_misconfigured', setting: 'REPLAY_TABLE_CONNECTION' });
    expect(reports).toHaveLength(1);
    expect(JSON.parse(reports[0]!)).toMatchObject({ setting: 'REPLAY_TABLE_CONNECTION' });
    for (const text of [...reports, ...lines.map((l) => l.text), String(response.body)]) expect(text).not.toContain('bm90LWEtcmVhbC1rZXkt');
  });
});
