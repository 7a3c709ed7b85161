import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { auditLine, createPortal, type PortalHandler, type PortalRequest, type PortalResponse } from '../../portal/core/app.js';
import { parseFieldConfig } from '../../portal/core/fields.js';
import type { DeviceKeyStore, Principal } from '../../portal/core/ports.js';

export const FIELDS = parseFieldConfig(
  JSON.stringify({
    fields: [
      { name: 'location', label: 'Installation site', required: true, pattern: "[A-Za-z0-9 ,'-]{2,64}" },
      { name: 'chassis', label: 'Chassis number', required: true, pattern: 'CH-[0-9]{6}', hint: 'CH- and six digits' },
      { name: 'telemetryMode', label: 'Telemetry mode', required: true, enum: ['eco', 'standard'], target: 'desired' },
    ],
  }),
);

export const ANNA: Principal = { id: 'anna-oid', name: 'anna@maker.example', roles: ['Device.Activate'] };
export const BEN: Principal = { id: 'ben-oid', name: 'ben@maker.example', roles: [] };
export const ORIGIN = 'https://portal.example';

export async function keyFolder(devices: Record<string, { enabled?: boolean; tags?: Record<string, string> } | null>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'portal-keys-'));
  for (const [id, meta] of Object.entries(devices)) {
    await writeFile(join(dir, `${id}.pem`), '-----BEGIN PUBLIC KEY-----\nnot parsed by the portal\n-----END PUBLIC KEY-----\n');
    if (meta !== null) await writeFile(join(dir, `${id}.meta`), JSON.stringify(meta));
  }
  return dir;
}

export function portalOver(store: DeviceKeyStore, audit: string[] = []): PortalHandler {
  return createPortal({
    store,
    fields: FIELDS,
    requiredRole: 'Device.Activate',
    csrfSecret: randomBytes(32),
    base: '',
    secureCookies: true,
    signInUrl: '/.auth/login/aad',
    audit: (e) => audit.push(auditLine(e)),
    randomNonce: () => randomBytes(18).toString('base64url'),
  });
}

export function get(path: string, principal: Principal | undefined, cookie?: string): PortalRequest {
  const url = new URL(path, ORIGIN);
  return { method: 'GET', path: url.pathname, query: url.searchParams, headers: { ...(cookie !== undefined && { cookie }) }, form: {}, principal, origin: ORIGIN };
}

export function post(path: string, principal: Principal | undefined, form: Record<string, string>, headers: Record<string, string> = {}): PortalRequest {
  return { method: 'POST', path, query: new URLSearchParams(), headers: { 'sec-fetch-site': 'same-origin', origin: ORIGIN, ...headers }, form, principal, origin: ORIGIN };
}

/** A browser-like session: opens a page, keeps the session cookie, reads the form's hidden fields. */
export async function openForm(handler: PortalHandler, path: string, principal: Principal): Promise<{ page: PortalResponse; cookie: string; csrf: string; version: string }> {
  const page = await handler(get(path, principal));
  const setCookie = page.cookies[0] ?? '';
  const cookie = setCookie.split(';')[0] ?? '';
  const csrf = /name="_csrf" value="([^"]*)"/.exec(page.body)?.[1] ?? '';
  const version = /name="_version" value="([^"]*)"/.exec(page.body)?.[1] ?? '';
  return { page, cookie, csrf, version };
}
