import type { WebhookConfig } from '../config.js';
import { decide, type WebhookAnswer, type WebhookInput } from '../core/webhook.js';
import { createKeyCache, type KeyCache } from '../keys/cache.js';
import { createImportedKeys, type ImportedKeys } from '../keys/imported.js';
import { createLocalKeyStore } from '../keys/local.js';
import { deviceSecretName, groupSecretName } from '../keys/names.js';
import { createDeviceKeys } from '../keys/resolve.js';
import type { KeySource } from '../keys/types.js';
import { createMemoryReplayStore } from '../replay/memory.js';
import type { ReplayStore } from '../core/ports.js';
import type { TokenCredential } from '@azure/identity';

export interface Webhook {
  handle(input: WebhookInput): Promise<WebhookAnswer>;
  readonly keyCache: KeyCache;
  readonly importedKeys: ImportedKeys;
  close(): Promise<void>;
}

export interface WebhookOverrides {
  /** A clock for tests; defaults to Date.now. */
  readonly now?: () => number;
  /** A key store to use instead of the configured one (benchmarks, tests of the cache). */
  readonly keyStore?: KeySource;
  /** The Azure credential for Key Vault and the replay table; default: one DefaultAzureCredential per webhook. */
  readonly credential?: TokenCredential;
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

async function keySourceFor(config: WebhookConfig, credential: () => Promise<TokenCredential>): Promise<KeySource> {
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
  const { store, names } = overrides.keyStore ?? (await keySourceFor(config, credential));
  const keyCache = createKeyCache(store, config.keyCache, now);
  const importedKeys = createImportedKeys(config.keyCache.maxImportedKeys);
  const replay = await replayStoreFor(config, credential);
  const deps = {
    policy: config.token,
    ...(config.preferredHub !== undefined && { preferredHub: config.preferredHub }),
    twinTemplate: config.twinTemplate,
    keys: createDeviceKeys(keyCache, names),
    importKey: importedKeys.get,
    ...(replay !== undefined && { replay }),
    now,
  };
  return {
    keyCache,
    importedKeys,
    handle: (input) => decide(input, deps),
    close: async () => {
      await replay?.close?.();
    },
  };
}
