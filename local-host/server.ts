import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createWebhook, type Webhook, type WebhookOverrides } from '../functions/app/compose.js';
import { readStreamWithLimit } from '../functions/app/body.js';
import { loadConfig, loadLocalHostConfig, type Env } from '../functions/config.js';
import { MAX_REQUEST_BYTES } from '../functions/core/policy.js';

/**
 * The local stand-in for the Functions host (`npm start`): node:http -> the same webhook the v4 trigger calls, on
 * Core Tools' default port and route, with the function-key check a deployed app has when a key is configured.
 * The Functions host never loads this file (package.json `main` names only the trigger).
 */
export interface LocalHost {
  readonly url: string;
  readonly port: number;
  readonly webhook: Webhook;
  close(): Promise<void>;
}

export interface LocalHostOptions {
  readonly env: Env;
  /** Overrides PORT from env; 0 picks a free port. */
  readonly port?: number;
  readonly host?: string;
  /** One line per decision; defaults to stdout. */
  readonly log?: (line: string) => void;
  readonly overrides?: WebhookOverrides;
}

export const ROUTE = '/api/validatejwt';

function keyMatches(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  // Compare digests so the comparison is constant-time whatever the lengths.
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

function send(res: ServerResponse, status: number, headers: Record<string, string>, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Decision lines for stdout, written once per turn of the event loop for all the decisions of that turn rather than
 * once each: on Linux a write to stdout (file or pipe) is a synchronous system call, a measurable share of a
 * decision's CPU under load.
 */
function stdoutLines(): { log(line: string): void; flush(): void } {
  let pending = '';
  const flush = () => {
    if (pending === '') return;
    const text = pending;
    pending = '';
    process.stdout.write(text);
  };
  return {
    log: (line) => {
      if (pending === '') setImmediate(flush);
      pending += `${line}\n`;
    },
    flush,
  };
}

export async function startLocalHost(options: LocalHostOptions): Promise<LocalHost> {
  const config = loadConfig(options.env);
  const hostConfig = loadLocalHostConfig(options.env);
  const stdout = options.log === undefined ? stdoutLines() : undefined;
  const log = options.log ?? stdout!.log;
  const webhook = await createWebhook(config, options.overrides);

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname.toLowerCase() !== ROUTE) return send(res, 404, {}, { code: 'not_found', message: `the function is at POST ${ROUTE}` });
    if (req.method !== 'POST') return send(res, 405, { allow: 'POST' }, { code: 'method_not_allowed', message: 'use POST' });
    if (hostConfig.functionKey !== undefined) {
      const given = url.searchParams.get('code') ?? req.headers['x-functions-key'];
      if (!keyMatches(typeof given === 'string' ? given : undefined, hostConfig.functionKey)) {
        log(JSON.stringify({ event: 'validatejwt', outcome: 'unauthorized', status: 401 }));
        return send(res, 401, {}, { code: 'unauthorized', message: 'a valid function key is required (?code= or x-functions-key)' });
      }
    }
    webhook
      .handle({
        contentType: req.headers['content-type'],
        body: () => readStreamWithLimit(req, req.headers['content-length'], MAX_REQUEST_BYTES),
      })
      .then((answer) => {
        log(JSON.stringify({ event: 'validatejwt', ...answer.log }));
        // An oversized body is refused before it is read: close the connection rather than drain it.
        if (answer.status === 413) res.setHeader('connection', 'close');
        send(res, answer.status, answer.headers, answer.body);
      })
      .catch(() => send(res, 500, {}, { code: 'internal_error', message: 'An unexpected fault in the webhook.' }));
  });
  server.keepAliveTimeout = 65_000;

  const port = options.port ?? hostConfig.port;
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${bound}${ROUTE}`,
    port: bound,
    webhook,
    close: async () => {
      stdout?.flush();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await webhook.close();
    },
  };
}
