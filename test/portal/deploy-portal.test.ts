/** scripts/deploy-portal.sh --dry-run: the plan it prints, and the arguments it refuses (exit 2). */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../e2e/fixture.js';
import { STORAGE_KEY, assertNoSecrets, azLines, isWrite, leftovers, sandbox } from '../scripts/harness.js';

const run = (...args: string[]) => spawnSync('bash', [join(REPO, 'scripts/deploy-portal.sh'), ...args], { cwd: REPO, encoding: 'utf8' });

describe('deploy-portal.sh --dry-run', () => {
  it('plans the second app: its identity with Key Vault Secrets Officer on the vault only, Entra sign-in, the settings', () => {
    const result = run('--location', 'westeurope', '--prefix', 'acme', '--dry-run');
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines).toContain(
      "az role assignment create --assignee-object-id '<portal-principal-id>' --role 'Key Vault Secrets Officer' --scope '<vault-id>' --assignee-principal-type ServicePrincipal -o none",
    );
    // Host and package storage by the app's identity, as the webhook's: no connection string is left behind.
    expect(lines).toContain(
      "az functionapp create -g acme-rg -n acme-portal --storage-account acmepst --flexconsumption-location westeurope --runtime node --runtime-version 22 --instance-memory 2048 --deployment-storage-name acmepst --deployment-storage-auth-type SystemAssignedIdentity --assign-identity '[system]' -o none",
    );
    expect(lines).toContain(
      "az role assignment create --assignee-object-id '<portal-principal-id>' --role 'Storage Blob Data Owner' --scope '<portal-storage-id>' --assignee-principal-type ServicePrincipal -o none",
    );
    expect(lines).toContain('az functionapp config appsettings delete -g acme-rg -n acme-portal --setting-names AzureWebJobsStorage -o none');
    expect(lines.some((l) => l.includes('identity assign') || l.includes('deployment config set'))).toBe(false);
    expect(lines.some((l) => l.startsWith('az ad app create --display-name acme-portal') && l.includes('--app-roles'))).toBe(true);
    expect(lines).toContain("az ad sp update --id '<client-id>' --set appRoleAssignmentRequired=true");
    expect(lines.some((l) => l.startsWith('az webapp auth microsoft update -g acme-rg -n acme-portal') && l.includes("--issuer 'https://login.microsoftonline.com/<tenant-id>/v2.0'"))).toBe(true);
    expect(lines).toContain('az webapp auth update -g acme-rg -n acme-portal --enabled true --action RedirectToLoginPage --redirect-provider azureactivedirectory --require-https true -o none');
    // By exact name: --display-name would be a prefix match.
    expect(lines).toContain(`az ad app list --filter "displayName eq 'acme-portal'" --query '[0].appId' -o tsv`);
    expect(lines).toContain('az extension add --name authV2 --only-show-errors');
    const settings = lines.find((l) => l.includes('PORTAL_FIELDS='));
    expect(settings).toContain('KEY_VAULT_URL=https://acme-kv.vault.azure.net');
    expect(settings).toContain(' AzureWebJobsStorage__accountName=acmepst ');
    // The client secret and the CSRF secret reach az only through a 0600 file, never as NAME=VALUE on argv.
    expect(settings).toMatch(/ '@<settings\.json>' -o none$/);
    expect(result.stdout).not.toContain('PORTAL_CSRF_SECRET=');
    expect(result.stdout).not.toContain('MICROSOFT_PROVIDER_AUTHENTICATION_SECRET=');
    expect(result.stdout).not.toContain('PORTAL_DEV_SIGN_IN');
  });

  it('deploy.sh --portal plans the webhook and then the same portal steps on its group, location and vault', () => {
    const result = spawnSync('bash', [join(REPO, 'scripts/deploy.sh'), '--location', 'westeurope', '--prefix', 'acme', '--no-publish', '--portal', '--dry-run'], { cwd: REPO, encoding: 'utf8' });
    expect(result.status).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines.indexOf("az functionapp create -g acme-rg -n acme-portal --storage-account acmepst --flexconsumption-location westeurope --runtime node --runtime-version 22 --instance-memory 2048 --deployment-storage-name acmepst --deployment-storage-auth-type SystemAssignedIdentity --assign-identity '[system]' -o none")).toBeGreaterThan(
      lines.findIndex((l) => l.startsWith('az functionapp create -g acme-rg -n acme-fn ')),
    );
    expect(lines.some((l) => l.startsWith('az webapp auth update -g acme-rg -n acme-portal '))).toBe(true);
    expect(result.stdout).not.toContain('esbuild');
    expect(result.stderr).toContain('# the portal: scripts/deploy-portal.sh --location westeurope -g acme-rg --vault acme-kv --app acme-portal --storage acmepst --no-publish --dry-run');
  });

  it('deploy.sh refuses a bad portal argument before anything runs, and a portal flag without --portal (exit 2)', () => {
    const bad = spawnSync('bash', [join(REPO, 'scripts/deploy.sh'), '--location', 'westeurope', '--prefix', 'acme', '--portal', '--portal-client-id', 'nope', '--dry-run'], { cwd: REPO, encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toContain("--portal: --client-id 'nope' is not valid");
    const lone = spawnSync('bash', [join(REPO, 'scripts/deploy.sh'), '--location', 'westeurope', '--prefix', 'acme', '--portal-app', 'x', '--dry-run'], { cwd: REPO, encoding: 'utf8' });
    expect(lone.status).toBe(2);
    expect(lone.stderr).toContain('--portal-app needs --portal');
  });

  it('refuses a missing location, a bad client id and an unreadable fields file (exit 2)', () => {
    expect(run('--prefix', 'acme', '--dry-run').status).toBe(2);
    expect(run('--location', 'westeurope', '--prefix', 'acme', '--client-id', 'nope', '--dry-run').status).toBe(2);
    const missing = run('--location', 'westeurope', '--prefix', 'acme', '--fields-file', '/nonexistent.json', '--dry-run');
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('--fields-file /nonexistent.json');
  });
});

describe('deploy-portal.sh against the strict stand-in: storage by identity', () => {
  const SUB = '/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/mig-rg/providers';
  const STORAGE_ID = `${SUB}/Microsoft.Storage/storageAccounts/migpst`;
  const VAULT_ID = `${SUB}/Microsoft.KeyVault/vaults/mig-kv`;
  const ARGS = ['--location', 'westeurope', '--prefix', 'mig', '--client-id', '00000000-0000-4000-8000-0000000000c1', '--no-publish'];

  it('an app an earlier deploy made with connection strings moves to its identity (package, host), keeps nothing with a key, and a second run changes nothing', () => {
    const box = sandbox();
    try {
      box.setState((s) => {
        s.groups = { 'mig-rg': { location: 'westeurope' } };
        s.vaults = { 'mig-kv': { rbac: true, secrets: {}, deleted: {}, resourceGroup: 'mig-rg' } };
        s.adApps = { '00000000-0000-4000-8000-0000000000c1': { appId: '00000000-0000-4000-8000-0000000000c1', id: 'o1', displayName: 'mig-portal', passwordCredentials: [] } };
      });
      // What the earlier deploy-portal.sh ran: no --deployment-storage-* flags, so the package container is reached
      // with the account key (DEPLOYMENT_STORAGE_CONNECTION_STRING) and the host with AzureWebJobsStorage.
      expect(box.az(['storage', 'account', 'create', '-n', 'migpst', '-g', 'mig-rg', '-o', 'none']).status).toBe(0);
      const old = box.az(['functionapp', 'create', '-g', 'mig-rg', '-n', 'mig-portal', '--storage-account', 'migpst', '--flexconsumption-location', 'westeurope', '--runtime', 'node', '--runtime-version', '22', '--instance-memory', '2048', '-o', 'none']);
      expect(old.status).toBe(0);
      expect(box.state().apps['mig-portal'].settings).toMatchObject({ AzureWebJobsStorage: expect.stringContaining(STORAGE_KEY), DEPLOYMENT_STORAGE_CONNECTION_STRING: expect.stringContaining(STORAGE_KEY) });

      const first = box.run('deploy-portal.sh', ARGS);
      expect(first.stderr).not.toMatch(/: error:|ERROR:/);
      expect(first.status).toBe(0);
      const app = box.state().apps['mig-portal'];
      const principal = app.identity.principalId;
      expect(azLines(first.calls.filter(isWrite)).map((l) => l.split(principal).join('PRINCIPAL'))).toEqual([
        'functionapp identity assign -g mig-rg -n mig-portal --query principalId -o tsv',
        'functionapp deployment config set -g mig-rg -n mig-portal --deployment-storage-auth-type SystemAssignedIdentity -o none',
        `role assignment create --assignee-object-id PRINCIPAL --role Key Vault Secrets Officer --scope ${VAULT_ID} --assignee-principal-type ServicePrincipal -o none`,
        `role assignment create --assignee-object-id PRINCIPAL --role Storage Blob Data Owner --scope ${STORAGE_ID} --assignee-principal-type ServicePrincipal -o none`,
        'ad sp create --id 00000000-0000-4000-8000-0000000000c1 -o none',
        'ad sp update --id 00000000-0000-4000-8000-0000000000c1 --set appRoleAssignmentRequired=true',
        expect.stringMatching(/^functionapp config appsettings set -g mig-rg -n mig-portal --settings KEY_VAULT_URL=https:\/\/mig-kv.vault.azure.net PORTAL_FIELDS=.+ AzureWebJobsStorage__accountName=migpst @\S+settings\.[0-9]+\.json -o none$/),
        'functionapp config appsettings delete -g mig-rg -n mig-portal --setting-names AzureWebJobsStorage DEPLOYMENT_STORAGE_CONNECTION_STRING -o none',
        'extension add --name authV2 --only-show-errors',
        expect.stringMatching(/^webapp auth microsoft update -g mig-rg -n mig-portal /),
        expect.stringMatching(/^webapp auth update -g mig-rg -n mig-portal /),
      ]);
      expect(app.deploymentStorageAuth).toBe('SystemAssignedIdentity');
      expect(app.settings.AzureWebJobsStorage__accountName).toBe('migpst');
      // No setting holds a connection string or the account key any more.
      expect(Object.keys(app.settings).filter((name) => /^(AzureWebJobsStorage|DEPLOYMENT_STORAGE_CONNECTION_STRING)$/.test(name))).toEqual([]);
      expect(JSON.stringify(app.settings)).not.toContain(STORAGE_KEY);
      expect(JSON.stringify(app.settings)).not.toMatch(/AccountKey=/);
      expect(box.state().roles.filter((r: { principalId: string }) => r.principalId === principal).map((r: { role: string; scope: string }) => [r.role, r.scope])).toEqual([
        ['Storage Blob Data Contributor', STORAGE_ID],
        ['Key Vault Secrets Officer', VAULT_ID],
        ['Storage Blob Data Owner', STORAGE_ID],
      ]);
      expect(first.stdout).toContain('"Storage Blob Data Owner" on migpst');
      assertNoSecrets(first, [STORAGE_KEY, app.settings.MICROSOFT_PROVIDER_AUTHENTICATION_SECRET, app.settings.PORTAL_CSRF_SECRET]);

      const before = box.state();
      const again = box.run('deploy-portal.sh', ARGS);
      expect(again.status).toBe(0);
      expect(again.calls.filter(isWrite)).toEqual([]);
      expect(again.stderr).toContain('deployment storage of mig-portal: by its identity');
      expect(again.stderr).toContain('storage connection strings: none');
      expect(box.state()).toEqual(before);
      expect(box.allCalls().flat().join('\n')).not.toContain(STORAGE_KEY);
      expect(leftovers(box)).toEqual([]);
    } finally {
      box.cleanup();
    }
  });
});
