/**
 * The identity is chosen from what the environment names, never by probing: a managed identity only when
 * IDENTITY_ENDPOINT is set, workload identity only with a federated token file, else the signed-in az user. Nothing
 * here asks for a token, so nothing can reach the network.
 */
import { AzureCliCredential, ManagedIdentityCredential, WorkloadIdentityCredential } from '@azure/identity';
import { describe, expect, test } from 'vitest';
import { chooseCredential } from '../../fleet/credential.js';

describe('--credential auto', () => {
  test('a terminal without platform identity: the signed-in az user', () => {
    const chosen = chooseCredential('auto', {});
    expect(chosen.credential).toBeInstanceOf(AzureCliCredential);
    expect(chosen.description).toContain('az user');
  });

  test('IDENTITY_ENDPOINT (App Service, Functions, Container Apps): the managed identity, user-assigned with --client-id', () => {
    const env = { IDENTITY_ENDPOINT: 'http://127.0.0.1:1/msi/token', IDENTITY_HEADER: 'h' };
    expect(chooseCredential('auto', env).credential).toBeInstanceOf(ManagedIdentityCredential);
    expect(chooseCredential('auto', env, '00000000-0000-0000-0000-0000000000aa').description).toBe('managed identity 00000000-0000-0000-0000-0000000000aa');
  });

  test('a federated token file (AKS, federated CI): workload identity, which needs tenant and client ids', () => {
    const env = { AZURE_FEDERATED_TOKEN_FILE: '/var/run/token', AZURE_TENANT_ID: '72f988bf-86f1-41af-91ab-2d7cd011db47', AZURE_CLIENT_ID: '00000000-0000-0000-0000-0000000000bb' };
    expect(chooseCredential('auto', env).credential).toBeInstanceOf(WorkloadIdentityCredential);
    expect(() => chooseCredential('auto', { AZURE_FEDERATED_TOKEN_FILE: '/var/run/token' })).toThrow(/needs AZURE_FEDERATED_TOKEN_FILE, AZURE_TENANT_ID and AZURE_CLIENT_ID/);
  });

  test('an explicit choice wins over the environment', () => {
    expect(chooseCredential('cli', { IDENTITY_ENDPOINT: 'http://127.0.0.1:1/msi/token' }).credential).toBeInstanceOf(AzureCliCredential);
  });
});
