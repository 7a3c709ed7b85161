import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postWebhook } from '../../dps-emulator/webhook.js';
import { closedPort } from '../support/ports.js';

const body = { deviceRuntimeContext: { registrationId: 'd', symmetricKey: {} }, linkedHubs: ['h'] };
const never = new AbortController().signal;
let base: string;
const server = createServer((req, res) => {
  if (req.url?.startsWith('/hang')) return; // never answers
  if (req.url?.startsWith('/redirect')) {
    res.writeHead(302, { location: 'http://example.com/' });
    return res.end();
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ iotHubHostName: 'h' }));
});

beforeAll(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => {
  server.closeAllConnections();
  server.close();
});

describe('webhook call', () => {
  it('returns the status and body of an answer', async () => {
    expect(await postWebhook(`${base}/ok?code=k`, body, 2000, never)).toEqual({ kind: 'response', status: 200, body: '{"iotHubHostName":"h"}' });
  });

  it('gives up after the time limit: counted as no answer', async () => {
    const started = Date.now();
    expect(await postWebhook(`${base}/hang`, body, 150, never)).toEqual({ kind: 'network', reason: 'no answer within 150 ms' });
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('does not follow a redirect (it could lead off loopback)', async () => {
    expect(await postWebhook(`${base}/redirect`, body, 2000, never)).toMatchObject({ kind: 'response', status: 302 });
  });

  it('reports a refused connection by its code, without the URL', async () => {
    const port = await closedPort();
    expect(await postWebhook(`http://127.0.0.1:${port}/x?code=SECRET`, body, 2000, never)).toEqual({ kind: 'network', reason: 'ECONNREFUSED' });
  });
});
