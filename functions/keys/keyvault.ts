import { DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import { SecretClient } from '@azure/keyvault-secrets';
import type { KeyVaultConfig } from '../config.js';
import { WebhookError } from '../core/reasons.js';
import { withDeadline } from './deadline.js';
import { parseKeyMaterial } from './parse.js';
import { NO_TAGS, type KeyStore, type StoredKeySet } from './types.js';

export interface KeyVaultStoreOptions {
  readonly keyVault: KeyVaultConfig;
  /** JWS algorithms the stored keys are imported for. */
  readonly algorithms: readonly string[];
  /** Deadline for one read, the managed identity token fetch and the vault's challenge round trip included. */
  readonly timeoutMs: number;
  /** Default: one DefaultAzureCredential for the life of the store (in Azure: the function app's managed identity). */
  readonly credential?: TokenCredential;
}

/** Key Vault secret names; anything else cannot exist in a vault, so it is "not found" without a request. */
const SECRET_NAME = /^[0-9a-zA-Z-]{1,127}$/;

/**
 * A `KeyStore` over Key Vault secrets: one `read` is one `getSecret`. The client and the credential are made here,
 * once; the cache in front (cache.ts) gives TTL, single-flight and stale-if-error, so a read fails fast instead of
 * retrying: the SDK's retries are off and the whole read, token fetch included, is cut at `timeoutMs`. A fault of
 * the vault becomes 503 and DPS retries the registration.
 */
export function createKeyVaultStore(options: KeyVaultStoreOptions): KeyStore {
  const { keyVault, algorithms, timeoutMs } = options;
  const credential = options.credential ?? new DefaultAzureCredential();
  const client = new SecretClient(keyVault.url, credential, {
    disableChallengeResourceVerification: keyVault.disableChallengeResourceVerification,
    // One attempt: the cache serves stale keys on error and DPS retries a 503, so a retry here only adds latency.
    retryOptions: { maxRetries: 0 },
    userAgentOptions: { userAgentPrefix: 'dps-jwt-webhook' },
  });

  return {
    async read(name: string, signal?: AbortSignal): Promise<StoredKeySet | undefined> {
      if (!SECRET_NAME.test(name)) return undefined;
      let secret;
      try {
        secret = await withDeadline(
          timeoutMs,
          signal,
          (timedOut) => new WebhookError('key_store_unavailable', timedOut
            ? `Key Vault read of secret ${name} timed out after ${timeoutMs} ms`
            : `Key Vault read of secret ${name} was aborted`),
          (abortSignal) => client.getSecret(name, { abortSignal }),
        );
      } catch (error) {
        const outcome = classify(error, name);
        if (outcome === 'not-found') return undefined;
        if (outcome === 'disabled') return { keys: [], enabled: false, tags: NO_TAGS, origin: name };
        throw outcome;
      }

      const origin = secret.properties.version ? `${name}/${secret.properties.version}` : name;
      if (typeof secret.value !== 'string') {
        throw new WebhookError('device_key_unusable', `Key Vault secret ${origin} has no value`);
      }
      return {
        keys: await parseKeyMaterial(secret.value, algorithms, origin),
        enabled: secret.properties.enabled !== false,
        tags: secret.properties.tags !== undefined && Object.keys(secret.properties.tags).length > 0 ? { ...secret.properties.tags } : NO_TAGS,
        origin,
      };
    },
  };
}

interface RestErrorLike {
  readonly name: 'RestError';
  readonly statusCode?: number;
  readonly code?: string;
  readonly details?: unknown;
  readonly response?: { readonly bodyAsText?: string | null };
}

function isRestError(error: unknown): error is RestErrorLike {
  return error instanceof Error && error.name === 'RestError';
}

/**
 * Maps a failed read to its outcome. Messages name the secret and the HTTP status (or the error's class) only: the
 * SDK's own messages can quote response bodies and request details, so they are never copied, nor kept as `cause`.
 */
function classify(error: unknown, name: string): 'not-found' | 'disabled' | WebhookError {
  if (error instanceof WebhookError) return error;
  if (isRestError(error)) {
    const status = error.statusCode;
    // Only the vault's own "no such secret" counts as absent; a 404 from anything else (a wrong URL, a proxy) is a
    // broken deployment and must not turn every device into "no key on file".
    if (status === 404 && error.code === 'SecretNotFound') return 'not-found';
    if (status === 403 && isSecretDisabled(error)) return 'disabled';
    if (status === 401 || status === 403) {
      return new WebhookError('key_store_access_denied', `Key Vault refused to read secret ${name} (HTTP ${status})`, { httpStatus: status });
    }
    if (status !== undefined) {
      return new WebhookError('key_store_unavailable', `Key Vault answered HTTP ${status} for secret ${name}`, { httpStatus: status });
    }
    // No answer: a socket or TLS failure. Its code (ECONNRESET, UNABLE_TO_VERIFY_LEAF_SIGNATURE...) is an identifier,
    // safe to show and what an operator needs.
    if (typeof error.code === 'string' && /^[A-Z][A-Z0-9_]{1,63}$/.test(error.code)) {
      return new WebhookError('key_store_unavailable', `Key Vault read of secret ${name} failed (${error.code})`);
    }
  }
  const kind = error instanceof Error ? error.name : 'unknown error';
  if (/CredentialUnavailableError|AuthenticationError|AuthenticationRequiredError/.test(kind)) {
    return new WebhookError('key_store_unavailable', `No token for Key Vault to read secret ${name} (${kind})`);
  }
  return new WebhookError('key_store_unavailable', `Key Vault read of secret ${name} failed (${kind})`);
}

/** The vault answers GET on a disabled secret with 403 Forbidden / innererror SecretDisabled. */
function isSecretDisabled(error: RestErrorLike): boolean {
  const body = parseBody(error.response?.bodyAsText) ?? error.details;
  const inner = (body as { error?: { innererror?: { code?: unknown }; innerError?: { code?: unknown } } } | undefined)?.error;
  const innerCode = inner?.innererror?.code ?? inner?.innerError?.code;
  return innerCode === 'SecretDisabled';
}

function parseBody(text: string | null | undefined): unknown {
  if (typeof text !== 'string') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
