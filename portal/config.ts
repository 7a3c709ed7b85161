import { readFileSync } from 'node:fs';
import { parseFieldConfig, type FieldConfig } from './core/fields.js';

/**
 * The one place the portal reads its settings. A mistake fails at start with the setting's name.
 *
 * | Setting | Meaning |
 * |---|---|
 * | DEVICE_KEYS_DIR or KEY_VAULT_URL | the key store (exactly one), the same ones the webhook reads |
 * | KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION | `true` only for a vault stand-in on localhost |
 * | PORTAL_FIELDS or PORTAL_FIELDS_FILE | the activation form's fields (JSON, see docs/portal.md) |
 * | PORTAL_ROLE | app role required; default `Device.Activate` |
 * | PORTAL_CSRF_SECRET | base64, >= 32 bytes; required in Azure (all instances must share it); random locally |
 * | PORTAL_BASE_PATH | URL prefix the pages live under; default '' |
 * | PORTAL_DEV_SIGN_IN=on + PORTAL_DEV_USERS_FILE | local development sign-in only; refused in Azure |
 * | PORTAL_PORT | the local host's port (`npm run portal`); default 7072 |
 */
export type Env = Readonly<Record<string, string | undefined>>;

export class PortalConfigError extends TypeError {
  constructor(readonly setting: string, message: string) {
    super(`${setting} ${message}`);
    this.name = 'PortalConfigError';
  }
}

export type PortalStoreConfig =
  | { readonly kind: 'folder'; readonly dir: string }
  | { readonly kind: 'keyvault'; readonly url: string; readonly disableChallengeResourceVerification: boolean };

export interface DevUser {
  readonly name: string;
  readonly roles: readonly string[];
}

export interface PortalConfig {
  readonly store: PortalStoreConfig;
  readonly fields: FieldConfig;
  readonly requiredRole: string;
  /** Undefined locally: the host makes a random one per run. */
  readonly csrfSecret?: Uint8Array;
  readonly basePath: string;
  /** Set only for the local host, and only when PORTAL_DEV_SIGN_IN=on and no Azure marker is present. */
  readonly devUsers?: readonly DevUser[];
  /** The local host's port (PORTAL_PORT, default 7072; 0 picks a free one); unused in Azure. */
  readonly localPort: number;
}

/** Settings App Service / Functions sets on every site; their presence means "running in Azure". */
export const AZURE_MARKERS = ['WEBSITE_SITE_NAME', 'WEBSITE_INSTANCE_ID', 'WEBSITE_HOSTNAME', 'WEBSITE_OWNER_NAME'];

const text = (env: Env, name: string): string | undefined => {
  const v = env[name]?.trim();
  return v === undefined || v === '' ? undefined : v;
};

function loadFields(env: Env): FieldConfig {
  const inline = text(env, 'PORTAL_FIELDS');
  const file = text(env, 'PORTAL_FIELDS_FILE');
  if (inline !== undefined && file !== undefined) throw new PortalConfigError('PORTAL_FIELDS', 'is set together with PORTAL_FIELDS_FILE; choose one');
  if (inline !== undefined) return parseFieldConfig(inline, 'PORTAL_FIELDS');
  if (file === undefined) throw new PortalConfigError('PORTAL_FIELDS', 'is not set: declare the activation form in PORTAL_FIELDS (JSON) or PORTAL_FIELDS_FILE');
  let body: string;
  try {
    body = readFileSync(file, 'utf8');
  } catch (error) {
    throw new PortalConfigError('PORTAL_FIELDS_FILE', `cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'}): ${file}`);
  }
  return parseFieldConfig(body, file);
}

function loadStore(env: Env): PortalStoreConfig {
  const dir = text(env, 'DEVICE_KEYS_DIR');
  const url = text(env, 'KEY_VAULT_URL');
  if (dir !== undefined && url !== undefined) throw new PortalConfigError('KEY_VAULT_URL', 'is set together with DEVICE_KEYS_DIR; choose one key store');
  if (url !== undefined) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new PortalConfigError('KEY_VAULT_URL', 'is not a URL (expected https://<vault>.vault.azure.net)');
    }
    if (parsed.protocol !== 'https:') throw new PortalConfigError('KEY_VAULT_URL', 'must be an https:// URL');
    const disable = text(env, 'KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION');
    if (disable !== undefined && disable !== 'true' && disable !== 'false') throw new PortalConfigError('KEY_VAULT_DISABLE_CHALLENGE_RESOURCE_VERIFICATION', 'must be true or false');
    return { kind: 'keyvault', url: parsed.origin, disableChallengeResourceVerification: disable === 'true' };
  }
  if (dir !== undefined) return { kind: 'folder', dir };
  throw new PortalConfigError('DEVICE_KEYS_DIR', 'no key store is configured: set DEVICE_KEYS_DIR or KEY_VAULT_URL');
}

function loadDevUsers(env: Env): readonly DevUser[] {
  const file = text(env, 'PORTAL_DEV_USERS_FILE');
  if (file === undefined) throw new PortalConfigError('PORTAL_DEV_USERS_FILE', 'is required with PORTAL_DEV_SIGN_IN=on (a JSON file {"users": [{"name": "...", "roles": ["Device.Activate"]}]})');
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new PortalConfigError('PORTAL_DEV_USERS_FILE', `is not a readable JSON file (${(error as NodeJS.ErrnoException).code ?? 'invalid JSON'}): ${file}`);
  }
  const users = (doc as { users?: unknown } | null)?.users;
  if (!Array.isArray(users) || users.length === 0) throw new PortalConfigError('PORTAL_DEV_USERS_FILE', 'must hold {"users": [...]} with at least one user');
  return users.map((u: unknown, i) => {
    const { name, roles } = (u ?? {}) as { name?: unknown; roles?: unknown };
    if (typeof name !== 'string' || !/^[A-Za-z0-9._@-]{1,64}$/.test(name)) throw new PortalConfigError('PORTAL_DEV_USERS_FILE', `users[${i}].name must be 1-64 of A-Z a-z 0-9 . _ @ -`);
    if (!Array.isArray(roles) || !roles.every((r) => typeof r === 'string')) throw new PortalConfigError('PORTAL_DEV_USERS_FILE', `users[${i}].roles must be an array of strings`);
    return { name, roles: roles as string[] };
  });
}

/**
 * `mode` is fixed by the entry point, never by a setting: the Functions entry asks for 'azure' (Easy Auth only), the
 * local host for 'local' (dev sign-in only, and only when explicitly switched on outside Azure).
 */
export function loadPortalConfig(env: Env, mode: 'azure' | 'local'): PortalConfig {
  const devSignIn = text(env, 'PORTAL_DEV_SIGN_IN');
  if (devSignIn !== undefined && devSignIn !== 'on' && devSignIn !== 'off') throw new PortalConfigError('PORTAL_DEV_SIGN_IN', 'must be on or off');
  const marker = AZURE_MARKERS.find((m) => text(env, m) !== undefined);
  let devUsers: readonly DevUser[] | undefined;
  if (mode === 'azure') {
    if (devSignIn === 'on') throw new PortalConfigError('PORTAL_DEV_SIGN_IN', 'is on; the development sign-in never runs in Azure (remove the setting)');
  } else {
    if (devSignIn !== 'on') throw new PortalConfigError('PORTAL_DEV_SIGN_IN', 'is not on: the local portal signs users in from a file with no password; set PORTAL_DEV_SIGN_IN=on to accept that on this machine');
    if (marker !== undefined) throw new PortalConfigError('PORTAL_DEV_SIGN_IN', `is on but ${marker} is set: this looks like Azure, where the development sign-in is refused`);
    devUsers = loadDevUsers(env);
  }

  const secretText = text(env, 'PORTAL_CSRF_SECRET');
  let csrfSecret: Uint8Array | undefined;
  if (secretText !== undefined) {
    csrfSecret = Buffer.from(secretText, 'base64');
    if (csrfSecret.length < 32) throw new PortalConfigError('PORTAL_CSRF_SECRET', 'must be base64 of at least 32 random bytes (openssl rand -base64 32)');
  } else if (mode === 'azure') {
    throw new PortalConfigError('PORTAL_CSRF_SECRET', 'is required in Azure (every instance must share it): base64 of 32 random bytes');
  }
  const basePath = text(env, 'PORTAL_BASE_PATH') ?? '';
  if (basePath !== '' && !/^(\/[A-Za-z0-9_-]+)+$/.test(basePath)) throw new PortalConfigError('PORTAL_BASE_PATH', 'must look like /portal (no trailing slash)');
  const requiredRole = text(env, 'PORTAL_ROLE') ?? 'Device.Activate';
  const portText = text(env, 'PORTAL_PORT') ?? '7072';
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65_535) throw new PortalConfigError('PORTAL_PORT', `must be a port number from 0 to 65535, got "${portText.slice(0, 20)}"`);

  return {
    store: loadStore(env),
    fields: loadFields(env),
    requiredRole,
    ...(csrfSecret !== undefined && { csrfSecret }),
    basePath,
    ...(devUsers !== undefined && { devUsers }),
    localPort: Number(portText),
  };
}
