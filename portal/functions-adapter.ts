import type { Cookie, HttpRequest, HttpResponseInit, InvocationContext } from '@azure/functions';
import { principalFromEasyAuthHeader } from './core/auth.js';
import { parseForm, type PortalHandler, type PortalResponse } from './core/app.js';

const MAX_FORM_BYTES = 16 * 1024;

/** The portal's Set-Cookie strings as the v4 library's Cookie objects (the only attributes the core writes). */
export function toCookie(setCookie: string): Cookie {
  const [pair = '', ...attributes] = setCookie.split(';').map((s) => s.trim());
  const eq = pair.indexOf('=');
  const cookie: Cookie = { name: pair.slice(0, eq), value: pair.slice(eq + 1) };
  for (const attribute of attributes) {
    const [key = '', value] = attribute.split('=');
    switch (key.toLowerCase()) {
      case 'path': cookie.path = value ?? '/'; break;
      case 'httponly': cookie.httpOnly = true; break;
      case 'secure': cookie.secure = true; break;
      case 'samesite': cookie.sameSite = value === 'Lax' ? 'Lax' : value === 'None' ? 'None' : 'Strict'; break;
      case 'max-age': cookie.maxAge = Number(value); break;
    }
  }
  return cookie;
}

function toInit(answer: PortalResponse): HttpResponseInit {
  return { status: answer.status, headers: answer.headers, cookies: answer.cookies.map(toCookie), body: answer.body };
}

/**
 * Azure Functions v4 -> the portal core. The user comes only from `x-ms-client-principal`, which App Service
 * Authentication sets and strips from outside requests; without it the core answers 401. `base` is the path prefix
 * the function's route sits under.
 */
export function createFunctionsAdapter(handler: PortalHandler, base: string) {
  return async (request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> => {
    const url = new URL(request.url);
    const path = url.pathname.startsWith(base) ? url.pathname.slice(base.length) || '/' : url.pathname;
    let form: Record<string, string> = {};
    if (request.method === 'POST') {
      const type = (request.headers.get('content-type') ?? '').split(';')[0]?.trim().toLowerCase();
      if (type !== 'application/x-www-form-urlencoded') return { status: 415, body: 'forms only (application/x-www-form-urlencoded)' };
      const body = await request.text();
      if (Buffer.byteLength(body) > MAX_FORM_BYTES) return { status: 413, body: 'form too large' };
      form = parseForm(body);
    }
    const headers: Record<string, string | undefined> = {};
    for (const name of ['cookie', 'origin', 'sec-fetch-site']) headers[name] = request.headers.get(name) ?? undefined;
    const answer = await handler({
      method: request.method,
      path,
      query: url.searchParams,
      headers,
      form,
      principal: principalFromEasyAuthHeader(request.headers.get('x-ms-client-principal') ?? undefined),
      origin: url.origin,
    });
    context.trace(`portal ${request.method} ${path} -> ${answer.status}`);
    return toInit(answer);
  };
}
