/**
 * The DPS device API over HTTPS (dps-protocol §3): translate requests into RegistrationService calls and its
 * answers back. Every answer is JSON with `content-type: application/json; charset=utf-8` (the Node SDK ignores a
 * body without it).
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { DPS_ERRORS, errorBody, type DpsErrorKind } from '../protocol/errors.js';
import { INVALID_JSON, type DpsAnswer, type RegistrationService } from '../protocol/service.js';
import type { TlsMaterial } from '../tls.js';

const MAX_BODY_BYTES = 64 * 1024;

export function createHttpsDeviceServer(service: RegistrationService, tls: TlsMaterial): Server {
  const server = createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    handle(service, req, res).catch(() => {
      if (!res.headersSent) send(res, errorAnswer('internal', 'Internal error.'));
      else res.destroy();
    });
  });
  return server;
}

async function handle(service: RegistrationService, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'https://local-dps');
  // /{idScope}/registrations/{registrationId}/register  or  .../operations/{operationId}
  const parts = url.pathname.split('/');
  const register = parts.length === 5 && parts[2] === 'registrations' && parts[4] === 'register';
  const operation = parts.length === 6 && parts[2] === 'registrations' && parts[4] === 'operations';
  if (parts[0] !== '' || (!register && !operation)) return send(res, errorAnswer('notFound', 'No such DPS device API path.'));
  if ((register && req.method !== 'PUT') || (operation && req.method !== 'GET')) {
    res.setHeader('allow', register ? 'PUT' : 'GET');
    return send(res, errorAnswer('methodNotAllowed', `${req.method} is not allowed here.`));
  }
  if (!url.searchParams.get('api-version')) {
    return send(res, errorAnswer('badRequest', 'The api-version query parameter is required (e.g. 2019-03-31).'));
  }
  let idScope: string;
  let registrationId: string;
  let operationId = '';
  try {
    idScope = decodeURIComponent(parts[1]!);
    registrationId = decodeURIComponent(parts[3]!);
    if (operation) operationId = decodeURIComponent(parts[5]!);
  } catch {
    return send(res, errorAnswer('badRequest', 'The path has bad percent-encoding.'));
  }

  const raw = await readBody(req);
  if (raw === undefined) return send(res, errorAnswer('tooLarge', `The request body is over ${MAX_BODY_BYTES} bytes.`));
  const deviceRequest = { transport: 'https' as const, idScope, registrationId, sas: headerValue(req.headers.authorization) };

  if (operation) return send(res, service.operationStatus(deviceRequest, operationId));

  let body: unknown;
  try {
    body = raw.length === 0 ? undefined : JSON.parse(raw);
  } catch {
    body = INVALID_JSON;
  }
  send(res, service.register(deviceRequest, body));
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** The body as text, or undefined when it is over the limit. */
async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function errorAnswer(kind: DpsErrorKind, message: string): DpsAnswer {
  return { status: DPS_ERRORS[kind].status, body: errorBody(kind, message) };
}

function send(res: ServerResponse, answer: DpsAnswer): void {
  const text = JSON.stringify(answer.body);
  res.statusCode = answer.status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(text));
  if (answer.retryAfterSeconds !== undefined) res.setHeader('retry-after', String(answer.retryAfterSeconds));
  res.end(text);
}
