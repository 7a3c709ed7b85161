import { ConfigError, loadConfig, loadTelemetryConfig, type Env, type TelemetryConfig, type WebhookConfig } from '../config.js';
import { REASONS, WebhookError } from '../core/reasons.js';
import { decide, type WebhookAnswer, type WebhookInput } from '../core/webhook.js';
import { createKeyCache, type KeyCache } from '../keys/cache.js';
import { createImportedKeys, type ImportedKeys } from '../keys/imported.js';
import { createLocalKeyStore } from '../keys/local.js';
import { deviceSecretName, groupSecretName } from '../keys/names.js';
import { createDeviceKeys } from '../keys/resolve.js';
import type { KeySource } from '../keys/types.js';
import { createMemoryReplayStore } from '../replay/memory.js';
import type { ReplayStore } from '../core/ports.js';
import type { KeyStore } from '../keys/types.js';
import type { KeyLookup, Telemetry } from '../telemetry/record.js';
import type { TokenCredential } from '@azure/identity';

/** One request as an adapter hands it over: the decision's input, and the invocation's trace context when it has one. */
export interface HandlerInput extends WebhookInput {
  /** The W3C traceparent of the invocation (InvocationContext.traceContext), so the decision's trace joins it. */
  readonly traceParent?: string;
}

/** What an adapter calls: one decision per request. */
export interface WebhookHandler {
  handle(input: HandlerInput): Promise<WebhookAnswer>;
}

export interface Webhook extends WebhookHandler {
  readonly keyCache: KeyCache;
  readonly importedKeys: ImportedKeys;
  /** Where decisions are reported; undefined when no connection string is set. */
  readonly telemetry?: Telemetry;
  close(): Promise<void>;
}

export interface WebhookOverrides {
  /** A clock for tests; defaults to Date.now. */
  readonly now?: () => number;
  /** A key store to use instead of the configured one (benchmarks, tests of the cache). */
  readonly keyStore?: KeySource;
  /** The Azure credential for Key Vault and the replay table; default: one DefaultAzureCredential per webhook. */
  readonly credential?: TokenCredential;
  /** The credential for Entra ID ingestion; default: the managed identity the authentication string names. */
  readonly telemetryCredential?: TokenCredential;
}

/**
 * The process's one Azure credential (in Azure: the function app's managed identity), made only when a setting
 * needs it and shared by the Key Vault client and the replay table, so both use one token cache and one MSAL client.
 */
function lazyCredential(override: TokenCredential | undefined): () => Promise<TokenCredential> {
  let made: Promise<TokenCredential> | undefined;
  return () => {
    // Loaded only when configured, so the local flow never loads the Azure SDK.
    made ??= override !== undefined ? Promise.resolve(override) : import('@azure/identity').then(({ DefaultAzureCredential }) => new DefaultAzureCredential());
    return made;
  };
}

/** The configured key store and the names tried in it, device first (also `fleet explain`'s, so both look alike). */
export async function keySourceFor(config: WebhookConfig, credential: () => Promise<TokenCredential>): Promise<KeySource> {
  const source = config.keySource;
  if (source.kind === 'local') return createLocalKeyStore({ ...source, algorithms: config.token.algorithms });
  // Loaded only when configured, so the local flow never loads the Azure SDK.
  const { createKeyVaultStore } = await import('../keys/keyvault.js');
  const { fleetSecretName } = source.keyVault;
  return {
    store: createKeyVaultStore({ keyVault: source.keyVault, algorithms: config.token.algorithms, timeoutMs: config.keyCache.readTimeoutMs, credential: await credential() }),
    names: ({ registrationId, enrollmentGroupId }) => [
      deviceSecretName(registrationId),
      ...(enrollmentGroupId !== undefined ? [groupSecretName(enrollmentGroupId)] : []),
      ...(fleetSecretName !== undefined ? [fleetSecretName] : []),
    ],
  };
}

async function replayStoreFor(config: WebhookConfig, credential: () => Promise<TokenCredential>): Promise<ReplayStore | undefined> {
  const replay = config.replay;
  switch (replay.kind) {
    case 'off':
      return undefined;
    case 'memory':
      return createMemoryReplayStore(replay);
    case 'table': {
      const { createTableReplayStore } = await import('../replay/table.js');
      const { access } = replay;
      return createTableReplayStore({
        access: access.kind === 'identity' ? { kind: 'identity', accountUrl: access.accountUrl, credential: await credential() } : access,
        tableName: replay.tableName,
        maxLiveTokensPerDevice: replay.maxLiveTokensPerDevice,
      });
    }
  }
}

/**
 * The composition root: builds the key store, its cache, and the replay store once per process, and returns the
 * handler every adapter (Functions trigger, local host, tests, benchmark) calls.
 */
export async function createWebhook(config: WebhookConfig, overrides: WebhookOverrides = {}): Promise<Webhook> {
  const now = overrides.now ?? Date.now;
  const credential = lazyCredential(overrides.credential);
  const telemetry = await naming('APPLICATIONINSIGHTS_CONNECTION_STRING', () => telemetryFor(config.telemetry, overrides.telemetryCredential));
  const source = overrides.keyStore ?? (await naming(keySettingOf(config), () => keySourceFor(config, credential)));
  const store = telemetry === undefined ? source.store : measuredKeyStore(source.store, telemetry);
  const keyCache = createKeyCache(store, config.keyCache, now);
  const importedKeys = createImportedKeys(config.keyCache.maxImportedKeys);
  const plainReplay = await naming(replaySettingOf(config), () => replayStoreFor(config, credential));
  const replay = telemetry === undefined || plainReplay === undefined ? plainReplay : measuredReplayStore(plainReplay, telemetry);
  const deps = {
    policy: config.token,
    ...(config.preferredHub !== undefined && { preferredHub: config.preferredHub }),
    twinTemplate: config.twinTemplate,
    keys: createDeviceKeys(keyCache, source.names),
    importKey: importedKeys.get,
    ...(replay !== undefined && { replay }),
    now,
  };
  const close = async () => {
    await replay?.close?.();
    await telemetry?.shutdown();
  };
  if (telemetry === undefined) return { keyCache, importedKeys, handle: (input) => decide(input, deps), close };
  return {
    keyCache,
    importedKeys,
    telemetry,
    // Per decision, a view of the cache that notes whether every name was served fresh from it: `get` counts a hit
    // synchronously, before it returns, so the count read around the call is this decision's own.
    handle: async (input) => {
      let keyLookup: KeyLookup | undefined;
      const noting = {
        ...keyCache,
        get(name: string) {
          const hits = keyCache.stats.hits;
          const found = keyCache.get(name);
          keyLookup = keyCache.stats.hits > hits ? (keyLookup ?? 'cache') : 'store';
          return found;
        },
      };
      const answer = await decide(input, { ...deps, keys: createDeviceKeys(noting, source.names) });
      telemetry.decision(answer.log, { ...(input.traceParent !== undefined && { traceParent: input.traceParent }), ...(keyLookup !== undefined && { keyLookup }) });
      return answer;
    },
    close,
  };
}

/**
 * The telemetry the settings ask for, loaded only then: without a connection string OpenTelemetry is never imported.
 * Entra ingestion takes its tokens from the managed identity (the user-assigned one when ClientId is named).
 */
async function telemetryFor(config: TelemetryConfig, override: TokenCredential | undefined): Promise<Telemetry | undefined> {
  if (config.kind === 'off') return undefined;
  const { createAzureMonitorTelemetry } = await import('../telemetry/azure-monitor.js');
  let credential = override;
  if (credential === undefined && config.entra !== undefined) {
    const { ManagedIdentityCredential } = await import('@azure/identity');
    credential = config.entra.clientId !== undefined ? new ManagedIdentityCredential({ clientId: config.entra.clientId }) : new ManagedIdentityCredential();
  }
  return createAzureMonitorTelemetry(config, config.entra !== undefined ? credential : undefined);
}

/** Each read of the store (a Key Vault GET), timed and counted by outcome; what it answers is passed on unchanged. */
function measuredKeyStore(store: KeyStore, telemetry: Telemetry): KeyStore {
  return {
    async read(name, signal) {
      const started = performance.now();
      try {
        const found = await store.read(name, signal);
        telemetry.keyStoreRead({ outcome: found === undefined ? 'missing' : 'found' }, performance.now() - started);
        return found;
      } catch (error) {
        const took = performance.now() - started;
        if (error instanceof WebhookError) {
          telemetry.keyStoreRead({ outcome: error.code, ...(error.httpStatus !== undefined && { httpStatus: error.httpStatus }) }, took);
        } else telemetry.keyStoreRead({ outcome: 'error' }, took);
        throw error;
      }
    },
  };
}

/** Each claim on the replay store, timed and counted: first, replayed, or the refusal code. */
function measuredReplayStore(replay: ReplayStore, telemetry: Telemetry): ReplayStore {
  return {
    async claim(use) {
      const started = performance.now();
      try {
        const first = await replay.claim(use);
        telemetry.replayClaim(first ? 'first' : 'replayed', performance.now() - started);
        return first;
      } catch (error) {
        telemetry.replayClaim(error instanceof WebhookError ? error.code : 'error', performance.now() - started);
        throw error;
      }
    },
    ...(replay.close !== undefined && { close: () => replay.close!() }),
  };
}

function keySettingOf(config: WebhookConfig): string {
  const source = config.keySource;
  return source.kind === 'key-vault' ? 'KEY_VAULT_URL' : source.dir !== undefined ? 'DEVICE_KEYS_DIR' : 'DEVICE_PUBLIC_KEY';
}

function replaySettingOf(config: WebhookConfig): string {
  const replay = config.replay;
  if (replay.kind !== 'table') return 'REPLAY_STORE';
  return replay.access.kind === 'identity' ? 'REPLAY_TABLE_ACCOUNT_URL' : replay.access.setting;
}

/**
 * Runs one start step; a fault in it becomes a ConfigError naming the setting behind the step. Its message is the
 * coded refusal's own (never a secret) or, for anything else, the error's class name only: an SDK's message can
 * quote a connection string.
 */
async function naming<T>(setting: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const why = error instanceof WebhookError ? error.message : error instanceof Error ? error.name : typeof error;
    throw new ConfigError(setting, `is set but cannot be used (${why})`);
  }
}

// DPS retries a 503 (10 tries over about 8 minutes); an operator's fix takes longer than a device fault's retry.
const MISCONFIGURED_RETRY_AFTER_SECONDS = '30';

/** The answer to every request while a setting cannot work: 503 webhook_misconfigured, naming the setting in the log only. */
function misconfigured(setting: string, telemetry?: Telemetry): WebhookHandler {
  const code = 'webhook_misconfigured' as const;
  const status = REASONS[code].status;
  return {
    handle: async (input) => {
      const answer: WebhookAnswer = {
        status,
        headers: { 'content-type': 'application/json; charset=utf-8', 'retry-after': MISCONFIGURED_RETRY_AFTER_SECONDS },
        body: { code, message: REASONS[code].summary },
        log: { outcome: 'retry', code, status, setting, durationMs: 0 },
      };
      telemetry?.decision(answer.log, input.traceParent !== undefined ? { traceParent: input.traceParent } : {});
      return answer;
    },
  };
}

/**
 * The webhook as the Functions trigger starts it: read the settings, build the stores, and never reject. A fault at
 * start (a ConfigError, a setting that parses but cannot work, a key that cannot be imported) is reported once,
 * naming the setting, and every request is then answered 503 `webhook_misconfigured` until the app restarts with the
 * setting fixed: the worker stays up (an unhandled rejection would kill it) and DPS retries rather than failing
 * every device for good. Those answers are still reported to Azure Monitor when the telemetry settings themselves
 * work, so an alert on a burst of webhook_misconfigured can fire.
 */
export async function startWebhook(env: Env, options: { report: (line: string) => void; overrides?: WebhookOverrides }): Promise<WebhookHandler> {
  try {
    return await createWebhook(loadConfig(env), options.overrides);
  } catch (error) {
    const fault = error instanceof ConfigError ? error : new ConfigError('(start)', `failed (${error instanceof Error ? error.name : typeof error})`);
    options.report(JSON.stringify({
      event: 'validatejwt',
      outcome: 'misconfigured',
      code: 'webhook_misconfigured',
      setting: fault.setting,
      message: `${fault.message}; every request is answered 503 webhook_misconfigured until it is fixed`,
    }));
    let telemetry: Telemetry | undefined;
    try {
      telemetry = await telemetryFor(loadTelemetryConfig(env), options.overrides?.telemetryCredential);
    } catch {
      // The telemetry settings are the fault (or cannot work): the report above names the setting.
    }
    return misconfigured(fault.setting, telemetry);
  }
}
