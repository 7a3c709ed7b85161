import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TokenCredential } from '@azure/identity';
import { loadPortalConfig, type Env } from '../config.js';
import { composePortal } from '../compose.js';
import { sameOriginRequest } from '../core/auth.js';
import { auditLine, parseForm, readCookie, type PortalResponse } from '../core/app.js';
import { html } from '../core/html.js';
import { layout } from '../core/pages.js';
import type { DeviceKeyStore, Principal, ProvisioningLookup } from '../core/ports.js';

/**
 * `npm run portal`: the portal on node:http with the development sign-in (named users from PORTAL_DEV_USERS_FILE, no
 * password). loadPortalConfig(env, 'local') refuses to start unless PORTAL_DEV_SIGN_IN=on and no Azure marker is set.
 * The Functions host never loads this file (the portal's own entry is portal/functions.ts).
 */
export interface LocalPortal {
  readonly url: string;
  readonly store: DeviceKeyStore;
  close(): Promise<void>;
}

export interface LocalPortalOptions {
  readonly env: Env;
  /** Default: PORTAL_PORT (7072); 0 picks a free port. */
  readonly port?: number;
  readonly host?: string;
  /** Audit and error lines; default stdout. */
  readonly log?: (line: string) => void;
  readonly provisioning?: ProvisioningLookup;
  /** Key Vault only. */
  readonly credential?: () => TokenCredential;
}

const MAX_FORM_BYTES = 16 * 1024;
const SESSION_COOKIE = 'portal-dev-user';

function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_FORM_BYTES) {
        resolve(undefined);
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(size > MAX_FORM_BYTES ? undefined : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, answer: PortalResponse): void {
  res.writeHead(answer.status, { ...answer.headers, ...(answer.cookies.length > 0 && { 'set-cookie': [...answer.cookies] }), 'content-length': Buffer.byteLength(answer.body) });
  res.end(answer.body);
}

export async function startLocalPortal(options: LocalPortalOptions): Promise<LocalPortal> {
  const config = loadPortalConfig(options.env, 'local');
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const base = config.basePath;
  const users = new Map((config.devUsers ?? []).map((u) => [u.name, u]));
  const sessions = new Map<string, Principal>();
  const { handler, store } = composePortal(config, {
    log,
    signInUrl: `${base}/signin`,
    signOut: { url: `${base}/signout`, post: true },
    secureCookies: false,
    ...(options.provisioning !== undefined && { provisioning: options.provisioning }),
    ...(options.credential !== undefined && { credential: options.credential }),
  });

  const signInPage = (status: number, message?: string): PortalResponse => ({
    status,
    headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-security-policy': "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'" },
    cookies: [],
    body: layout(
      { base },
      'Sign in',
      html`<h1>Development sign-in</h1>
<p>Local only: pick a user from ${'PORTAL_DEV_USERS_FILE'}. In Azure, Microsoft Entra ID signs users in.</p>
${message !== undefined ? html`<p class="error" id="error" role="alert">${message}</p>` : ''}
<form method="post" action="${base}/signin" id="signin"><div class="field"><label for="user">User</label><select id="user" name="user">${[...users.keys()].map((n) => html`<option>${n}</option>`)}</select></div>
<button class="primary" type="submit">Sign in</button></form>`,
    ),
  });

  const server = createServer((req, res) => {
    void (async () => {
      const host = req.headers.host ?? 'localhost';
      const origin = `http://${host}`;
      const url = new URL(req.url ?? '/', origin);
      const path = url.pathname.startsWith(base) ? url.pathname.slice(base.length) || '/' : undefined;
      if (path === undefined) return send(res, { status: 404, headers: { 'content-type': 'text/plain' }, cookies: [], body: 'not found' });
      const method = req.method ?? 'GET';
      let form: Record<string, string> = {};
      if (method === 'POST') {
        const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
        if (type !== 'application/x-www-form-urlencoded') return send(res, { status: 415, headers: { 'content-type': 'text/plain' }, cookies: [], body: 'forms only (application/x-www-form-urlencoded)' });
        const body = await readBody(req);
        if (body === undefined) return send(res, { status: 413, headers: { 'content-type': 'text/plain' }, cookies: [], body: 'form too large' });
        form = parseForm(body);
      }
      const secFetchSite = req.headers['sec-fetch-site'] as string | undefined;
      const originHeader = req.headers.origin;
      const sameOrigin = sameOriginRequest({ ...(secFetchSite !== undefined && { secFetchSite }), ...(originHeader !== undefined && { origin: originHeader }) }, origin);

      if (path === '/signin') {
        if (method === 'GET') return send(res, signInPage(200));
        if (method !== 'POST') return send(res, { status: 405, headers: { allow: 'GET, POST' }, cookies: [], body: '' });
        // Login CSRF: a cross-site page must not sign the browser in as someone else.
        if (!sameOrigin) return send(res, signInPage(403, 'Sign-in refused: the form did not come from this portal.'));
        const user = users.get(form.user ?? '');
        if (user === undefined) {
          log(auditLine({ who: '(unknown)', action: 'sign-in', outcome: 'unknown_user' }));
          return send(res, signInPage(401, 'No such user in the development users file.'));
        }
        const sid = randomBytes(24).toString('base64url');
        sessions.set(sid, { id: user.name, name: user.name, roles: user.roles });
        log(auditLine({ who: user.name, action: 'sign-in', outcome: 'signed_in' }));
        return send(res, { status: 303, headers: { location: `${base}/devices` }, cookies: [`${SESSION_COOKIE}=${sid}; Path=/; HttpOnly; SameSite=Strict`], body: '' });
      }
      const sid = readCookie(req.headers.cookie, SESSION_COOKIE);
      const principal = sid !== undefined ? sessions.get(sid) : undefined;
      if (path === '/signout' && method === 'POST') {
        if (!sameOrigin) return send(res, { status: 403, headers: { 'content-type': 'text/plain' }, cookies: [], body: 'cross-site sign-out refused' });
        if (sid !== undefined) sessions.delete(sid);
        if (principal !== undefined) log(auditLine({ who: principal.name, action: 'sign-out', outcome: 'signed_out' }));
        return send(res, { status: 303, headers: { location: `${base}/signin` }, cookies: [`${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`], body: '' });
      }
      const headers: Record<string, string | undefined> = {};
      for (const name of ['cookie', 'origin', 'sec-fetch-site']) {
        const v = req.headers[name];
        if (typeof v === 'string') headers[name] = v;
      }
      send(res, await handler({ method, path, query: url.searchParams, headers, form, principal, origin }));
    })().catch((error: unknown) => {
      log(JSON.stringify({ event: 'portal_error', error: error instanceof Error ? error.name : typeof error }));
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('internal error');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? config.localPort, options.host ?? '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://localhost:${port}${base}`,
    store,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
