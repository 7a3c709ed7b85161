import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Principal } from './ports.js';

/**
 * App Service Authentication ("Easy Auth") passes the signed-in user as `X-MS-CLIENT-PRINCIPAL`: base64 of
 * `{"auth_typ": "...", "claims": [{"typ": "...", "val": "..."}], "name_typ": "...", "role_typ": "..."}`; the front end
 * strips the header from outside requests, so it is present only when the platform set it
 * (learn.microsoft.com/azure/app-service/configure-authentication-user-identities). App roles arrive as claims whose
 * `typ` is `role_typ` (Entra: "roles"). Anything malformed is "not signed in": fail closed.
 */
export function principalFromEasyAuthHeader(header: string | undefined): Principal | undefined {
  if (header === undefined || header === '' || header.length > 64 * 1024) return undefined;
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(header, 'base64').toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof doc !== 'object' || doc === null) return undefined;
  const { claims, name_typ: nameTyp, role_typ: roleTyp } = doc as { claims?: unknown; name_typ?: unknown; role_typ?: unknown };
  if (!Array.isArray(claims)) return undefined;
  const values = (typ: string): string[] =>
    claims.flatMap((c: unknown) => {
      const { typ: t, val } = (c ?? {}) as { typ?: unknown; val?: unknown };
      return t === typ && typeof val === 'string' ? [val] : [];
    });
  const roleType = typeof roleTyp === 'string' && roleTyp !== '' ? roleTyp : 'roles';
  const id = values('http://schemas.microsoft.com/identity/claims/objectidentifier')[0] ?? values('oid')[0];
  const name = (typeof nameTyp === 'string' ? values(nameTyp)[0] : undefined) ?? values('preferred_username')[0] ?? values('name')[0];
  if (id === undefined && name === undefined) return undefined;
  return { id: id ?? (name as string), name: name ?? (id as string), roles: values(roleType) };
}

/**
 * CSRF synchronizer token bound to the session: HMAC(secret, session nonce + principal id). The nonce lives in an
 * HttpOnly, SameSite=Strict cookie the portal sets; the token is a hidden form field. A cross-site page can neither
 * read the cookie nor compute the HMAC, and a token stolen from one user's page is useless in another's session.
 */
export function csrfToken(secret: Uint8Array, sessionNonce: string, principalId: string): string {
  return createHmac('sha256', secret).update(`${sessionNonce}\n${principalId}`).digest('base64url');
}

export function csrfTokenValid(secret: Uint8Array, sessionNonce: string | undefined, principalId: string, given: string | undefined): boolean {
  if (sessionNonce === undefined || sessionNonce === '' || given === undefined || given === '') return false;
  const expected = Buffer.from(csrfToken(secret, sessionNonce, principalId));
  const actual = Buffer.from(given);
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

/**
 * The browser's own word on where a POST comes from: `Sec-Fetch-Site` (sent by every current browser) must be
 * same-origin, and `Origin`, when present, must be the portal's. A request carrying neither (curl, an old client)
 * is judged by the token alone.
 */
export function sameOriginRequest(headers: { secFetchSite?: string; origin?: string }, expectedOrigin: string): boolean {
  if (headers.secFetchSite !== undefined && headers.secFetchSite !== 'same-origin') return false;
  if (headers.origin !== undefined && headers.origin !== expectedOrigin) return false;
  return true;
}
