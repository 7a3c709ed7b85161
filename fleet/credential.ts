/**
 * Which identity writes to the vault. Chosen explicitly, never by probing: `auto` takes a managed identity when the
 * platform names its endpoint (IDENTITY_ENDPOINT, as App Service, Functions and Container Apps do), workload identity
 * when a federated token file is given (AZURE_FEDERATED_TOKEN_FILE, as AKS and GitHub OIDC set-ups do), and otherwise
 * the signed-in `az` user. So a laptop never tries the instance metadata address.
 */
import { AzureCliCredential, ManagedIdentityCredential, WorkloadIdentityCredential, type TokenCredential } from '@azure/identity';
import { usageError } from './errors.js';

export const CREDENTIAL_KINDS = ['auto', 'cli', 'managed-identity', 'workload-identity'] as const;
export type CredentialKind = (typeof CREDENTIAL_KINDS)[number];

export interface ChosenCredential {
  readonly credential: TokenCredential;
  /** For the run's header line: which identity, never a token. */
  readonly description: string;
}

export function chooseCredential(
  kind: CredentialKind,
  env: Readonly<Record<string, string | undefined>>,
  clientId?: string,
): ChosenCredential {
  const resolved: Exclude<CredentialKind, 'auto'> =
    kind !== 'auto' ? kind : env.IDENTITY_ENDPOINT ? 'managed-identity' : env.AZURE_FEDERATED_TOKEN_FILE ? 'workload-identity' : 'cli';
  switch (resolved) {
    case 'cli':
      return { credential: new AzureCliCredential(), description: 'the signed-in az user (AzureCliCredential)' };
    case 'managed-identity':
      return {
        credential: clientId !== undefined ? new ManagedIdentityCredential({ clientId }) : new ManagedIdentityCredential(),
        description: `managed identity${clientId !== undefined ? ` ${clientId}` : ' (system-assigned)'}`,
      };
    case 'workload-identity': {
      const id = clientId ?? env.AZURE_CLIENT_ID;
      if (!env.AZURE_FEDERATED_TOKEN_FILE || !env.AZURE_TENANT_ID || !id) {
        throw usageError('--credential workload-identity', 'needs AZURE_FEDERATED_TOKEN_FILE, AZURE_TENANT_ID and AZURE_CLIENT_ID (or --client-id)');
      }
      return {
        credential: new WorkloadIdentityCredential({ clientId: id, tenantId: env.AZURE_TENANT_ID, tokenFilePath: env.AZURE_FEDERATED_TOKEN_FILE }),
        description: `workload identity ${id}`,
      };
    }
  }
}
