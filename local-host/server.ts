import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { createWebhook, type Webhook, type WebhookOverrides } from '../functions/app/compose.js';
import { readStreamWithLimit } from '../functions/app/body.js';
import { loadConfig, loadLocalHostConfig, type Env } from '../functions/config.js';
import { MAX_REQUEST_BYTES } from '../functions/core/policy.js';
import { REASONS } from '../functions/core/reasons.js';

/**
 * The local stand-in for the Functions host (`npm start`): node:http -> the same webhook the v4 trigger calls, on
 * Core Tools' default port and route, with the function-key check a deployed app has when a key is configured.
 * The Functions host never loads this file (package.json `main` names only the trigger).
 */
export interface LocalHost {
  readonly url: string;
  readonly port: number;
  readonly webhook: Webhook;
  readonly limits: LocalHostLimits;
  close(): Promise<void>;
}

/**
 * What one caller may hold of the server. Node's defaults (60 s for headers, 300 s per request, unlimited
 * connections) let a slow or idle client hold a socket for minutes; DPS sends a few KB and waits a few seconds.
 */
export interface LocalHostLimits {
  /** Headers must be complete within this (then 408 and close). */
  readonly headersTimeoutMs: number;
  /** The whole request, body included, must arrive within this (then 408 and close). */
  readonly requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  readonly keepAliveTimeoutMs: number;
  /** Connections over this are closed on accept. */
  readonly maxConnections: number;
  /**
   * After a 413 the rest of the body is read and thrown away for at most this long and this many bytes, then the
   * connection is closed: closing with unread data makes TCP reset the connection, and a client that writes its
   * whole body before reading would lose the 413 (nginx's lingering_time / Apache's lingering close do the same).
   */
  readonly lingerMs: number;
  readonly lingerBytes: number;
}

export const DEFAULT_LIMITS: LocalHostLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 256,
  lingerMs: 5_000,
  lingerBytes: 64 * 1024 * 1024,
};

export interface LocalHostOptions {
  readonly env: Env;
  /** Overrides PORT from env; 0 picks a free port. */
  readonly port?: number;
  readonly host?: string;
  /** One line per decision; defaults to stdout. */
  readonly log?: (line: string) => void;
  readonly overrides?: WebhookOverrides;
  /** Tests shorten these; `npm start` uses DEFAULT_LIMITS. */
  readonly limits?: Partial<LocalHostLimits>;
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

/** The request target's path and query, or undefined when Node's URL parser refuses it (e.g. `//x:99999/`). */
function parseTarget(target: string | undefined): URL | undefined {
  try {
    return new URL(target ?? '/', 'http://localhost');
  } catch {
    return undefined;
  }
}

/** The class name of anything thrown: never its message, which may quote input (a URL with ?code=, a token). */
export function errorClass(error: unknown): string {
  return error instanceof Error ? error.name : typeof error;
}

/**
 * Reads and discards the rest of a refused body, bounded by `limits.lingerMs` and `limits.lingerBytes`, then ends
 * the response (its head and body are already written, so a client reading concurrently has its answer at once).
 */
function lingerThenClose(req: IncomingMessage, res: ServerResponse, limits: LocalHostLimits): void {
  let discarded = 0;
  let done = false;
  const finish = (cut: boolean) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    req.off('data', count);
    res.end();
    if (cut) req.socket.destroy();
  };
  const count = (chunk: Buffer) => {
    discarded += chunk.byteLength;
    if (discarded > limits.lingerBytes) finish(true);
  };
  const timer = setTimeout(() => finish(true), limits.lingerMs);
  timer.unref();
  if (req.readableEnded) return finish(false);
  req.on('data', count);
  req.once('end', () => finish(false));
  req.once('error', () => finish(true));
  req.resume();
}

/**
 * Decision lines for stdout, gathered for up to FLUSH_MS (or LINES_BYTES) and written together rather than once
 * each: on Linux a write to stdout (file or pipe) is a synchronous system call, and one a decision was a measurable
 * share of its CPU under load (one a turn of the event loop still was at 1,500 decisions/s, a few a turn). Lines stay
 * whole and in order; what is gathered is written at close and when the process exits, whatever the reason.
 */
const FLUSH_MS = 10;
const LINES_BYTES = 64 * 1024;

function stdoutLines(): { log(line: string): void; flush(): void; close(): void } {
  let pending = '';
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (pending === '') return;
    const text = pending;
    pending = '';
    process.stdout.write(text);
  };
  let closed = false;
  process.on('exit', flush);
  return {
    log: (line) => {
      pending += `${line}\n`;
      // After close (a decision that was still in flight), at once: the exit hook is gone.
      if (closed || pending.length >= LINES_BYTES) flush();
      else if (timer === undefined) (timer = setTimeout(flush, FLUSH_MS)).unref();
    },
    flush,
    close: () => {
      closed = true;
      flush();
      process.off('exit', flush);
    },
  };
}

export async function startLocalHost(options: LocalHostOptions): Promise<LocalHost> {
  const config = loadConfig(options.env);
  const hostConfig = loadLocalHostConfig(options.env);
  const limits: LocalHostLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const stdout = options.log === undefined ? stdoutLines() : undefined;
  const log = options.log ?? stdout!.log;
  const webhook = await createWebhook(config, options.overrides);
  // The response in flight on each connection, so a client error after its head was written does not write another.
  const inFlight = new WeakMap<Duplex, ServerResponse>();

  function handle(req: IncomingMessage, res: ServerResponse): void {
    inFlight.set(req.socket, res);
    res.once('finish', () => inFlight.delete(req.socket));
    // DPS calls the route itself, with the key in a header: no URL to parse then (new URL is a few µs a request).
    const exact = req.url === ROUTE;
    const url = exact ? undefined : parseTarget(req.url);
    if (!exact && url === undefined) {
      // The target itself may carry ?code=: it is neither echoed nor logged.
      log(JSON.stringify({ event: 'validatejwt', outcome: 'malformed', code: 'request_invalid', status: 400 }));
      res.setHeader('connection', 'close');
      return send(res, 400, {}, { code: 'request_invalid', message: 'the request target is not a valid path' });
    }
    if (!exact && url!.pathname.toLowerCase() !== ROUTE) return send(res, 404, {}, { code: 'not_found', message: `the function is at POST ${ROUTE}` });
    if (req.method !== 'POST') return send(res, 405, { allow: 'POST' }, { code: 'method_not_allowed', message: 'use POST' });
    if (hostConfig.functionKey !== undefined) {
      const given = (exact ? null : url!.searchParams.get('code')) ?? req.headers['x-functions-key'];
      if (!keyMatches(typeof given === 'string' ? given : undefined, hostConfig.functionKey)) {
        log(JSON.stringify({ event: 'validatejwt', outcome: 'unauthorized', status: 401 }));
        return send(res, 401, {}, { code: 'unauthorized', message: 'a valid function key is required (?code= or x-functions-key)' });
      }
    }
    webhook
      .handle({
        contentType: req.headers['content-type'],
        // Paused, not destroyed, when reading stops at the limit: the rest is drained by lingerThenClose.
        body: () => readStreamWithLimit(req, req.headers['content-length'], MAX_REQUEST_BYTES),
      })
      .then((answer) => {
        // Serialized before anything is logged or sent, so the log line states the status that was really sent.
        let text: string;
        let line: Record<string, unknown> | undefined;
        let status = answer.status;
        let headers: Record<string, string> = answer.headers;
        try {
          text = JSON.stringify(answer.body);
        } catch (error) {
          status = 500;
          headers = { 'content-type': 'application/json; charset=utf-8' };
          text = JSON.stringify({ code: 'internal_error', message: REASONS.internal_error.summary });
          line = { event: 'validatejwt', ...answer.log, outcome: 'error', code: 'internal_error', status, error: errorClass(error) };
        }
        if (req.socket.destroyed) line = { ...(line ?? { event: 'validatejwt', ...answer.log }), delivered: false };
        // The usual line, without copying the decision's log into a new object: the same text, "event" first.
        const decision = line === undefined ? JSON.stringify(answer.log) : '';
        log(line !== undefined ? JSON.stringify(line) : decision === '{}' ? '{"event":"validatejwt"}' : `{"event":"validatejwt",${decision.slice(1)}`);
        // The answer's own headers object, completed in place (the webhook made it for this answer alone).
        const head = headers;
        head['content-type'] = 'application/json; charset=utf-8';
        head['content-length'] = String(Buffer.byteLength(text));
        if (status === 413) {
          res.writeHead(status, { ...head, connection: 'close' });
          res.write(text);
          lingerThenClose(req, res, limits);
        } else {
          res.writeHead(status, head);
          res.end(text);
        }
      })
      .catch((error: unknown) => lastResort(res, error));
  }

  /** Anything the handler did not expect: a generic 500, logged by class name only; the server keeps serving. */
  function lastResort(res: ServerResponse, error: unknown): void {
    log(JSON.stringify({ event: 'validatejwt', outcome: 'error', code: 'internal_error', status: 500, error: errorClass(error) }));
    if (res.headersSent) {
      res.destroy();
      return;
    }
    try {
      res.setHeader('connection', 'close');
      send(res, 500, {}, { code: 'internal_error', message: REASONS.internal_error.summary });
    } catch {
      res.destroy();
    }
  }

  const server = createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      // Node checks the two timeouts above on this interval (30 s by default, which would let them overrun).
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
    },
    (req, res) => {
      try {
        handle(req, res);
      } catch (error) {
        lastResort(res, error);
      }
    },
  );
  server.maxConnections = limits.maxConnections;

  // Requests Node's HTTP parser refuses, header and request timeouts, resets: answered here, with a JSON body,
  // instead of Node's default; the error's class name is all that is logged (its rawPacket may hold ?code=).
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    const code = error.code;
    // The caller went away (reset, or closed mid-message): nobody to answer. A request being handled is logged by
    // its own decision (request_incomplete).
    const gone = code === 'ECONNRESET' || code === 'EPIPE' || code === 'HPE_INVALID_EOF_STATE';
    if (gone || !socket.writable || inFlight.get(socket)?.headersSent === true) {
      socket.destroy();
      return;
    }
    const [status, reason, message] =
      code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'request_timeout', 'the request did not arrive in time']
      : code === 'HPE_HEADER_OVERFLOW' ? [431, 'request_invalid', 'the request headers are too large']
      : [400, 'request_invalid', 'the request is not valid HTTP/1.1'];
    log(JSON.stringify({ event: 'validatejwt', outcome: 'malformed', code: reason, status, error: errorClass(error) }));
    const text = JSON.stringify({ code: reason, message });
    socket.end(
      `HTTP/1.1 ${status} ${status === 408 ? 'Request Timeout' : status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n` +
        `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
    );
    // end() flushes then closes; a peer that never reads is cut off with the request timeout's own bound.
    setTimeout(() => socket.destroy(), limits.lingerMs).unref();
  });

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
    limits,
    close: async () => {
      stdout?.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await webhook.close();
    },
  };
}

