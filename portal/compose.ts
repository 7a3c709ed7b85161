import { randomBytes } from 'node:crypto';
import type { TokenCredential } from '@azure/identity';
import type { PortalConfig } from './config.js';
import { auditLine, createPortal, type PortalHandler, type PortalOptions } from './core/app.js';
import type { DeviceKeyStore, ProvisioningLookup } from './core/ports.js';
import { createFolderStore } from './stores/folder.js';
import { createKeyVaultDeviceStore } from './stores/keyvault.js';

export interface ComposeOptions {
  readonly log: (line: string) => void;
  readonly signInUrl: string;
  readonly signOut?: PortalOptions['signOut'];
  readonly secureCookies: boolean;
  readonly provisioning?: ProvisioningLookup;
  /** Key Vault only; made once per process by the entry point. */
  readonly credential?: () => TokenCredential;
  readonly csrfSecret?: Uint8Array;
}

export function createStore(config: PortalConfig, credential?: () => TokenCredential): DeviceKeyStore {
  if (config.store.kind === 'folder') return createFolderStore(config.store.dir);
  if (credential === undefined) throw new TypeError('a credential is needed for KEY_VAULT_URL');
  return createKeyVaultDeviceStore({ url: config.store.url, credential: credential(), disableChallengeResourceVerification: config.store.disableChallengeResourceVerification });
}

/** The portal as both entry points run it: one store, one handler, audit lines to `log`. */
export function composePortal(config: PortalConfig, options: ComposeOptions): { handler: PortalHandler; store: DeviceKeyStore } {
  const store = createStore(config, options.credential);
  const handler = createPortal({
    store,
    fields: config.fields,
    requiredRole: config.requiredRole,
    csrfSecret: options.csrfSecret ?? config.csrfSecret ?? randomBytes(32),
    base: config.basePath,
    secureCookies: options.secureCookies,
    signInUrl: options.signInUrl,
    ...(options.signOut !== undefined && { signOut: options.signOut }),
    ...(options.provisioning !== undefined && { provisioning: options.provisioning }),
    audit: (entry) => options.log(auditLine(entry)),
    randomNonce: () => randomBytes(18).toString('base64url'),
    // The error's name and status only: an SDK message can quote request details.
    onError: (error) =>
      options.log(JSON.stringify({ event: 'portal_error', error: error instanceof Error ? error.name : typeof error, status: (error as { statusCode?: number } | null)?.statusCode ?? null })),
  });
  return { handler, store };
}
