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
}

async function keySourceFor(config: WebhookConfig): Promise<KeySource> {
  const source = config.keySource;
  if (source.kind === 'local') return createLocalKeyStore({ ...source, algorithms: config.token.algorithms });
  // Loaded only when configured, so the local flow never loads the Azure SDK.
  const { createKeyVaultStore } = await import('../keys/keyvault.js');
  const { fleetSecretName } = source.keyVault;
  return {
    store: createKeyVaultStore({ keyVault: source.keyVault, algorithms: config.token.algorithms, timeoutMs: config.keyCache.readTimeoutMs }),
    names: ({ registrationId, enrollmentGroupId }) => [
      deviceSecretName(registrationId),
      ...(enrollmentGroupId !== undefined ? [groupSecretName(enrollmentGroupId)] : []),
      ...(fleetSecretName !== undefined ? [fleetSecretName] : []),
    ],
  };
}

async function replayStoreFor(config: WebhookConfig, now: () => number): Promise<ReplayStore | undefined> {
  const replay = config.replay;
  switch (replay.kind) {
    case 'off':
      return undefined;
    case 'memory':
      return createMemoryReplayStore({ maxEntries: replay.maxEntries, now });
    case 'table': {
      const { createTableReplayStore } = await import('../replay/table.js');
      return createTableReplayStore({ connectionString: replay.connectionString, tableName: replay.tableName });
    }
  }
}

/**
 * The composition root: builds the key store, its cache, and the replay store once per process, and returns the
 * handler every adapter (Functions trigger, local host, tests, benchmark) calls.
 */
export async function createWebhook(config: WebhookConfig, overrides: WebhookOverrides = {}): Promise<Webhook> {
  const now = overrides.now ?? Date.now;
  const { store, names } = overrides.keyStore ?? (await keySourceFor(config));
  const keyCache = createKeyCache(store, config.keyCache, now);
  const importedKeys = createImportedKeys(config.keyCache.maxImportedKeys);
  const replay = await replayStoreFor(config, now);
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
