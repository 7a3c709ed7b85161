/**
 * The factory flow in `npm run demo`: one device enrolled through the group, its key registered disabled (the factory's
 * `<id>.meta` = {"enabled": false}, CONTRACTS item 3). It is refused; a machine maker activates it through the
 * portal's HTTP interface (development sign-in, the same forms a browser posts, CSRF token included); it registers
 * again and is admitted with the metadata in its twin. Prints no secret.
 */
import { copyFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { LocalDps } from '../dps-emulator/index.js';
import { startLocalPortal } from '../portal/local/server.js';
import { keygen } from '../sample-device/commands/keygen.js';
import { register } from '../sample-device/commands/register.js';
import { SampleDeviceError } from '../sample-device/errors.js';

/**
 * Settings the demo's webhook needs for this step: the refused attempt caches the disabled key, and in the demo the
 * activation should show at once rather than after KEY_CACHE_TTL_SECONDS (300 s by default; see docs/portal.md).
 */
export const PORTAL_STEP_WEBHOOK_ENV: Readonly<Record<string, string>> = { KEY_CACHE_TTL_SECONDS: '0' };

export const PORTAL_DEVICE = 'line7-0100';
const METADATA = { location: 'Hall 3, Lyon', chassis: 'CH-004211', machineModel: 'press-400', telemetryMode: 'eco' };
const REPO = resolve(import.meta.dirname, '..', '..');

export interface PortalStepOptions {
  readonly work: string;
  readonly keysDir: string;
  readonly dps: LocalDps;
  readonly idScope: string;
  /** The group enrollment's key: the device derives its own from it. */
  readonly groupKey: string;
  /** The webhook's decision lines, to show what it decided. */
  readonly webhookLog: readonly Record<string, unknown>[];
  readonly print: (line: string) => void;
  readonly signal?: AbortSignal;
}

export interface PortalStepResult {
  readonly ok: boolean;
  readonly refusedWhileDisabled: string;
  readonly activation: number;
  readonly twin?: unknown;
}

/** A minimal cookie-keeping HTTP client: what a browser does with the portal's forms. */
function browserLike(origin: string) {
  const jar = new Map<string, string>();
  const request = async (path: string, form?: Record<string, string>) => {
    const response = await fetch(`${origin}${path}`, {
      method: form === undefined ? 'GET' : 'POST',
      redirect: 'manual',
      headers: {
        cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; '),
        ...(form !== undefined && { 'content-type': 'application/x-www-form-urlencoded', origin, 'sec-fetch-site': 'same-origin' }),
      },
      ...(form !== undefined && { body: new URLSearchParams(form).toString() }),
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair = ''] = line.split(';');
      const eq = pair.indexOf('=');
      jar.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
    return { status: response.status, location: response.headers.get('location') ?? '', body: await response.text() };
  };
  return request;
}

export async function runPortalStep(options: PortalStepOptions): Promise<PortalStepResult> {
  const { work, keysDir, dps, print } = options;
  print('');
  print(`Factory flow: ${PORTAL_DEVICE} is enrolled through the group with its key registered disabled.`);
  const pair = await keygen({ outDir: join(work, 'devices', PORTAL_DEVICE), name: PORTAL_DEVICE });
  await copyFile(pair.publicKeyFile, join(keysDir, `${PORTAL_DEVICE}.pem`));
  await writeFile(join(keysDir, `${PORTAL_DEVICE}.meta`), '{"enabled": false}\n');
  // The webhook reuses one listing of its key folder for a second (functions/keys/local.ts): let it see the new key.
  await new Promise((r) => setTimeout(r, 1_100));

  const attempt = async () => {
    const seen = options.webhookLog.length;
    try {
      const result = await register({
        registrationId: PORTAL_DEVICE,
        idScope: options.idScope,
        privateKeyFile: pair.privateKeyFile,
        groupKey: options.groupKey,
        host: dps.httpsHost,
        transport: 'http',
        caFile: dps.caFile,
        timeoutMs: 15_000,
        ...(options.signal !== undefined && { signal: options.signal }),
      });
      return { outcome: 'assigned', hub: result.assignedHub, reason: String(options.webhookLog.slice(seen).at(-1)?.code ?? '(not called)') };
    } catch (error) {
      if (!(error instanceof SampleDeviceError) || error.code === 'interrupted') throw error;
      return { outcome: error.code, hub: '', reason: String(options.webhookLog.slice(seen).at(-1)?.code ?? '(not called)') };
    }
  };

  const before = await attempt();
  const refusedOk = before.outcome === 'refused' && before.reason === 'device_key_disabled';
  print(`${refusedOk ? 'ok  ' : 'FAIL'} ${PORTAL_DEVICE} before activation: ${before.outcome}, webhook: ${before.reason}`);

  await writeFile(join(work, 'portal-users.json'), JSON.stringify({ users: [{ name: 'maker-anna', roles: ['Device.Activate'] }] }));
  const audit: string[] = [];
  const portal = await startLocalPortal({
    env: {
      DEVICE_KEYS_DIR: keysDir,
      PORTAL_FIELDS_FILE: join(REPO, 'portal', 'fields.example.json'),
      PORTAL_DEV_SIGN_IN: 'on',
      PORTAL_DEV_USERS_FILE: join(work, 'portal-users.json'),
    },
    port: 0,
    log: (line) => audit.push(line),
  });
  let activation = 0;
  try {
    const origin = new URL(portal.url).origin;
    const http = browserLike(origin);
    await http('/signin', { user: 'maker-anna' });
    const page = await http(`/devices/${PORTAL_DEVICE}`);
    const csrf = /name="_csrf" value="([^"]*)"/.exec(page.body)?.[1] ?? '';
    const version = /name="_version" value="([^"]*)"/.exec(page.body)?.[1] ?? '';
    const answer = await http(`/devices/${PORTAL_DEVICE}/activate`, { _csrf: csrf, _version: version, ...METADATA });
    activation = answer.status;
    print(`${answer.status === 303 ? 'ok  ' : 'FAIL'} portal (${portal.url}): maker-anna activated ${PORTAL_DEVICE} with ${JSON.stringify(METADATA)} (HTTP ${answer.status})`);
    for (const line of audit) print(`     audit: ${line}`);
  } finally {
    await portal.close();
  }

  const after = await attempt();
  const record = dps.registrations().findLast((r) => r.registrationId === PORTAL_DEVICE && r.status === 'assigned');
  const twin = record?.initialTwin;
  const tags = (twin?.tags ?? {}) as Record<string, unknown>;
  const desired = (twin?.properties?.desired ?? {}) as Record<string, unknown>;
  const twinOk = tags.location === METADATA.location && tags.chassis === METADATA.chassis && tags.machineModel === METADATA.machineModel && desired.telemetryMode === METADATA.telemetryMode;
  const admittedOk = after.outcome === 'assigned' && after.reason === 'assigned' && twinOk;
  print(`${admittedOk ? 'ok  ' : 'FAIL'} ${PORTAL_DEVICE} after activation: ${after.outcome} ${after.hub}, webhook: ${after.reason}`);
  print(`     twin: ${JSON.stringify({ tags: { location: tags.location, chassis: tags.chassis, machineModel: tags.machineModel }, desired: { telemetryMode: desired.telemetryMode } })}`);
  return { ok: refusedOk && activation === 303 && admittedOk, refusedWhileDisabled: before.reason, activation, ...(twin !== undefined && { twin }) };
}
