import { isRegistrationId } from '../../functions/core/request.js';
import { csrfToken, csrfTokenValid, sameOriginRequest } from './auth.js';
import { validateForm, type FieldConfig } from './fields.js';
import { devicePage, devicesPage, messagePage, revokePage, STYLESHEET, type PageContext } from './pages.js';
import type { AuditEntry, DeviceKeyState, DeviceKeyStore, Principal, ProvisioningLookup } from './ports.js';

/** The request as every adapter hands it over: already authenticated (or not) by the adapter's own means. */
export interface PortalRequest {
  readonly method: string;
  /** Path below the portal's base, starting with '/'. */
  readonly path: string;
  readonly query: URLSearchParams;
  /** Lower-case header names. */
  readonly headers: Readonly<Record<string, string | undefined>>;
  /** The urlencoded form of a POST (parsed by the adapter); empty for GET. */
  readonly form: Readonly<Record<string, string>>;
  readonly principal: Principal | undefined;
  /** scheme://host[:port] the browser used, for the Origin check. */
  readonly origin: string;
}

export interface PortalResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly cookies: readonly string[];
  readonly body: string;
}

export interface PortalOptions {
  readonly store: DeviceKeyStore;
  readonly fields: FieldConfig;
  /** App role a user needs (Entra app role, or listed for the dev user). */
  readonly requiredRole: string;
  /** HMAC key for CSRF tokens; at least 32 bytes. */
  readonly csrfSecret: Uint8Array;
  /** URL path prefix the portal is served under ('' at the root). */
  readonly base: string;
  /** Secure + __Host- cookie (HTTPS in Azure); off only for the local http host. */
  readonly secureCookies: boolean;
  readonly signInUrl: string;
  readonly signOut?: { readonly url: string; readonly post: boolean };
  readonly audit: (entry: AuditEntry) => void;
  readonly provisioning?: ProvisioningLookup;
  readonly randomNonce: () => string;
  /** A store fault (the page says only "unavailable"); gets the error for the operator's log. */
  readonly onError?: (error: unknown) => void;
}

export type PortalHandler = (request: PortalRequest) => Promise<PortalResponse>;

/** DPS registration ids: up to 128 of alphanumerics and - . _ : (DPS device API). */

const SECURITY_HEADERS: Record<string, string> = {
  // No script at all; styles only from our own stylesheet; forms post only back here; never framed.
  'content-security-policy': "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
};

/** One promise chain per device id: two activations of one device in this process run one after the other. */
function keyedSerializer() {
  const tails = new Map<string, Promise<unknown>>();
  return async <T>(key: string, fn: () => Promise<T>): Promise<T> => {
    const previous = tails.get(key) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    const tail = run.catch(() => undefined);
    tails.set(key, tail);
    try {
      return await run;
    } finally {
      if (tails.get(key) === tail) tails.delete(key);
    }
  };
}

export function createPortal(options: PortalOptions): PortalHandler {
  if (options.csrfSecret.length < 32) throw new TypeError('the CSRF secret must be at least 32 bytes');
  const { store, fields, base } = options;
  const serialize = keyedSerializer();
  const cookieName = options.secureCookies ? '__Host-portal-session' : 'portal-session';

  const handle: PortalHandler = async (req) => {
    const cookies: string[] = [];
    let nonce = readCookie(req.headers.cookie, cookieName);
    if (nonce === undefined || !/^[A-Za-z0-9_-]{16,128}$/.test(nonce)) {
      nonce = options.randomNonce();
      cookies.push(`${cookieName}=${nonce}; Path=/; HttpOnly; SameSite=Strict${options.secureCookies ? '; Secure' : ''}`);
    }
    const page = (status: number, body: string, extra: Record<string, string> = {}): PortalResponse => ({
      status,
      headers: { ...SECURITY_HEADERS, 'content-type': 'text/html; charset=utf-8', ...extra },
      cookies,
      body,
    });
    const redirect = (location: string): PortalResponse => ({ status: 303, headers: { ...SECURITY_HEADERS, location }, cookies, body: '' });

    if (req.method === 'GET' && req.path === '/portal.css') {
      return { status: 200, headers: { 'content-type': 'text/css; charset=utf-8', 'cache-control': 'max-age=300', 'x-content-type-options': 'nosniff' }, cookies: [], body: STYLESHEET };
    }
    if (req.method !== 'GET' && req.method !== 'POST') return page(405, messagePage({ base }, 'Method not allowed', 'Use the links and forms on the pages.'), { allow: 'GET, POST' });

    const principal = req.principal;
    if (principal === undefined) {
      return page(401, messagePage({ base }, 'Sign-in required', 'You are not signed in.', { href: options.signInUrl, text: 'Sign in' }));
    }
    const ctx: PageContext = { base, principal, csrf: csrfToken(options.csrfSecret, nonce, principal.id), ...(options.signOut !== undefined && { signOut: options.signOut }) };
    if (!principal.roles.includes(options.requiredRole)) {
      if (req.method === 'POST') options.audit({ who: principal.name, action: actionOf(req.path), ...deviceOf(req.path), outcome: 'forbidden_no_role' });
      return page(403, messagePage(ctx, 'Not allowed', `Your account lacks the app role ${options.requiredRole}; ask the portal's administrator for it.`));
    }

    const segments = req.path.split('/').filter((s) => s !== '');
    if (segments.length === 0) return redirect(`${base}/devices`);
    if (segments[0] !== 'devices' || segments.length > 3) return page(404, messagePage(ctx, 'Not found', 'There is no such page.', { href: `${base}/devices`, text: 'Devices awaiting activation' }));

    if (segments.length === 1) {
      if (req.method !== 'GET') return page(405, messagePage(ctx, 'Method not allowed', 'Use the search form.'), { allow: 'GET' });
      const query = (req.query.get('q') ?? '').trim().slice(0, 128);
      const disabled = await store.listDisabled();
      const needle = query.toLowerCase();
      const matching = disabled.filter((d) => d.id.toLowerCase().includes(needle)).sort((a, b) => a.id.localeCompare(b.id));
      const exact = query !== '' && isRegistrationId(query) ? await store.get(query) : undefined;
      return page(200, devicesPage(ctx, matching, query, exact));
    }

    let id: string;
    try {
      id = decodeURIComponent(segments[1] ?? '');
    } catch {
      id = '';
    }
    if (!isRegistrationId(id)) {
      return page(400, messagePage(ctx, 'Not a device id', 'A device id is 1-128 letters, digits, "-", ".", "_" or ":".', { href: `${base}/devices`, text: 'Devices awaiting activation' }));
    }
    const action = segments[2];
    const unknown = () => page(404, messagePage(ctx, 'Unknown device', `No device key is registered for ${id}. Check the id on the device's label.`, { href: `${base}/devices`, text: 'Devices awaiting activation' }));
    const provisioning = async (device: DeviceKeyState) => (options.provisioning !== undefined ? await options.provisioning(device.id) : undefined);
    const showDevice = async (status: number, device: DeviceKeyState, extra: Partial<Parameters<typeof devicePage>[1]> = {}) => {
      const record = await provisioning(device);
      return page(status, devicePage(ctx, { device, fields, ...(record !== undefined && { provisioning: record }), ...extra }));
    };

    if (req.method === 'GET') {
      if (action !== undefined && action !== 'revoke') return page(405, messagePage(ctx, 'Method not allowed', 'Use the form on the device page.'), { allow: 'POST' });
      const device = await store.get(id);
      if (device === undefined) return unknown();
      if (action === 'revoke') {
        if (!device.enabled) return showDevice(409, device, { error: `${device.id} is not active; there is nothing to revoke.` });
        return page(200, revokePage(ctx, device));
      }
      const done = req.query.get('done');
      const notice = done === 'activated' ? `${device.id} is activated.` : done === 'revoked' ? `${device.id} is revoked.` : undefined;
      return showDevice(200, device, notice !== undefined ? { notice } : {});
    }

    // POST: a state change. The browser's origin signals and the session-bound token must both agree.
    if (action !== 'activate' && action !== 'revoke') return page(404, messagePage(ctx, 'Not found', 'There is no such action.'));
    const who = principal.name;
    const sameOrigin = sameOriginRequest(
      { ...(req.headers['sec-fetch-site'] !== undefined && { secFetchSite: req.headers['sec-fetch-site'] }), ...(req.headers.origin !== undefined && { origin: req.headers.origin }) },
      req.origin,
    );
    if (!sameOrigin || !csrfTokenValid(options.csrfSecret, readCookie(req.headers.cookie, cookieName), principal.id, req.form._csrf)) {
      options.audit({ who, action, device: id, outcome: sameOrigin ? 'refused_csrf_token' : 'refused_cross_site' });
      return page(403, messagePage(ctx, 'Request refused', 'This form did not come from this portal in your current session. Open the page again and resubmit.', { href: `${base}/devices/${encodeURIComponent(id)}`, text: `Back to ${id}` }));
    }

    return serialize(id.toLowerCase(), async () => {
      const device = await store.get(id);
      if (device === undefined) {
        options.audit({ who, action, device: id, outcome: 'unknown_device' });
        return unknown();
      }
      const audit = (outcome: string) => options.audit({ who, action, device: device.id, outcome });
      if (action === 'revoke') {
        if (req.form.confirm !== 'yes') {
          audit('not_confirmed');
          return page(400, revokePage(ctx, device, 'Confirm the revocation with the button below.'));
        }
        if (!device.enabled) {
          audit('already_disabled');
          return showDevice(409, device, { error: `${device.id} is not active; there is nothing to revoke.` });
        }
        if (req.form._version !== device.version) {
          audit('stale_form');
          return showDevice(409, device, { error: `${device.id} changed since the confirmation was opened; nothing was changed.` });
        }
        const result = await store.update(device.id, device.version, { enabled: false, tags: device.tags });
        audit(result === 'updated' ? 'revoked' : result);
        if (result === 'updated') return redirect(`${base}/devices/${encodeURIComponent(device.id)}?done=revoked`);
        return conflictOrUnknown(result, device);
      }

      if (device.enabled) {
        audit('already_active');
        return showDevice(409, device, { error: `${device.id} is already active; nothing was changed. Revoke it first to change its metadata.` });
      }
      const outcome = validateForm(fields, req.form, device.tags);
      if (!outcome.ok) {
        audit(`invalid_fields:${Object.keys(outcome.errors).join(',') || 'limits'}`);
        return showDevice(400, device, { values: outcome.values, errors: outcome.errors, error: 'Nothing was changed: correct the fields marked below.' });
      }
      if (req.form._version !== device.version) {
        audit('stale_form');
        return showDevice(409, device, { values: outcome.values, error: `${device.id} changed since this page was opened; nothing was changed. Review and submit again.` });
      }
      const result = await store.update(device.id, device.version, { enabled: true, tags: outcome.tags });
      audit(result === 'updated' ? 'activated' : result);
      if (result === 'updated') return redirect(`${base}/devices/${encodeURIComponent(device.id)}?done=activated`);
      return conflictOrUnknown(result, device);
    });

    async function conflictOrUnknown(result: 'conflict' | 'not_found', device: DeviceKeyState): Promise<PortalResponse> {
      if (result === 'not_found') return unknown();
      const now = (await store.get(device.id)) ?? device;
      return showDevice(409, now, { error: `${device.id} was changed by someone else at the same moment; nothing of yours was written. Review and submit again.` });
    }
  };

  return async (req) => {
    try {
      return await handle(req);
    } catch (error) {
      options.onError?.(error);
      return {
        status: 503,
        headers: { ...SECURITY_HEADERS, 'content-type': 'text/html; charset=utf-8', 'retry-after': '5' },
        cookies: [],
        body: messagePage({ base }, 'Temporarily unavailable', `The ${store.description} cannot be reached right now; nothing was changed. Try again in a moment.`),
      };
    }
  };
}

function actionOf(path: string): AuditEntry['action'] {
  return path.endsWith('/revoke') ? 'revoke' : 'activate';
}

function deviceOf(path: string): { device?: string } {
  const segment = path.split('/')[2];
  return segment !== undefined && isRegistrationId(segment) ? { device: segment } : {};
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Parses an application/x-www-form-urlencoded body; a repeated name keeps its first value. */
export function parseForm(body: string): Record<string, string> {
  const form: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [name, value] of new URLSearchParams(body)) if (!(name in form)) form[name] = value;
  return form;
}

/** One JSON audit line: who, what, which device, outcome; nothing else (never a key, token or cookie). */
export function auditLine(entry: AuditEntry, at = new Date()): string {
  return JSON.stringify({ event: 'portal_audit', at: at.toISOString(), who: entry.who, action: entry.action, device: entry.device ?? null, outcome: entry.outcome });
}
