/**
 * `fleet explain`: why the webhook refuses (or admits) one device, decided offline by the webhook's own code with the
 * function's own settings. The settings go through functions/config.ts, the keys through the configured store
 * (functions/keys/, named as compose.ts names them), and the token through `decide` with an observer on its checks
 * (functions/core/checks.ts), so nothing here restates a rule. The replay store is never opened: explain records no
 * jti. Output names keys by entry name, kid and SHA-256 only; the token and key material never leave this file.
 */
import type { TokenCredential } from '@azure/identity';
import { decodeJwt, decodeProtectedHeader, type JWTPayload } from 'jose';
import { createWebhook, keySourceFor } from '../../functions/app/compose.js';
import { ConfigError, loadConfig, type Env, type WebhookConfig } from '../../functions/config.js';
import { CHECKS, type CheckEvent } from '../../functions/core/checks.js';
import type { StoredKeySet, VerificationKey } from '../../functions/core/ports.js';
import { REASON_HINTS, REASONS, WebhookError, type ReasonCode } from '../../functions/core/reasons.js';
import type { WebhookAnswer } from '../../functions/core/webhook.js';
import { deviceSecretName, groupSecretName } from '../../functions/keys/names.js';
import { digestOf, spkiOf } from '../keys.js';
import { FleetError } from '../errors.js';
import { createSecretClientVault } from '../vault.js';

export interface ExplainOptions {
  /** The function's settings (app settings, or local.settings.json's Values), as loadConfig reads them. */
  readonly env: Env;
  readonly registrationId: string;
  /** The enrollment group the device registers through; absent: an individual enrollment. */
  readonly group?: string;
  /** The hubs DPS links to the enrollment; default IOT_HUB_HOSTNAME, else a placeholder. */
  readonly linkedHubs?: readonly string[];
  readonly currentHub?: string;
  /** The device's token; absent: only the key entries are reported. */
  readonly token?: string;
  /** The instant to decide at (ms since the epoch); default now. */
  readonly atMs?: number;
  /** Made only when the settings name a Key Vault. */
  readonly credential: () => TokenCredential;
}

/** One name the webhook tries for this registration, in its order, and what the store holds there. */
export interface EntryReport {
  readonly role: 'device' | 'group' | 'fleet';
  /** The secret name, or for a key folder the file looked for. */
  readonly name: string;
  readonly state: 'found' | 'absent' | 'unreadable';
  /** The first entry found decides, as in the webhook (a disabled one too). */
  readonly used: boolean;
  readonly enabled?: boolean;
  /** Secret name and version, or file name. */
  readonly origin?: string;
  readonly kids?: readonly string[];
  readonly algorithms?: readonly string[];
  readonly tags?: Readonly<Record<string, string>>;
  /** SHA-256 over the DER SPKI of each key, in order (the fleet import's public-key-sha256). */
  readonly digest?: string;
  /**
   * For a disabled Key Vault secret, whose value and tags a GET does not hand out: the tags of its newest version as
   * the vault lists them, or why they could not be listed.
   */
  readonly listedTags?: Readonly<Record<string, string>> | { readonly error: string };
  /** For `unreadable`: the code and message the webhook would answer. */
  readonly code?: ReasonCode;
  readonly message?: string;
}

/** Facts that say why a check failed, taken from the token's (unverified) claims and the settings. */
export interface Fact {
  readonly label: string;
  readonly value: string;
}

export interface ExplainResult {
  readonly registrationId: string;
  readonly group?: string;
  readonly at: string;
  readonly store: string;
  readonly entries: readonly EntryReport[];
  readonly decision?: {
    readonly checks: readonly CheckEvent[];
    readonly status: number;
    readonly code: ReasonCode;
    readonly message: string;
    readonly hub?: string;
    readonly hint: string;
    readonly facts: readonly Fact[];
    /** What explain left out that the webhook would do: record the jti. */
    readonly replayNote?: string;
  };
  /** Without a token: the code the webhook would answer for any token, when the entries already decide it. */
  readonly verdict?: { readonly code: ReasonCode; readonly hint: string };
}

/** Linked hubs when neither --linked-hub nor IOT_HUB_HOSTNAME names one: reserved, never a real host (RFC 2606). */
export const PLACEHOLDER_HUB = 'linked-hub.invalid';

function settingsError(error: unknown): never {
  if (error instanceof ConfigError) throw new FleetError('settings', error.message, 'explain reads the same settings as the function: fix the setting there');
  throw error;
}

export async function explain(options: ExplainOptions): Promise<ExplainResult> {
  let config: WebhookConfig;
  try {
    config = loadConfig(options.env);
  } catch (error) {
    settingsError(error);
  }
  const atMs = options.atMs ?? Date.now();
  const lookup = { registrationId: options.registrationId, ...(options.group !== undefined && { enrollmentGroupId: options.group }) };
  let credential: TokenCredential | undefined;
  const source = await keySourceFor(config, async () => (credential ??= options.credential())).catch(settingsError);
  // One read per name, shared by the report and the decision: both describe the same snapshot of the store.
  const reads = new Map<string, Promise<StoredKeySet | undefined>>();
  const read = (name: string) => {
    let pending = reads.get(name);
    if (pending === undefined) reads.set(name, (pending = source.store.read(name)));
    return pending;
  };
  const entries: EntryReport[] = [];
  let decided = false;
  const listTags = config.keySource.kind === 'key-vault' ? newestTags(config, async () => (credential ??= options.credential())) : undefined;
  for (const name of source.names(lookup)) {
    let entry = await readEntry(config, name, options, () => read(name));
    if (entry.state === 'found' && entry.enabled === false && listTags !== undefined) entry = { ...entry, listedTags: await listTags(name) };
    entries.push({ ...entry, used: !decided && entry.state !== 'absent' });
    if (entry.state !== 'absent') decided = true;
  }
  const base = {
    registrationId: options.registrationId,
    ...(options.group !== undefined && { group: options.group }),
    at: new Date(atMs).toISOString(),
    store: describeStore(config),
    entries,
  };
  if (options.token === undefined) return { ...base, ...verdictOf(entries, config, options) };

  // The webhook as the function builds it, over the same store, with no replay store: nothing is recorded.
  const webhook = await createWebhook({ ...config, replay: { kind: 'off' } }, { keyStore: { names: source.names, store: { read } }, now: () => atMs });
  const checks: CheckEvent[] = [];
  let answer: WebhookAnswer;
  try {
    answer = await webhook.handle({ body: JSON.stringify(allocationRequest(options, config)), contentType: 'application/json', onCheck: (e) => checks.push(e) });
  } finally {
    await webhook.close();
  }
  const body = answer.body as { code?: ReasonCode; message?: string; iotHubHostName?: string };
  const code = answer.log.code;
  const used = entries.find((e) => e.used);
  return {
    ...base,
    decision: {
      checks,
      status: answer.status,
      code,
      message: body.message ?? REASONS[code].summary,
      ...(body.iotHubHostName !== undefined && { hub: body.iotHubHostName }),
      hint: hintFor(code, config, options, used),
      facts: factsFor(code, options.token, config, options, atMs, entries),
      ...(config.replay.kind !== 'off' && {
        replayNote: `explain does not record the jti; the webhook would (REPLAY_STORE=${config.replay.kind}) and refuse its second use (token_replayed)`,
      }),
    },
  };
}

/** The AllocationRequest DPS would send for this device (dps-protocol §1), carrying the token as its payload. */
function allocationRequest(options: ExplainOptions, config: WebhookConfig): Record<string, unknown> {
  const hubs = options.linkedHubs !== undefined && options.linkedHubs.length > 0
    ? options.linkedHubs
    : [config.preferredHub ?? PLACEHOLDER_HUB];
  return {
    ...(options.group !== undefined
      ? { enrollmentGroup: { enrollmentGroupId: options.group, allocationPolicy: 'custom' } }
      : { individualEnrollment: { registrationId: options.registrationId, allocationPolicy: 'custom' } }),
    deviceRuntimeContext: {
      registrationId: options.registrationId,
      ...(options.currentHub !== undefined && { currentIotHubHostName: options.currentHub }),
      payload: { jwt: options.token },
    },
    linkedHubs: hubs,
  };
}

function describeStore(config: WebhookConfig): string {
  const source = config.keySource;
  if (source.kind === 'key-vault') {
    return `Key Vault ${source.keyVault.url}${source.keyVault.fleetSecretName !== undefined ? ` (fleet secret ${source.keyVault.fleetSecretName})` : ''}`;
  }
  const parts = [source.dir !== undefined ? `key folder ${source.dir}` : undefined, source.fleetPublicKeyPem !== undefined ? 'fleet key DEVICE_PUBLIC_KEY' : undefined];
  return parts.filter((p) => p !== undefined).join(', ');
}

/** The role and the name people know an entry by: the secret name, or the file in the key folder. */
function entryName(config: WebhookConfig, name: string, options: ExplainOptions): Pick<EntryReport, 'role' | 'name'> {
  if (config.keySource.kind === 'key-vault') {
    if (name === deviceSecretName(options.registrationId)) return { role: 'device', name };
    if (options.group !== undefined && name === groupSecretName(options.group)) return { role: 'group', name };
    return { role: 'fleet', name };
  }
  // The key folder store's names (functions/keys/local.ts): device:<id> and fleet.
  if (name.startsWith('device:')) {
    return { role: 'device', name: config.keySource.dir !== undefined ? `${name.slice('device:'.length)}.pem|.jwk|.json` : '(no DEVICE_KEYS_DIR)' };
  }
  return { role: 'fleet', name: 'DEVICE_PUBLIC_KEY' };
}

async function readEntry(
  config: WebhookConfig,
  name: string,
  options: ExplainOptions,
  read: () => Promise<StoredKeySet | undefined>,
): Promise<Omit<EntryReport, 'used'>> {
  const named = entryName(config, name, options);
  let stored: StoredKeySet | undefined;
  try {
    stored = await read();
  } catch (error) {
    if (!(error instanceof WebhookError)) throw error;
    if (error.code === 'key_store_unavailable') {
      const noToken = error.message.startsWith('No token');
      throw new FleetError('vault_unavailable', error.message, noToken ? 'sign in (az login) or choose the identity with --credential / --client-id' : undefined);
    }
    if (error.code === 'key_store_access_denied') {
      throw new FleetError('access_denied', error.message, 'the identity explain runs as needs "Key Vault Secrets User" on the vault (az role assignment create)');
    }
    return { ...named, state: 'unreadable', code: error.code, message: error.message };
  }
  if (stored === undefined) return { ...named, state: 'absent' };
  const kids = [...new Set(stored.keys.flatMap((k) => (k.kid !== undefined ? [k.kid] : [])))];
  return {
    ...named,
    state: 'found',
    enabled: stored.enabled,
    origin: stored.origin,
    kids,
    algorithms: [...new Set(stored.keys.map((k) => k.alg))],
    tags: stored.tags,
    ...(stored.keys.length > 0 && { digest: await digestOfKeys(stored.keys) }),
  };
}

/** The tags of a secret's newest version, listed (metadata only: allowed for Key Vault Secrets User too). */
function newestTags(config: WebhookConfig, credential: () => Promise<TokenCredential>) {
  if (config.keySource.kind !== 'key-vault') throw new TypeError('newestTags needs a Key Vault');
  const { url, disableChallengeResourceVerification } = config.keySource.keyVault;
  return async (name: string): Promise<EntryReport['listedTags']> => {
    try {
      const vault = createSecretClientVault({ url, credential: await credential(), disableChallengeResourceVerification, listRetry: { maxRetries: 1, retryDelayInMs: 500, maxRetryDelayInMs: 1000 } });
      const versions = await vault.listVersions(name);
      const newest = versions.reduce<(typeof versions)[number] | undefined>((a, b) => (a === undefined || (b.createdOn ?? 0) > (a.createdOn ?? 0) ? b : a), undefined);
      return newest?.tags ?? { error: 'no version listed' };
    } catch (error) {
      // VaultError messages hold a status and a code only.
      return { error: error instanceof Error && error.name === 'VaultError' ? error.message : 'listing failed' };
    }
  };
}

/** The fleet import's digest, over the keys as the webhook holds them: one DER SPKI per distinct key, in order. */
async function digestOfKeys(keys: readonly VerificationKey[]): Promise<string> {
  const seen = new Set<string>();
  const der: Buffer[] = [];
  for (const key of keys) {
    const id = JSON.stringify(key.jwk);
    if (seen.has(id)) continue;
    seen.add(id);
    const spki = await spkiOf(key);
    if (spki !== undefined) der.push(spki.der);
  }
  return digestOf(der);
}

function verdictOf(entries: readonly EntryReport[], config: WebhookConfig, options: ExplainOptions): Pick<ExplainResult, 'verdict'> {
  const used = entries.find((e) => e.used);
  const code: ReasonCode | undefined = used === undefined
    ? 'device_key_not_found'
    : used.state === 'unreadable' ? used.code : used.enabled === false ? 'device_key_disabled' : undefined;
  return code === undefined ? {} : { verdict: { code, hint: hintFor(code, config, options, used) } };
}

/** REASON_HINTS, made concrete for this device where the table says "run X". */
function hintFor(code: ReasonCode, config: WebhookConfig, options: ExplainOptions, used: EntryReport | undefined): string {
  const hint = REASON_HINTS[code];
  if (code !== 'device_key_disabled' || used === undefined) return hint;
  if (used.role === 'fleet') return `${hint} The entry deciding is the fleet key (${used.name}): enabling it admits every device without a key of its own.`;
  const source = config.keySource;
  if (source.kind === 'local') {
    return `${hint}\n  Here: set "enabled": true in ${used.origin?.replace(/\.(pem|jwk|json)$/i, '') ?? options.registrationId}.meta in the key folder.`;
  }
  const who = used.role === 'group' && options.group !== undefined ? `--group-id ${options.group}` : `--registration-id ${options.registrationId}`;
  // The vault's name when the URL is the public cloud's https://NAME.vault.azure.net.
  const vault = /^https:\/\/([a-z0-9-]{3,24})\.vault\.azure\.net$/i.exec(source.keyVault.url)?.[1] ?? '<vault name>';
  return `${hint}\n  Here: scripts/activate.sh --vault ${vault} ${who}`;
}

/** A claim as text, short and printable; a value the device chose is never trusted to be either. */
function shown(value: unknown): string {
  if (value === undefined) return '(absent)';
  const text = JSON.stringify(value) ?? String(value);
  const clean = text.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > 80 ? `${clean.slice(0, 77)}...` : clean;
}

function decodeToken(token: string): { header?: Record<string, unknown>; claims?: JWTPayload } {
  const out: { header?: Record<string, unknown>; claims?: JWTPayload } = {};
  try {
    out.header = decodeProtectedHeader(token) as Record<string, unknown>;
  } catch {
    // A token the webhook cannot even read: the failing check says so.
  }
  try {
    out.claims = decodeJwt(token);
  } catch {
    // As above.
  }
  return out;
}

const at = (seconds: unknown) => (typeof seconds === 'number' && Number.isFinite(seconds) ? `${seconds} (${new Date(seconds * 1000).toISOString()})` : shown(seconds));

/** The numbers and names behind a refusal: the scope the token names vs DPS_ID_SCOPE, the clock offset, the kids held. */
function factsFor(code: ReasonCode, token: string, config: WebhookConfig, options: ExplainOptions, atMs: number, entries: readonly EntryReport[]): Fact[] {
  const { header, claims } = decodeToken(token);
  const nowS = Math.floor(atMs / 1000);
  const skew = config.token.clockSkewSeconds;
  const used = entries.find((e) => e.used);
  const facts: Fact[] = [];
  const add = (label: string, value: string) => facts.push({ label, value });
  switch (code) {
    case 'token_audience_mismatch':
      add('token aud', shown(claims?.aud));
      add('token id_scope', shown(claims?.id_scope));
      add('DPS_ID_SCOPE', config.token.idScope ?? '(not set)');
      break;
    case 'token_claim_missing': {
      // Which required claim (or pair, of which one is enough) the token lacks.
      const missing = [
        ...(['exp', 'iat'] as const).filter((c) => claims?.[c] === undefined),
        ...(claims?.sub === undefined && claims?.registration_id === undefined ? ['sub / registration_id'] : []),
        ...(claims?.aud === undefined && claims?.id_scope === undefined && config.token.requireAudience ? [`aud / id_scope (DPS_ID_SCOPE is ${config.token.idScope ?? 'not set'})`] : []),
      ];
      add('missing', missing.length > 0 ? missing.join(', ') : '(unreadable claims)');
      break;
    }
    case 'token_expired':
    case 'token_not_yet_valid':
    case 'token_issued_in_future':
    case 'token_lifetime_too_long': {
      add('decided at', `${nowS} (${new Date(nowS * 1000).toISOString()})`);
      add('token iat', at(claims?.iat));
      if (claims?.nbf !== undefined) add('token nbf', at(claims.nbf));
      add('token exp', at(claims?.exp));
      const iat = typeof claims?.iat === 'number' ? claims.iat : undefined;
      const exp = typeof claims?.exp === 'number' ? claims.exp : undefined;
      if (code === 'token_expired' && exp !== undefined) add('clock', `expired ${nowS - exp} s ago; JWT_CLOCK_SKEW_SECONDS allows ${skew} s`);
      if (code === 'token_issued_in_future' && iat !== undefined) add('clock', `the device's clock is about ${iat - nowS} s ahead; JWT_CLOCK_SKEW_SECONDS allows ${skew} s`);
      if (code === 'token_not_yet_valid' && typeof claims?.nbf === 'number') add('clock', `nbf is ${claims.nbf - nowS} s ahead; JWT_CLOCK_SKEW_SECONDS allows ${skew} s`);
      if (code === 'token_lifetime_too_long' && iat !== undefined && exp !== undefined) {
        add('lifetime', `exp - iat = ${exp - iat} s; JWT_MAX_LIFETIME_SECONDS allows ${config.token.maxLifetimeSeconds} s`);
      }
      break;
    }
    case 'token_key_unknown':
      add('token kid', shown(header?.kid));
      add('token alg', shown(header?.alg));
      add('kids on file', used?.kids !== undefined && used.kids.length > 0 ? used.kids.join(', ') : '(none named: a plain PEM matches any kid)');
      add('algorithms on file', used?.algorithms?.join(', ') ?? '(none)');
      break;
    case 'token_algorithm_not_allowed':
      add('token alg', shown(header?.alg));
      add('JWT_ALGORITHMS', config.token.algorithms.join(', '));
      break;
    case 'token_registration_mismatch':
      add('token sub', shown(claims?.sub));
      add('token registration_id', shown(claims?.registration_id));
      add('registration id', options.registrationId);
      break;
    case 'token_signature_invalid':
      if (used?.digest !== undefined) add('key on file', `${used.origin ?? used.name}, public-key-sha256 ${used.digest}`);
      add('token kid', shown(header?.kid));
      break;
    case 'token_jti_missing':
      add('REPLAY_STORE', config.replay.kind);
      break;
    case 'device_key_not_found':
      add('names tried', entries.map((e) => e.name).join(', '));
      break;
    case 'device_key_disabled':
      if (used !== undefined) add('disabled entry', `${used.role} ${used.name}`);
      break;
    case 'device_key_unusable':
      if (used?.message !== undefined) add('entry', `${used.name}: ${used.message}`);
      break;
    default:
      break;
  }
  return facts;
}

/** Every check in order, those the decision never reached included: what the formatter prints. */
export function checkRows(checks: readonly CheckEvent[]): Array<CheckEvent | { check: (typeof CHECKS)[number]; outcome: 'not-reached' }> {
  return CHECKS.map((check) => checks.find((c) => c.check === check) ?? { check, outcome: 'not-reached' as const });
}
