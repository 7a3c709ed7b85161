/**
 * The vault as the import sees it: one page of secret properties, one write, one secret's versions. The SecretClient
 * implementation makes no retries of its own (retry.ts decides, so every attempt passes the token bucket and every
 * 429 is counted) and turns the SDK's errors into `VaultError`s whose messages hold only a status and a code.
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
  /** One page of the vault's secrets; `next` continues the listing. */
  listPage(continuation: string | undefined, signal?: AbortSignal): Promise<{ items: StoredSecret[]; next?: string }>;
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
}

export function createSecretClientVault(options: SecretClientVaultOptions): VaultPort {
  const client = new SecretClient(options.url, options.credential, {
    disableChallengeResourceVerification: options.disableChallengeResourceVerification === true,
    retryOptions: { maxRetries: 0 },
    userAgentOptions: { userAgentPrefix: 'dps-jwt-webhook-fleet' },
  });
  const toStored = (p: { name: string; enabled?: boolean; tags?: Record<string, string>; contentType?: string; createdOn?: Date }): StoredSecret => ({
    name: p.name.toLowerCase(),
    enabled: p.enabled !== false,
    tags: p.tags ?? {},
    ...(p.contentType !== undefined && { contentType: p.contentType }),
    ...(p.createdOn !== undefined && { createdOn: p.createdOn.getTime() }),
  });
  return {
    async listPage(continuation, signal) {
      try {
        const pages = client.listPropertiesOfSecrets({ abortSignal: signal }).byPage(continuation === undefined ? {} : { continuationToken: continuation });
        const first = await pages.next();
        if (first.done === true) return { items: [] };
        const page = first.value as Array<Parameters<typeof toStored>[0]> & { continuationToken?: string };
        return { items: page.map(toStored), ...(page.continuationToken ? { next: page.continuationToken } : {}) };
      } catch (error) {
        throw classify(error, 'list secrets');
      }
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
