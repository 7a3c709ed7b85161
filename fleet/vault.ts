/**
 * The vault as the import sees it: the paged listing of secret properties, one write, one secret's versions. Writes
 * get no SDK retries (the importer decides, so every attempt passes the token bucket and every 429 is counted) and turns the SDK's errors into `VaultError`s whose messages hold only a status and a code.
 */
import type { TokenCredential } from '@azure/identity';
import { SecretClient } from '@azure/keyvault-secrets';

/** A secret's properties as listed: no value (a disabled secret's value cannot even be read). */
export interface StoredSecret {
  /** Lower-cased: the vault compares names case-insensitively. */
  readonly name: string;
  readonly enabled: boolean;
  readonly tags: Readonly<Record<string, string>>;
  readonly contentType?: string;
  readonly createdOn?: number;
}

export interface SecretWrite {
  readonly value: string;
  readonly contentType: string;
  readonly tags: Readonly<Record<string, string>>;
  readonly enabled: boolean;
}

export interface VaultPort {
  /**
   * The vault's secrets, a page at a time, in one pass. A page that fails is retried by the client (429, 5xx, no
   * answer) before the listing gives up.
   */
  listSecrets(signal?: AbortSignal): AsyncIterable<StoredSecret[]>;
  /** Requests the listing has sent so far, retries included. */
  readonly listCalls: number;
  /** Stores a new version. */
  setSecret(name: string, write: SecretWrite, signal?: AbortSignal): Promise<void>;
  /** Every version of one secret (properties only). */
  listVersions(name: string, signal?: AbortSignal): Promise<StoredSecret[]>;
}

/**
 * throttled: 429, never stored; unavailable: 5xx or no answer, maybe stored; denied: 401/403, fatal for the run;
 * deleted: 409, the name is soft-deleted (recover or purge it first); refused: any other 4xx; aborted: our signal.
 */
export type VaultErrorKind = 'throttled' | 'unavailable' | 'denied' | 'deleted' | 'refused' | 'aborted';

export class VaultError extends Error {
  constructor(
    readonly kind: VaultErrorKind,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'VaultError';
  }
}

export interface SecretClientVaultOptions {
  readonly url: string;
  readonly credential: TokenCredential;
  /** For a vault whose challenge names another resource host (the local stand-in); never needed in Azure. */
  readonly disableChallengeResourceVerification?: boolean;
  /**
   * Retries of one page of the listing, by the SDK (a page has no continuation token outside it): default the
   * documented back-off, 5 retries from 1 s, up to 16 s [azure-cli-facts.md §3 K7].
   */
  readonly listRetry?: { readonly maxRetries: number; readonly retryDelayInMs: number; readonly maxRetryDelayInMs: number };
}

export function createSecretClientVault(options: SecretClientVaultOptions): VaultPort {
  const common = {
    disableChallengeResourceVerification: options.disableChallengeResourceVerification === true,
    userAgentOptions: { userAgentPrefix: 'dps-jwt-webhook-fleet' },
  };
  // Writes: no SDK retries; the importer retries each one through its token bucket.
  const client = new SecretClient(options.url, options.credential, { ...common, retryOptions: { maxRetries: 0 } });
  let listCalls = 0;
  const lister = new SecretClient(options.url, options.credential, {
    ...common,
    retryOptions: options.listRetry ?? { maxRetries: 5, retryDelayInMs: 1_000, maxRetryDelayInMs: 16_000 },
    additionalPolicies: [
      {
        position: 'perRetry',
        policy: {
          name: 'fleetCountListCalls',
          sendRequest: async (request, next) => {
            // Every attempt counts, except the challenge round trip (401) that gets the token.
            try {
              const response = await next(request);
              if (response.status !== 401) listCalls += 1;
              return response;
            } catch (error) {
              listCalls += 1;
              throw error;
            }
          },
        },
      },
    ],
  });
  const toStored = (p: { name: string; enabled?: boolean; tags?: Record<string, string>; contentType?: string; createdOn?: Date }): StoredSecret => ({
    name: p.name.toLowerCase(),
    enabled: p.enabled !== false,
    tags: p.tags ?? {},
    ...(p.contentType !== undefined && { contentType: p.contentType }),
    ...(p.createdOn !== undefined && { createdOn: p.createdOn.getTime() }),
  });
  return {
    async *listSecrets(signal) {
      try {
        for await (const page of lister.listPropertiesOfSecrets({ abortSignal: signal }).byPage()) yield page.map(toStored);
      } catch (error) {
        throw classify(error, 'list secrets');
      }
    },
    get listCalls() {
      return listCalls;
    },
    async setSecret(name, write, signal) {
      try {
        await client.setSecret(name, write.value, { contentType: write.contentType, tags: { ...write.tags }, enabled: write.enabled, abortSignal: signal });
      } catch (error) {
        throw classify(error, `write secret ${name}`);
      }
    },
    async listVersions(name, signal) {
      const out: StoredSecret[] = [];
      try {
        for await (const p of client.listPropertiesOfSecretVersions(name, { abortSignal: signal })) out.push(toStored(p));
      } catch (error) {
        const failure = classify(error, `list versions of ${name}`);
        if (failure.status === 404) return out;
        throw failure;
      }
      return out;
    },
  };
}

/** Never copies the SDK's message (it can quote request details): a status, a service code, or an error class. */
export function classify(error: unknown, what: string): VaultError {
  if (error instanceof VaultError) return error;
  const e = error as { name?: string; statusCode?: number; code?: string };
  if (e?.name === 'AbortError') return new VaultError('aborted', `${what}: aborted`);
  const status = e?.statusCode;
  const code = typeof e?.code === 'string' && /^[A-Za-z][A-Za-z0-9_]{1,63}$/.test(e.code) ? e.code : undefined;
  const tail = `${status !== undefined ? `HTTP ${status}` : ''}${code !== undefined ? `${status !== undefined ? ' ' : ''}${code}` : ''}`;
  if (status === 429) return new VaultError('throttled', `${what}: throttled (HTTP 429)`, 429);
  if (status === 401 || status === 403) return new VaultError('denied', `${what}: refused (${tail})`, status);
  if (status === 409) return new VaultError('deleted', `${what}: the name is taken by a deleted secret still recoverable (${tail}); recover or purge it`, status);
  if (status !== undefined && status >= 500) return new VaultError('unavailable', `${what}: ${tail}`, status);
  if (status !== undefined) return new VaultError('refused', `${what}: ${tail}`, status);
  const kind = typeof e?.name === 'string' && /^[A-Za-z]{1,64}$/.test(e.name) ? e.name : 'error';
  if (/CredentialUnavailableError|AuthenticationError|AuthenticationRequiredError/.test(kind)) {
    return new VaultError('denied', `${what}: no token (${kind})`);
  }
  // No answer at all: a socket or TLS failure. Its code (ECONNREFUSED...) is safe to show.
  return new VaultError('unavailable', `${what}: ${code ?? kind}`);
}
